"""Evaluating (candidate, fold) tasks: the task itself and the backends that stream them.

Each task does what ``GridSearchCV`` does for one candidate and fold, with public
scikit-learn API only: clone → set_params → fit → score. Results stream back as
each task finishes (``joblib.Parallel(return_as="generator_unordered")``), so the
worker can checkpoint them while the others still run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import clone

from . import guard
from .plan import Scoring

#: (candidate index, fold, {scorer: score} or None, fit seconds, score seconds, error)
Outcome = tuple[int, int, dict[str, float] | None, float, float, str | None]


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


def stream_local(template: Any, tasks: Iterable[Task], X: np.ndarray, y: np.ndarray,
                 splits: list[tuple[np.ndarray, np.ndarray]], scoring: Scoring,
                 n_jobs: int) -> Iterator[Outcome]:
    """Run tasks on this machine with joblib's loky processes, yielding as each finishes."""
    calls = (delayed(evaluate)(template, t.params, X, y, *splits[t.fold], scoring, t.i, t.fold)
             for t in tasks)
    parallel = Parallel(n_jobs=n_jobs, return_as="generator_unordered",
                        pre_dispatch="2*n_jobs", initializer=guard.child_init,
                        initargs=(os.getpid(),))
    yield from parallel(calls)
