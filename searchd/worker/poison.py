"""Poison fits and fits that run too long: which task was in flight, and what to do about it.

Every process that fits (the worker and each pool process) keeps a *fit record*: a
fixed-size file ``fitting/<pid>`` in the job's folder naming the task it is fitting, written
in place when a task starts and when it ends (two ``pwrite`` calls, no fsync: a record only
has to outlive its process, and the page cache outlives a killed process). So whoever sees
a process die knows which task was in flight there:

* the worker, when a pool process dies (loky breaks the pool): the tasks the pool's records
  name were running there;
* the next worker, when the worker itself died: its record names the task it was fitting
  (pool processes die with the worker, so their records say nothing about the cause).

Each such death is a *strike* against the task, kept in ``strikes.json``. A struck task is
re-run alone, before the batch's other tasks; a task whose process died
:data:`MAX_FIT_DEATHS` times is recorded as failed (score NaN, the error says so) and the
search goes on. A kill -9 from outside counts like any other death: a task whose process
is killed twice is, to searchd, a poison fit.

A fit that runs past ``max_fit_seconds`` marks its record ``timeout`` and its process
exits (a pool process at once; the worker after a flush, to be restarted): the task is
recorded as failed with that reason, no strike needed.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from searchd.state.files import atomic_write, read_private

log = logging.getLogger("searchd.worker")

RECORDS = "fitting"
STRIKES = "strikes.json"
RECORD_BYTES = 512
#: deaths of the process fitting a task before the task is recorded as failed
MAX_FIT_DEATHS = 2
#: a pool process's exit status when it stopped itself over a fit past max_fit_seconds
TIMEOUT_EXIT = 75
RUN, IDLE, TIMEOUT = "run", "idle", "timeout"


def task_tag(model: str, key: str, fold: int) -> str:
    """A task's name in records and strikes: fold, candidate key, model type."""
    return f"{fold} {key} {model}"


@dataclass(frozen=True)
class Record:
    pid: int
    state: str
    #: "worker" or "pool"
    role: str
    #: wall-clock seconds when the task started
    since: float
    tag: str


class FitRecord:
    """This process's record: which task it is fitting, if any."""

    def __init__(self, folder: Path, role: str) -> None:
        folder.mkdir(mode=0o700, exist_ok=True)
        self.role = role
        self.fd = os.open(folder / str(os.getpid()),
                          os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        #: monotonic start of the task in progress; 0.0 when idle
        self.started = 0.0
        self.tag = ""
        self._write(f"{IDLE} {role}")

    def _write(self, text: str) -> None:
        os.pwrite(self.fd, text.encode()[:RECORD_BYTES].ljust(RECORD_BYTES, b" "), 0)

    def start(self, tag: str) -> None:
        self.tag, self.started = tag, time.monotonic()
        self._write(f"{RUN} {self.role} {time.time():.3f} {tag}")

    def end(self) -> None:
        self.started = 0.0
        self._write(f"{IDLE} {self.role}")

    def running_for(self) -> float:
        """Seconds the task in progress has run (0.0 when idle)."""
        started = self.started
        return time.monotonic() - started if started else 0.0

    def timed_out(self) -> None:
        self._write(f"{TIMEOUT} {self.role} {time.time():.3f} {self.tag}")


def read_records(folder: Path) -> list[Record]:
    """Every record in ``folder`` that names a task (running or timed out)."""
    out: list[Record] = []
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return out
    for name in names:
        if not name.isdigit():
            continue
        try:
            text = read_private(folder / name).decode(errors="replace").rstrip()
        except OSError:
            continue
        parts = text.split(" ", 3)
        if len(parts) == 4 and parts[0] in (RUN, TIMEOUT):
            try:
                out.append(Record(int(name), parts[0], parts[1], float(parts[2]), parts[3]))
            except ValueError:
                continue
    return out


def forget(folder: Path, pids: set[int] | None = None) -> None:
    """Remove the records of ``pids`` (default: all): their processes ended on purpose."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return
    for name in names:
        if name.isdigit() and (pids is None or int(name) in pids):
            try:
                os.unlink(folder / name)
            except FileNotFoundError:
                pass


class Strikes:
    """Deaths per task, durable in ``strikes.json``; shared by the worker's threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._data: dict[str, dict[str, object]] = {}
        try:
            data = json.loads(read_private(path))
            if isinstance(data, dict):
                self._data = {k: v for k, v in data.items() if isinstance(v, dict)}
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as e:
            log.warning("%s: unreadable (%s); starting without strikes", path, e)

    def deaths(self, tag: str) -> int:
        with self._lock:
            n = self._data.get(tag, {}).get("deaths", 0)
        return n if isinstance(n, int) else 0

    def error(self, tag: str) -> str | None:
        """Why the task is to be recorded as failed without running it again, if it is."""
        with self._lock:
            entry = self._data.get(tag, {})
        err = entry.get("error")
        if isinstance(err, str):
            return err
        n, how = entry.get("deaths", 0), entry.get("how", "")
        if isinstance(n, int) and n >= MAX_FIT_DEATHS:
            return (f"the process fitting it died {n} times (last: {how}); recorded as "
                    f"failed so that the search goes on (an out-of-memory kill or a crash in "
                    f"native code? max_memory turns a runaway allocation into a MemoryError)")
        return None

    def strike(self, tag: str, how: str) -> int:
        """One more death of the process fitting ``tag``; returns its deaths so far."""
        with self._lock:
            entry = self._data.setdefault(tag, {})
            n = entry.get("deaths", 0)
            entry["deaths"] = (n if isinstance(n, int) else 0) + 1
            entry["how"] = how
            self._save()
            return int(entry["deaths"])  # type: ignore[call-overload]

    def fail(self, tag: str, error: str) -> None:
        """Record ``tag`` as failed for ``error`` (a fit past max_fit_seconds)."""
        with self._lock:
            self._data.setdefault(tag, {})["error"] = error
            self._save()

    def _save(self) -> None:
        atomic_write(self.path, json.dumps(self._data, sort_keys=True).encode())


def timeout_error(limit: float) -> str:
    return (f"the fit ran longer than max_fit_seconds ({limit:g} s) and was stopped; "
            f"recorded as failed so that the search goes on")


def watch_time(record: FitRecord, limit: float, on_timeout: Callable[[], None]) -> None:
    """In a thread: call ``on_timeout`` once the task in progress has run past ``limit``."""
    def watch() -> None:
        while True:
            time.sleep(min(0.25, limit / 4))
            if record.running_for() > limit:
                record.timed_out()
                on_timeout()
                return

    threading.Thread(target=watch, name="fit-time", daemon=True).start()


class FitGuard:
    """The worker's side: its own record, the job's strikes, the fit time limit."""

    def __init__(self, job_dir: Path, max_fit_seconds: float) -> None:
        self.folder = job_dir / RECORDS
        self.limit = max_fit_seconds
        self.strikes = Strikes(job_dir / STRIKES)
        self.record: FitRecord | None = None
        #: the worker is ending its processes on purpose: their deaths say nothing
        self.stopping = False

    def start(self) -> None:
        """Count what the previous worker's records say, then open this worker's record."""
        for r in read_records(self.folder):
            if r.state == TIMEOUT:
                self.strikes.fail(r.tag, timeout_error(self.limit or (time.time() - r.since)))
                log.warning("fit %s ran past max_fit_seconds in the previous worker: "
                            "recorded as failed", r.tag)
            elif r.role == "worker":
                n = self.strikes.strike(r.tag, self._worker_death())
                log.warning("the previous worker died while fitting %s (%d of %d deaths "
                            "before it is recorded as failed)", r.tag, n, MAX_FIT_DEATHS)
        forget(self.folder)
        self.record = FitRecord(self.folder, "worker")

    def _worker_death(self) -> str:
        """How the previous worker died, as the supervisor wrote it in summary.json."""
        try:
            last = json.loads(read_private(self.folder.parent / "summary.json")).get("last_exit")
        except (OSError, ValueError, AttributeError):
            last = None
        if isinstance(last, str) and last.startswith("killed by"):
            return f"the worker fitting it was {last}"
        return "the worker fitting it died"

    def forget(self) -> None:
        """Every fitting process of this worker ends on purpose: drop their records."""
        forget(self.folder)
