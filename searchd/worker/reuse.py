"""Results reused across versions of a job, and across jobs: the *pool*.

A job's checkpoint holds the results its file presents (``Snapshot.models``, one per model
type) and those it no longer presents (``Snapshot.kept``: removed candidates, removed types,
types whose estimator changed). Both are pooled here by model spec key
(:func:`~searchd.worker.plan.model_key`: estimator, fixed params, data digest, CV, scoring,
preprocessing), and a model type of the new version adopts, candidate by candidate, every
result of the pool entry with its spec key. What the new version does not present goes back
to ``kept`` at every base write, so nothing computed is dropped by an edit.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from searchd.jobs.ids import job_id_problem
from searchd.state.checkpoint import Snapshot, read_results
from searchd.state.files import atomic_write, read_private
from searchd.state.results import ModelResults
from searchd.state.store import CheckpointStore
from searchd.worker.strategy import content_key

log = logging.getLogger("searchd.worker")

#: a job folder's note of its evaluation context (a hint for other jobs; the checkpoint's
#: own ``context`` is compared again once it is verified and read)
CONTEXT_FILE = "context.json"


def _blank(like: ModelResults) -> ModelResults:
    return ModelResults.empty(like.name, like.spec_key, [], [], like.scorers, like.refit,
                              like.n_folds)


def copy_rows(dst: ModelResults, rows: list[int], src: ModelResults, from_rows: list[int]
              ) -> None:
    """Rows ``from_rows`` of ``src`` into rows ``rows`` of ``dst`` (the same spec key and
    folds), columns at once: pools may hold 100,000 rows."""
    if not rows:
        return
    i, j = np.asarray(rows, dtype=np.intp), np.asarray(from_rows, dtype=np.intp)
    dst.done[i] = src.done[j]
    dst.fit_time[i] = src.fit_time[j]
    dst.score_time[i] = src.score_time[j]
    for s in dst.scorers:
        dst.scores[s][i] = src.scores[s][j]
    targets = set(rows)
    if dst.errors:
        dst.errors = {k: v for k, v in dst.errors.items() if k[0] not in targets}
    if src.errors:
        where = dict(zip(from_rows, rows, strict=True))
        for (r, f), e in src.errors.items():
            if r in where:
                dst.errors[(where[r], f)] = e


def merge_into(pool: dict[str, ModelResults], res: ModelResults) -> None:
    """Add ``res``'s rows to the pool entry of its spec key (a row already there is
    replaced when ``res`` has at least as many of its folds done), and its draws."""
    entry = pool.get(res.spec_key)
    if entry is None:
        entry = pool[res.spec_key] = _blank(res)
    if entry.n_folds != res.n_folds or entry.scorers != res.scorers:
        return  # cannot happen for one spec key; never mix shapes
    before = len(entry.keys)
    rows = entry.add_candidates(res.keys, [dict(p) for p in res.params])
    theirs, ours = res.done.sum(axis=1), entry.done.sum(axis=1)
    take = [j for j, i in enumerate(rows) if i >= before or theirs[j] >= ours[i]]
    copy_rows(entry, [rows[j] for j in take], res, take)
    if res.draws:
        entry.draws = {**(entry.draws or {}), **res.draws}


class Pool:
    """Every result reusable by this job, by model spec key; static while the worker runs."""

    def __init__(self) -> None:
        self.by_key: dict[str, ModelResults] = {}
        self._kept: dict[str, ModelResults] | None = None
        #: where the results came from besides the job itself: other job → fits
        self.borrowed: dict[str, int] = {}

    def add_snapshot(self, snap: Snapshot) -> None:
        for res in snap.kept.values():
            merge_into(self.by_key, res)
        for res in snap.models.values():
            merge_into(self.by_key, res)
        self._kept = None

    def get(self, spec_key: str) -> ModelResults | None:
        return self.by_key.get(spec_key)

    @property
    def fits(self) -> int:
        return sum(r.fits_done for r in self.by_key.values())

    def invalidate(self) -> None:
        """Rows were added to the view: ``kept`` is computed again at the next base."""
        self._kept = None

    def kept(self, view: Iterable[ModelResults]) -> dict[str, ModelResults]:
        """The pool's results that ``view`` does not present, by spec key (rows with no
        fold done are left out: there is nothing to keep)."""
        if self._kept is not None:
            return self._kept
        shown: dict[str, set[str]] = {}
        for res in view:
            shown.setdefault(res.spec_key, set()).update(res.keys)
        out: dict[str, ModelResults] = {}
        for key, entry in self.by_key.items():
            hide = shown.get(key, set())
            rows = [j for j, k in enumerate(entry.keys)
                    if k not in hide and entry.done[j].any()]
            if not rows and not entry.draws:
                continue
            part = _blank(entry)
            got = part.add_candidates([entry.keys[j] for j in rows],
                                      [dict(entry.params[j]) for j in rows])
            copy_rows(part, got, entry, rows)
            part.draws = dict(entry.draws) if entry.draws else None
            out[key] = part
        self._kept = out
        return out


def context_digest(context: dict[str, Any], data_digest: str) -> str:
    """One key for an evaluation context and the data it saw."""
    return content_key({"context": context, "data": data_digest})


def note_context(job_dir: Path, context: dict[str, Any], data_digest: str) -> None:
    """Write ``context.json``, the hint other jobs look for (best effort)."""
    text = json.dumps({"key": context_digest(context, data_digest)}) + "\n"
    try:
        atomic_write(job_dir / CONTEXT_FILE, text.encode(), durable=False)
    except OSError as e:
        log.warning("%s: cannot write %s: %s", job_dir.name, CONTEXT_FILE, e)


def _hint(job_dir: Path) -> str | None:
    try:
        doc = json.loads(read_private(job_dir / CONTEXT_FILE).decode())
    except (OSError, ValueError):
        return None
    return doc.get("key") if isinstance(doc, dict) else None


def borrow(pool: Pool, state_dir: Path, job_id: str, key: bytes, context: dict[str, Any],
           data_digest: str) -> None:
    """Add to ``pool`` the results of every other job in ``state_dir`` evaluated in the
    same context on the same data (their checkpoints verified before they are read)."""
    want = context_digest(context, data_digest)
    try:
        entries = sorted(p for p in state_dir.iterdir()
                         if p.name != job_id and job_id_problem(p.name) is None
                         and p.is_dir() and not p.is_symlink())
    except OSError:
        return
    for d in entries:
        if _hint(d) != want:
            continue
        snap, _ = read_results(CheckpointStore(d, key, d.name))
        if snap is None or snap.context != context or snap.data_digest != data_digest:
            continue
        before = pool.fits
        pool.add_snapshot(snap)
        if pool.fits > before:
            pool.borrowed[d.name] = pool.fits - before


__all__ = ["CONTEXT_FILE", "Pool", "borrow", "context_digest", "copy_rows", "merge_into",
           "note_context"]
