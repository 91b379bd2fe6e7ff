"""One (candidate, fold) task, evaluated the way ``GridSearchCV`` evaluates it, and its order.

Each task is clone → set_params → fit → score with public scikit-learn API only, wherever it
runs (the worker, a pool process, a Dask worker): the scores are the same everywhere.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import joblib
import numpy as np
from sklearn.base import clone

from searchd import lifeline as guard
from searchd.worker import poison
from searchd.worker.chains import evaluate_chain
from searchd.worker.plan import Scoring
from searchd.worker.prefit import PrefixCache, fit_shared, make_cache, shared_key
from searchd.worker.tables import rows

#: the longest fit error kept (log, checkpoint, summary): a message may quote a parameter
#: value whole, and one 100 kB value failing 600 fits once made a 120 MB log
MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class Task:
    #: the candidate's row in its model type's results
    i: int
    fold: int
    #: the candidate's parameters, built (estimator-valued ones are estimators)
    params: dict[str, Any]
    #: (train, test) indices when not the fold's own (a halving round's subsample of it)
    split: tuple[np.ndarray, np.ndarray] | None = None

    def indices(self, splits: list[tuple[np.ndarray, np.ndarray]]
                ) -> tuple[np.ndarray, np.ndarray]:
        return self.split if self.split is not None else splits[self.fold]

    #: the task's name in fit records and strikes (``poison.task_tag``)
    tag: str = ""
    #: a warm-start chain (:mod:`searchd.worker.chains`): the parameter key it grows and
    #: the links after this task's own, (row, parameters, tag), by size ascending; links
    #: without ``grow``: a run of tasks sharing their preprocessing (``prefit.runs``)
    grow: str = ""
    links: tuple[tuple[int, dict[str, Any], str], ...] = ()

    @property
    def weight(self) -> int:
        """The fits the task makes: 1, or one per link of a chain."""
        return 1 + len(self.links)


class Outcome(NamedTuple):
    """What one task gave: scores, or the error its fit or scoring raised."""

    i: int
    fold: int
    #: {scorer: score}; None when the fit or the scoring failed (error_score=nan)
    scores: dict[str, float] | None
    fit_time: float
    score_time: float
    error: str | None

    @property
    def seconds(self) -> float:
        return self.fit_time + self.score_time


def evaluate(template: Any, params: dict[str, Any], X: np.ndarray, y: np.ndarray,
             train: np.ndarray, test: np.ndarray, scoring: Scoring, i: int, fold: int,
             cache: PrefixCache | None = None) -> Outcome:
    """One (candidate, fold) task, the way GridSearchCV evaluates it (error_score=nan);
    with a ``cache``, deterministic preprocessing is shared (:mod:`searchd.worker.prefit`)."""
    est = clone(template).set_params(**clone(params, safe=False))
    key = shared_key(est, train) if cache is not None else None
    start = time.time()
    try:
        if key is not None and cache is not None:
            fit_shared(est, key, cache, rows(X, train), y[train])
        else:
            est.fit(rows(X, train), y[train])
    except Exception as e:  # noqa: BLE001 - recorded as error_score=nan, like GridSearchCV
        return Outcome(i, fold, None, time.time() - start, 0.0, fit_error(e))
    fit_time = time.time() - start
    start = time.time()
    try:
        scores = scoring(est, rows(X, test), y[test])
    except Exception as e:  # noqa: BLE001
        return Outcome(i, fold, None, fit_time, time.time() - start, fit_error(e))
    return Outcome(i, fold, scores, fit_time, time.time() - start, None)


def run_task(template: Any, t: Task, X: Any, y: np.ndarray,
             splits: list[tuple[np.ndarray, np.ndarray]], scoring: Scoring,
             record: poison.FitRecord | None = None, cache: PrefixCache | None = None
             ) -> Iterator[Outcome]:
    """A task's outcomes as each is scored: one, or a chain's or a run's links one by one
    (each named in ``record`` while it fits: a death or a time limit is that link's)."""
    train, test = t.indices(splits)
    if not t.links:
        yield evaluate(template, t.params, X, y, train, test, scoring, t.i, t.fold, cache)
        return
    links = [(t.i, t.params, t.tag), *t.links]
    if not t.grow:  # a run: the same preprocessing, each fitted fresh beside the cache
        for i, params, tag in links:
            if record is not None:
                record.start(tag)
            yield evaluate(template, params, X, y, train, test, scoring, i, t.fold, cache)
        return
    yield from evaluate_chain(template, t.grow, links, X, y, train, test, scoring, t.fold,
                              None if record is None else record.start, cache)


def fit_error(e: BaseException) -> str:
    """``Type: message``, on one line and at most :data:`MAX_ERROR_CHARS` characters."""
    return clip_error(f"{type(e).__name__}: {e}")


def clip_error(text: str) -> str:
    if not text.isprintable():
        text = text.encode("unicode_escape").decode("ascii")
    if len(text) <= MAX_ERROR_CHARS:
        return text
    return f"{text[:MAX_ERROR_CHARS]}... ({len(text):,} characters, clipped)"


def longest_first(pending: list[tuple[int, int]],
                  seconds: Callable[[], np.ndarray]) -> Iterator[tuple[int, int]]:
    """The pending (candidate, fold) tasks in an order that ends the search on short ones.

    First one task of each candidate still missing a measured time, in grid order, which
    measures them; then every other task, costliest candidate first (``seconds()``: each
    candidate's mean task time so far, read when that phase starts; NaN counts as the
    median). A search that ends on its longest fits leaves cores idle while they finish;
    the longest-processing-time-first order keeps that tail short. The order changes
    nothing else: every result is stored by (candidate, fold).
    """
    known = seconds()
    first: list[tuple[int, int]] = []
    rest: list[tuple[int, int]] = []
    probed: set[int] = set()
    for i, f in pending:
        if np.isnan(known[i]) and i not in probed:
            probed.add(i)
            first.append((i, f))
        else:
            rest.append((i, f))
    yield from first
    if not rest:
        return
    est = seconds()
    fill = float(np.nanmedian(est)) if not np.all(np.isnan(est)) else 0.0
    est = np.where(np.isnan(est), fill, est)
    # stable: equal costs keep grid order
    yield from sorted(rest, key=lambda t: -est[t[0]])


# --- in a pool process -------------------------------------------------------------------------

#: the pool process's copy of the job's (X, y, splits), set by its initializer
_pool_data: tuple[Any, Any, list[tuple[np.ndarray, np.ndarray]]] | None = None
#: the pool process's fit record (which task it fits), set by its initializer
_record: poison.FitRecord | None = None
#: the pool process's shared preprocessing (None: not shared)
_cache: PrefixCache | None = None


def pool_init(parent: int, data: Any, records: str | None = None,
              max_fit_seconds: float = 0.0, cache_mb: float = 0.0) -> None:
    """In each pool process: die with the worker, keep the job's data for every batch,
    name each task it fits in its record, and stop itself over a fit past the time limit."""
    global _pool_data, _record, _cache
    guard.child_init(parent)
    _cache = make_cache(cache_mb)
    _pool_data = joblib.load(data, mmap_mode="r") if isinstance(data, str) else data
    if records is not None:
        _record = poison.FitRecord(Path(records), "pool")
        if max_fit_seconds > 0:
            poison.watch_time(_record, max_fit_seconds,
                              lambda: os._exit(poison.TIMEOUT_EXIT))


def warm() -> None:
    """A no-op task: returns once a pool process is up."""


def evaluate_batch(template: Any, scoring: Scoring, batch: list[Task],
                   stream: str | None = None) -> list[Outcome]:
    """In a pool process: ``evaluate`` each task on the data its initializer kept; with a
    ``stream`` path, the links of a chain or a run are also written there as each is
    scored (:mod:`searchd.worker.linkstream`), for the worker to record before the batch
    ends."""
    from searchd.worker.linkstream import writer_for
    assert _pool_data is not None, "not a searchd pool process"
    X, y, splits = _pool_data
    out: list[Outcome] = []
    writer = writer_for(stream, batch)
    try:
        for t in _recording(batch):
            for o in run_task(template, t, X, y, splits, scoring, _record, _cache):
                out.append(o)
                if writer is not None:
                    writer.put(o)
    finally:
        if writer is not None:
            writer.close()
    return out


def _recording(batch: list[Task]) -> Iterator[Task]:
    """The batch's tasks, each named in this process's record while it is evaluated."""
    for t in batch:
        if _record is not None:
            _record.start(t.tag)
        yield t
        if _record is not None:
            _record.end()
