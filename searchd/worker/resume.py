"""Where a worker starts from: the job's checkpoint, read against the spec it runs now.

The frozen spec may be a new version of the job file (an edit the supervisor accepted).
If the evaluation context (:mod:`searchd.jobs.context`) or the data changed, the results so
far are archived whole (:mod:`searchd.state.history`) and the job starts over; otherwise
every result of the checkpoint is pooled (:mod:`searchd.worker.reuse`) and each model type
adopts what it presents. A type whose version is unchanged and was done stays done as it
was; a type whose candidates changed is done again at once, without a refit, only when
every fold is reused and its best is the same candidate.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from searchd import protocol
from searchd.jobs.context import context_changes, evaluation_context, type_version
from searchd.jobs.spec import JobSpec
from searchd.state.checkpoint import Snapshot, read_results
from searchd.state.history import Archived, archive
from searchd.state.results import DONE, ModelResults
from searchd.state.store import CheckpointStore, Refused
from searchd.worker.reuse import Pool, borrow, note_context
from searchd.worker.strategy import content_key

log = logging.getLogger("searchd.worker")


@dataclass
class Start:
    """The checkpoint a worker resumes from, as the spec it runs now sees it."""

    #: the job's results checkpoint (None: none, or archived because the context changed)
    old: Snapshot | None
    pool: Pool
    context: dict[str, Any]
    #: the digest of the spec the worker runs now
    spec_digest: str = ""
    refused: list[Refused] = field(default_factory=list)
    archived: Archived | None = None
    why: str | None = None

    @property
    def edited(self) -> bool:
        """The checkpoint was written for another version of the job file."""
        return self.old is not None and self.old.spec_digest != self.spec_digest

    def previous(self, name: str) -> ModelResults | None:
        return None if self.old is None else self.old.models.get(name)


def held_fits(snap: Snapshot) -> int:
    return sum(r.fits_done for r in (*snap.models.values(), *snap.kept.values()))


def context_change(old: Snapshot, context: dict[str, Any], data_digest: str) -> str | None:
    """Why ``old``'s results cannot be reused under ``context`` on data ``data_digest``;
    None if they can."""
    changes = context_changes(old.context, context) if old.context is not None else []
    if changes:
        return f"{', '.join(changes)} changed"
    if old.data_digest != data_digest:
        return "the data changed (its content digest)"
    return None


def start(store: CheckpointStore, spec: JobSpec, data_digest: str) -> Start:
    """Read the checkpoint; archive it when its context is not the spec's; pool what is
    reusable (another job's results too, for a job with none of its own)."""
    old, refused = read_results(store, quarantine=True)
    context = evaluation_context(spec)
    began = Start(old=old, pool=Pool(), context=context, spec_digest=spec.digest,
                  refused=refused)
    if old is not None:
        why = context_change(old, context, data_digest)
        if why is not None:
            began.archived = archive(store, why, held_fits(old),
                                     {"spec_digest": old.spec_digest, "context": old.context})
            began.why, began.old = why, None
    if began.old is not None:
        began.pool.add_snapshot(began.old)
    else:  # a new job, or one started over: other jobs' results in this context
        borrow(began.pool, store.dir.parent, store.job_id, store.key, context, data_digest)
        for other, n in began.pool.borrowed.items():
            log.info("%s: reusing %d fits of job %s (same data, CV, scoring and "
                     "preprocessing)", store.job_id, n, other)
    note_context(store.dir, context, data_digest)
    return began


def unchanged_done(began: Start, spec: JobSpec, name: str, res: ModelResults) -> bool:
    """The type is the version the checkpoint holds, and was done: it stays as it was."""
    prev = began.previous(name)
    old = began.old
    return (prev is not None and old is not None and prev.state == DONE
            and prev.spec_key == res.spec_key
            and old.type_versions.get(name) == type_version(spec.model(name)))


def settle(res: ModelResults, prev: ModelResults | None) -> None:
    """After the first batch's adoption: a type that was done, whose every fold is now
    reused and whose best is the same candidate, is done without a refit."""
    if prev is None or prev.state != DONE or prev.spec_key != res.spec_key \
            or prev.best_index is None or res.row_iter is not None:
        return
    if not res.keys or res.fits_done != res.fits_total:
        return
    best = res.finish()
    if res.keys[best] == prev.keys[prev.best_index]:
        res.state = DONE
        res.test_score, res.refit_time = prev.test_score, prev.refit_time
        res.refit_error = prev.refit_error
    else:
        res.best_index = None  # another best: the type is refitted


def settle_from_model(res: ModelResults, ckpt: Any) -> None:
    """A type put back whose every fold is reused and whose best is the one
    its ``model-<type>`` checkpoint still holds is done as it was, without a refit."""
    if res.state == DONE or res.row_iter is not None or not res.keys \
            or res.fits_done != res.fits_total or not isinstance(ckpt, dict):
        return
    res.finish()
    if model_matches(ckpt, res) and ckpt.get("key") is not None and "spec_key" in ckpt:
        res.state, res.test_score = DONE, ckpt.get("test_score")
    else:
        res.best_index = None


def model_matches(ckpt: Any, res: ModelResults) -> bool:
    """A ``model-<type>`` checkpoint holds this type's best (of this estimator)."""
    if not isinstance(ckpt, dict) or res.best_index is None:
        return False
    if ckpt.get("spec_key", res.spec_key) != res.spec_key:
        return False
    key = ckpt.get("key")
    return key is None or key == content_key(res.params[res.best_index])


def reuse_event(began: Start, models: dict[str, ModelResults]) -> protocol.Reuse | None:
    """What the worker says it reused (None for a plain resume of the same version)."""
    if not (began.edited or began.archived or began.pool.borrowed):
        return None
    reused = sum(m.fits_done for m in models.values())
    new = sum(int(not m.done[i].any()) for m in models.values() for i in range(len(m.keys)))
    return protocol.Reuse(reused=reused, new_candidates=new,
                          new_fits=sum(m.fits_total - m.fits_done for m in models.values()),
                          borrowed=dict(began.pool.borrowed),
                          archived=None if began.archived is None else began.archived.n,
                          why=began.why)


__all__ = ["Start", "context_change", "held_fits", "model_matches", "reuse_event", "settle",
           "settle_from_model", "start", "unchanged_done"]
