"""What the daemon is given rather than reaching for: a clock, a worker launcher and a load
sampler (process control is :class:`searchd.supervisor.proctree.ProcessControl`).

Production passes the real ones; a test passes fakes and steps the daemon with
``Daemon.step(now)``, without processes or sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Protocol

from searchd.protocol import Event
from searchd.settings import Settings
from searchd.supervisor.load import LoadSample


class Clock(Protocol):
    def monotonic(self) -> float: ...
    def time(self) -> float: ...


class SystemClock:
    """The real clocks: monotonic for intervals and deadlines, wall time for records."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()


class Worker(Protocol):
    """The supervisor's view of one worker process (:class:`~.handle.WorkerProc`)."""

    job_id: str
    #: the kinds of every event read so far
    events_seen: set[str]
    #: why the supervisor asked it to stop (None: it was not asked)
    stop_reason: str | None

    @property
    def pid(self) -> int: ...
    def events(self) -> list[Event]: ...
    def poll(self) -> int | None: ...
    def terminate(self, reason: str) -> None: ...
    def close(self) -> None: ...


class Launcher(Protocol):
    """Starts the worker of ``job_id``."""

    def __call__(self, settings: Settings, job_id: str, log_format: str) -> Worker: ...


class Sampler(Protocol):
    def sample(self, own_pids_extra: Iterable[int] = ()) -> LoadSample: ...


__all__ = ["Clock", "Launcher", "Sampler", "SystemClock", "Worker"]
