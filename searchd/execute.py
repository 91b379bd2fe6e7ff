"""Evaluating (candidate, fold) tasks: the task itself and the backends that stream them.

Each task does what ``GridSearchCV`` does for one candidate and fold, with public
scikit-learn API only: clone → set_params → fit → score. Results stream back as
each task finishes (``joblib.Parallel(return_as="generator_unordered")``), so the
worker can checkpoint them while the others still run.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from joblib import Parallel, delayed, effective_n_jobs
from sklearn.base import clone

from . import guard
from .plan import Scoring

#: (candidate index, fold, {scorer: score} or None, fit seconds, score seconds, error)
Outcome = tuple[int, int, dict[str, float] | None, float, float, str | None]


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


@dataclass(frozen=True)
class Task:
    i: int
    fold: int
    params: dict[str, Any]


def evaluate(template: Any, params: dict[str, Any], X: np.ndarray, y: np.ndarray,
             train: np.ndarray, test: np.ndarray, scoring: Scoring, i: int, fold: int
             ) -> Outcome:
    """One (candidate, fold) task, the way GridSearchCV evaluates it (error_score=nan)."""
    est = clone(template).set_params(**clone(params, safe=False))
    start = time.time()
    try:
        est.fit(X[train], y[train])
    except Exception as e:  # noqa: BLE001 - recorded as error_score=nan, like GridSearchCV
        return i, fold, None, time.time() - start, 0.0, f"{type(e).__name__}: {e}"
    fit_time = time.time() - start
    start = time.time()
    try:
        scores = scoring(est, X[test], y[test])
    except Exception as e:  # noqa: BLE001
        return i, fold, None, fit_time, time.time() - start, f"{type(e).__name__}: {e}"
    return i, fold, scores, fit_time, time.time() - start, None


def _pool_args() -> dict[str, Any]:
    """Parallel's arguments that decide which loky pool it gets: the same everywhere, so
    that every call reuses the one pool (a difference would start a new one)."""
    return {"initializer": guard.child_init, "initargs": (os.getpid(),)}


def stream_local(template: Any, tasks: Iterable[Task], X: np.ndarray, y: np.ndarray,
                 splits: list[tuple[np.ndarray, np.ndarray]], scoring: Scoring,
                 n_jobs: int) -> Iterator[Outcome]:
    """Run tasks on this machine with joblib's loky processes, yielding as each finishes."""
    calls = (delayed(evaluate)(template, t.params, X, y, *splits[t.fold], scoring, t.i, t.fold)
             for t in tasks)
    parallel = Parallel(n_jobs=n_jobs, return_as="generator_unordered",
                        pre_dispatch="2*n_jobs", **_pool_args())
    yield from parallel(calls)


#: seconds of fits the worker runs itself before it starts joblib's pool
INLINE_SECONDS = 1.0
#: ... or sooner, once the tasks left would take longer than this at the rate seen so far
#: (about what starting the pool costs on 2 cores)
POOL_WORTH_SECONDS = 2.0
#: tasks the worker fits before it projects (the first fit of a type is often slower)
PROJECT_AFTER = 3


def _warm() -> None:
    """A no-op task that makes each pool process start and import scikit-learn."""
    import sklearn.base  # noqa: F401


class LocalRunner:
    """Runs a job's tasks on this machine, without paying for a pool a small job never needs.

    Starting joblib's loky processes (a fresh interpreter each, importing scikit-learn)
    takes 1–3 s on 2 cores: more than a whole tiny job. So the worker evaluates tasks
    itself first; once its first fits show the tasks left would take longer than the pool's
    start (or after ~1 s of fits), it starts the pool in a thread (the fits go on
    meanwhile) and hands the remaining tasks to it. The pool
    then serves the job's later model types too. Scores are the same either way: each
    task is the same clone → set_params → fit → score.
    """

    def __init__(self, n_jobs: int) -> None:
        self.n_jobs = n_jobs
        self.inline_seconds = 0.0
        self.ready = threading.Event()
        self.starter: threading.Thread | None = None

    @property
    def processes(self) -> int:
        """How many processes fit now: 1 until the pool is ready, then the pool's size."""
        return effective_n_jobs(self.n_jobs) if self.ready.is_set() else 1

    def _start_pool(self) -> None:
        n = effective_n_jobs(self.n_jobs)
        Parallel(n_jobs=self.n_jobs, **_pool_args())(delayed(_warm)() for _ in range(n))
        self.ready.set()

    def _worth_a_pool(self, done: int, later_seconds: float, count: int | None) -> bool:
        """~1 s of fits seen, or the ``count`` tasks would take longer than the pool's start
        at the rate of those after the first."""
        if self.inline_seconds >= INLINE_SECONDS:
            return True
        if count is None or done < PROJECT_AFTER:
            return False
        return later_seconds / (done - 1) * (count - done) >= POOL_WORTH_SECONDS

    def stream(self, template: Any, tasks: Iterable[Task], X: np.ndarray, y: np.ndarray,
               splits: list[tuple[np.ndarray, np.ndarray]], scoring: Scoring,
               count: int | None = None) -> Iterator[Outcome]:
        """Evaluate ``tasks`` (``count`` of them, if known), yielding as each finishes."""
        pending = iter(tasks)
        parallel = effective_n_jobs(self.n_jobs) > 1
        done, later_seconds = 0, 0.0
        while not (parallel and self.ready.is_set()):
            if parallel and self.starter is None and self._worth_a_pool(done, later_seconds,
                                                                        count):
                self.starter = threading.Thread(target=self._start_pool, name="pool-start",
                                                daemon=True)
                self.starter.start()
            task = next(pending, None)
            if task is None:
                return
            start = time.perf_counter()
            yield evaluate(template, task.params, X, y, *splits[task.fold], scoring, task.i,
                           task.fold)
            took = time.perf_counter() - start
            self.inline_seconds += took
            later_seconds += took if done else 0.0
            done += 1
        yield from stream_local(template, pending, X, y, splits, scoring, self.n_jobs)
