"""What the supervisor and a worker say to each other: exit codes, events, settings.

The worker reports on a pipe, one JSON line per event (:func:`encode` / :func:`decode`);
it exits with one of :class:`Exit`; the supervisor hands it the daemon's settings once,
serialised (:func:`encode_settings` / :func:`decode_settings`), so neither side restates
the other's defaults. Importing this module is cheap: the supervisor never imports
scikit-learn.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, ClassVar

from searchd.settings import Settings, settings_from


class Exit(IntEnum):
    """A worker's exit status, as the supervisor reads it."""

    DONE = 0
    FAILED = 1  #: an expected failure, reported in a ``failed`` event first
    INVALID = 3  #: the job file or its data cannot be used (an ``invalid`` event says why)
    LOCKED = 5  #: another process holds the job
    STOPPED = 10  #: asked to stop (SIGTERM); the checkpoint is flushed
    CLUSTER = 11  #: the Dask scheduler is unreachable or was lost: the job waits


def describe_exit(code: int) -> str:
    """An exit status as the operator reads it in ``status`` and the log."""
    import signal

    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


# --- events ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """Base of the worker's events; ``at`` is the worker's wall clock (epoch seconds)."""

    kind: ClassVar[str] = ""
    at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Progress(Event):
    """Every model type's summary (``ModelResults.summary()``), about once a second."""

    kind: ClassVar[str] = "progress"
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    running: str | None = None
    backend: str = "local"
    #: local processes fitting (the worker and its pool), None on a cluster
    processes: int | None = None
    #: the Dask cluster's workers, None when local
    cluster_workers: int | None = None


@dataclass(frozen=True)
class Dispatching(Event):
    """The first task is handed out: the search proper starts now."""

    kind: ClassVar[str] = "dispatching"


@dataclass(frozen=True)
class Done(Event):
    kind: ClassVar[str] = "done"


@dataclass(frozen=True)
class Stopped(Event):
    """Stopped on request, checkpoint flushed."""

    kind: ClassVar[str] = "stopped"


@dataclass(frozen=True)
class Invalid(Event):
    kind: ClassVar[str] = "invalid"
    error: str = ""


@dataclass(frozen=True)
class Failed(Event):
    kind: ClassVar[str] = "failed"
    error: str = ""


@dataclass(frozen=True)
class Disk(Event):
    """A checkpoint write failed (``error``), or works again (``error`` None)."""

    kind: ClassVar[str] = "disk"
    error: str | None = None


@dataclass(frozen=True)
class Cluster(Event):
    """The Dask scheduler is unreachable or was lost."""

    kind: ClassVar[str] = "cluster"
    error: str = ""


@dataclass(frozen=True)
class Reuse(Event):
    """The worker started on results this version of the job did not compute: an edited
    job file (or another job's results), or a start over with the old results archived."""

    kind: ClassVar[str] = "reuse"
    #: (candidate, fold) results taken over, not computed again
    reused: int = 0
    #: candidates with no result yet, and their fits (first batches: later rounds unknown)
    new_candidates: int = 0
    new_fits: int = 0
    #: other jobs whose results were taken over → how many fits
    borrowed: dict[str, int] = field(default_factory=dict)
    #: the history entry the earlier results went to when the job started over, and why
    archived: int | None = None
    why: str | None = None


EVENTS: dict[str, type[Event]] = {c.kind: c for c in (
    Progress, Dispatching, Done, Stopped, Invalid, Failed, Disk, Cluster, Reuse)}


def encode(event: Event) -> bytes:
    """One event as a JSON line."""
    fields = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
    return (json.dumps({"event": event.kind, **fields}, default=_jsonable) + "\n").encode()


def decode(line: bytes) -> Event:
    """One JSON line back into its event; ValueError for anything else."""
    raw = json.loads(line)
    if not isinstance(raw, dict):
        raise ValueError("not an object")
    cls = EVENTS.get(raw.pop("event", None))
    if cls is None:
        raise ValueError("unknown event")
    names = {f.name for f in dataclasses.fields(cls)}
    try:
        return cls(**{k: v for k, v in raw.items() if k in names})
    except TypeError as e:
        raise ValueError(str(e)) from None


def _jsonable(o: Any) -> Any:
    item = getattr(o, "item", None)  # numpy scalars, without importing numpy here
    if callable(item):
        return item()
    return str(o)


# --- settings --------------------------------------------------------------------------------


def encode_settings(settings: Settings) -> str:
    """The daemon's settings as one JSON text, for the worker's command line."""
    return json.dumps(dataclasses.asdict(settings), default=str)  # paths as text


def decode_settings(text: str) -> Settings:
    """The settings :func:`encode_settings` wrote, checked as a config file would be."""
    return settings_from(json.loads(text), "the supervisor's settings")
