"""Job states, the allowed transitions, and each job's ``summary.json``.

The supervisor is the only writer of ``summary.json``; the CLI reads it.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from searchd.errors import SearchdError
from searchd.state.store import atomic_write, make_private_dir

log = logging.getLogger(__name__)

SUMMARY = "summary.json"


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    DONE = "done"
    FAILED = "failed"
    INVALID = "invalid"
    CANCELLED = "cancelled"


S = JobState
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    S.QUEUED: frozenset({S.RUNNING, S.INVALID, S.CANCELLED, S.FAILED}),
    S.RUNNING: frozenset({S.PAUSED, S.QUEUED, S.DONE, S.FAILED, S.INVALID, S.CANCELLED}),
    S.PAUSED: frozenset({S.RUNNING, S.QUEUED, S.DONE, S.FAILED, S.CANCELLED}),
    # a new job file (same id, new content) may give a finished job a fresh start
    S.DONE: frozenset({S.QUEUED}),
    S.FAILED: frozenset({S.QUEUED, S.CANCELLED}),
    S.INVALID: frozenset({S.QUEUED}),
    S.CANCELLED: frozenset({S.QUEUED}),
}
ACTIVE = frozenset({S.QUEUED, S.RUNNING, S.PAUSED})
FINAL = frozenset({S.DONE, S.FAILED, S.INVALID, S.CANCELLED})


class TransitionError(SearchdError):
    pass


@dataclass
class JobRecord:
    """What ``summary.json`` says about one job."""

    id: str
    state: JobState = S.QUEUED
    error: str | None = None
    source: str | None = None
    #: sha256 of the accepted (frozen) job file
    spec_digest: str | None = None
    #: the file in jobs/ now differs from the frozen spec
    file_changed: bool = False
    #: the file in jobs/ is gone (the job stops; its results stay)
    file_removed: bool = False
    priority: int = 0
    mtime: float = 0.0
    fits_done: int = 0
    fits_total: int = 0
    fits_computed: int = 0
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    paused_reason: str | None = None
    disk_error: str | None = None
    deaths: int = 0
    last_exit: str | None = None
    started_at: float | None = None
    #: when the worker first dispatched tasks (its own clock): the search proper began
    first_task_at: float | None = None
    finished_at: float | None = None
    #: when the worker reported the job done
    done_at: float | None = None
    #: seconds the job's worker actually ran (paused time excluded), for the ETA
    run_seconds: float = 0.0
    eta_seconds: float | None = None
    #: where the fits run: "local" (joblib) or "dask" (the daemon's Dask scheduler)
    backend: str = "local"
    #: Dask workers the scheduler reported while the job ran (None: local, or not connected)
    cluster_workers: int | None = None
    #: local backend: processes fitting at the last report (1 while the worker fits alone,
    #: n_jobs once its pool's processes are up; None: not started, or Dask)
    processes: int | None = None
    updated_at: float = 0.0

    def to(self, new: JobState, error: str | None = None) -> bool:
        """Change state, refusing a transition the table does not allow; True if it changed."""
        if new == self.state:
            self.error = error if error is not None else self.error
            return False
        if new not in TRANSITIONS[self.state]:
            raise TransitionError(f"job {self.id}: cannot go from {self.state.value} to "
                                  f"{new.value}")
        log.info("%s: %s -> %s%s", self.id, self.state.value, new.value,
                 f" ({error})" if error else "")
        self.state = new
        self.error = error
        if new in FINAL:
            self.finished_at = time.time()
            self.eta_seconds = None
        return True

    def as_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["state"] = self.state.value
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> JobRecord:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        known["state"] = JobState(known.get("state", "queued"))
        return cls(**known)


def finite(value: Any) -> Any:
    """JSON has no NaN: failed scores become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def summary_path(state_dir: Path, job_id: str) -> Path:
    return state_dir / job_id / SUMMARY


def write_summary(state_dir: Path, rec: JobRecord) -> None:
    rec.updated_at = time.time()
    make_private_dir(state_dir / rec.id)
    text = json.dumps(finite(rec.as_json()), indent=2, allow_nan=False, default=str) + "\n"
    atomic_write(summary_path(state_dir, rec.id), text.encode(), durable=False)


def read_summary(state_dir: Path, job_id: str) -> JobRecord | None:
    p = summary_path(state_dir, job_id)
    try:
        return JobRecord.from_json(json.loads(p.read_text()))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as e:
        log.error("%s: unreadable summary (%s); rebuilding it", p, e)
        return None


def all_summaries(state_dir: Path) -> list[JobRecord]:
    out: list[JobRecord] = []
    if not state_dir.is_dir():
        return out
    for d in sorted(state_dir.iterdir()):
        if d.is_dir():
            rec = read_summary(state_dir, d.name)
            if rec is not None:
                out.append(rec)
    return out
