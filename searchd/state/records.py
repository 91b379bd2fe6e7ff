"""Job states, the allowed transitions, and each job's ``summary.json``.

The supervisor is the only writer of ``summary.json``; the CLI reads it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from searchd.errors import NotFoundError, SearchdError
from searchd.jobs.ids import job_id_problem
from searchd.jobs.messages import clip
from searchd.state.files import atomic_write, make_private_dir, read_private

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
    #: the file in jobs/ now differs from the frozen spec (an edit not applied: refused)
    file_changed: bool = False
    #: why the job file's latest edit was refused (the job keeps its last good spec)
    edit_error: str | None = None
    #: sha256 of the refused version (it is not read again until the file changes)
    edit_digest: str | None = None
    #: the last edit applied: ``at`` (epoch seconds), ``what`` changed, and what the worker
    #: then reused: ``reused``, ``new_candidates``, ``new_fits``, ``borrowed`` (other job →
    #: fits), ``archived`` (history entry) and ``why`` when the job started over
    last_edit: dict[str, Any] | None = None
    #: the file in jobs/ is gone (the job stops; its results stay)
    file_removed: bool = False
    #: the job file's priority (it runs at most at ±max_priority)
    priority: int = 0
    #: times the job yielded its slot after max_job_seconds: jobs with fewer turns run first
    #: (then by priority), so a long job waits behind the others once it has had its share
    turn: int = 0
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
    def from_json(cls, d: Any, job_id: str, where: str = SUMMARY) -> JobRecord:
        """The record ``d`` describes, for the job whose folder is named ``job_id``.

        The folder's name, never the file's ``id``, says which job it is (a planted
        ``"id": "../../x"`` must not become a path). Fields of the wrong type are
        dropped (their default is used) with a warning, so that a damaged file cannot
        stop the daemon or crash ``status``.
        """
        rec = cls(id=job_id)
        if not isinstance(d, dict):
            log.warning("%s: not a JSON object; rebuilding the record", where)
            return rec
        if d.get("id", job_id) != job_id:
            log.warning("%s: says id %s; the folder's name %r is the job's id", where,
                        _shown(d.get("id")), job_id)
        for name, value in d.items():
            if name == "id" or name not in _FIELD_TYPES:
                continue
            if name == "state":
                try:
                    rec.state = JobState(value)
                except (ValueError, TypeError):
                    log.warning("%s: state %s is no job state; using queued", where,
                                _shown(value))
                continue
            if name == "models":
                rec.models = _models(value, where)
                continue
            if not _fits(value, _FIELD_TYPES[name]):
                log.warning("%s: %s: expected %s, got %s; using the default", where, name,
                            _FIELD_TYPES[name], _shown(value))
                continue
            setattr(rec, name, float(value) if "float" in _FIELD_TYPES[name]
                    and isinstance(value, int) else value)
        return rec


#: the JSON type of each field of summary.json, as the record's annotations state it
_FIELD_TYPES: dict[str, str] = {
    name: str(f.type) for name, f in JobRecord.__dataclass_fields__.items()}
#: what a model type's entry in ``models`` may hold, and the type of each (the worker's
#: ``ModelResults.summary``); anything else is dropped
_MODEL_TYPES: dict[str, str] = {
    "state": "str", "fits_done": "int", "fits_total": "int", "errors": "int",
    "best_score": "float | None", "best_params": "dict | None",
    "test_score": "dict | None", "error": "str | None",
    "halving": "dict | None"}  # round, rounds, candidates (searchd.state.results)


def _fits(value: Any, annotation: str) -> bool:
    """Whether a JSON value has the type a field's annotation names."""
    kinds = {k.strip().split("[")[0] for k in annotation.split("|")}
    if value is None:
        return "None" in kinds
    if isinstance(value, bool):
        return "bool" in kinds
    if isinstance(value, int):
        return "int" in kinds or "float" in kinds
    if isinstance(value, float):
        return "float" in kinds and math.isfinite(value)
    if isinstance(value, str):
        return "str" in kinds or "JobState" in kinds
    return isinstance(value, dict) and "dict" in kinds


def _models(value: Any, where: str) -> dict[str, dict[str, Any]]:
    """``models`` with every entry of the expected shape; the rest dropped with a warning."""
    if not isinstance(value, dict):
        log.warning("%s: models: expected an object, got %s; dropping it", where,
                    _shown(value))
        return {}
    out: dict[str, dict[str, Any]] = {}
    for name, entry in value.items():
        if not isinstance(entry, dict):
            log.warning("%s: models.%s: expected an object, got %s; dropping it", where,
                        _shown(name), _shown(entry))
            continue
        good = {k: v for k, v in entry.items() if k in _MODEL_TYPES and _fits(v, _MODEL_TYPES[k])}
        if len(good) != len(entry):
            log.warning("%s: models.%s: dropped malformed fields %s", where, _shown(name),
                        _shown(sorted(set(entry) - set(good))))
        out[name] = good
    return out


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:80] + "..."


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
    """state/<job_id>/summary.json; a name that cannot be a job id is refused (NotFoundError):
    a job's folder is always exactly one level below the state folder."""
    problem = job_id_problem(job_id)
    if problem:
        raise NotFoundError(f"no job {clip(repr(job_id))} in {state_dir}: {problem}")
    return state_dir / job_id / SUMMARY


def write_summary(state_dir: Path, rec: JobRecord) -> bytes:
    """Write the record as ``state/<id>/summary.json``; returns the bytes written."""
    rec.updated_at = time.time()
    path = summary_path(state_dir, rec.id)
    make_private_dir(path.parent)
    text = json.dumps(finite(rec.as_json()), indent=2, allow_nan=False, default=str) + "\n"
    atomic_write(path, text.encode(), durable=False)
    return text.encode()


def read_summary(state_dir: Path, job_id: str) -> JobRecord | None:
    p = summary_path(state_dir, job_id)
    try:
        doc = json.loads(read_private(p).decode())
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError) as e:  # a link, a folder, not JSON, ...
        log.error("%s: unreadable summary (%s); rebuilding it", p, clip(str(e), 200))
        return None
    return JobRecord.from_json(doc, job_id, str(p))


def all_summaries(state_dir: Path) -> list[JobRecord]:
    """The record of every job folder in ``state_dir``, identified by the folder's name.

    Entries that cannot be job folders are skipped: the daemon's own (``quarantine``,
    ``published``, names that are no job id) silently, symbolic links with a warning
    (never followed).
    """
    out: list[JobRecord] = []
    try:
        entries = sorted(os.scandir(state_dir), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return out
    for d in entries:
        if job_id_problem(d.name) is not None:
            continue
        if d.is_symlink():
            log.warning("%s: a symbolic link, not a job folder; ignored (never followed)",
                        d.path)
            continue
        if d.is_dir(follow_symlinks=False):
            rec = read_summary(state_dir, d.name)
            if rec is not None:
                out.append(rec)
    return out
