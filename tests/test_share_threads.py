"""Every fit of a job with n_jobs > 1 runs with the threads GridSearchCV(n_jobs)'s workers
get, the worker's own fits before its pool is up too: k-NN on digits breaks ties between
equally distant neighbours differently with 1 and with 2 threads, and searchd's scores are
GridSearchCV(n_jobs=N)'s to the bit whenever the pool starts."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from test_random_search import job_settings
from threadpoolctl import threadpool_info

from searchd.state.read import load_results
from searchd.worker.evaluate import Task
from searchd.worker.events import Events
from searchd.worker.job import JobRun
from searchd.worker.local_runner import LocalRunner

pytestmark = pytest.mark.timeout(120)

JOB = """
[data]
source = "sklearn:digits"
[search]
cv = 5

[models.knn]
estimator = "KNeighborsClassifier"
grid = { n_neighbors = [20, 23, 32] }
"""


def test_knn_ties_are_gridsearch_n_jobs_2s(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("searchd.worker.local_runner.POOL_WORTH_SECONDS", 1e9)
    monkeypatch.setattr("searchd.worker.local_runner.INLINE_SECONDS", 1e9)  # no pool
    run = JobRun(tmp_path / "state" / "j", "j",
                 dataclasses.replace(job_settings(tmp_path, JOB), n_jobs=2), Events(None))
    assert run.run() == 0
    results = load_results("j", tmp_path / "state")
    ours = results.models["knn"].cv_results_
    X, y = load_digits(return_X_y=True)
    grid = {"n_neighbors": [20, 23, 32]}
    gs = GridSearchCV(KNeighborsClassifier(), grid, cv=results.splits, n_jobs=2).fit(X, y)
    for f in range(5):  # (fitted with 2 threads, as before the fix, split 0 differed)
        key = f"split{f}_test_score"
        assert np.array_equal(ours[key], gs.cv_results_[key]), f


def test_the_workers_own_fits_get_the_pools_thread_count() -> None:
    seen: list[int] = []

    class Counting(KNeighborsClassifier):
        def fit(self, X: Any, y: Any) -> Any:
            seen.append(max(i["num_threads"] for i in threadpool_info()))
            return super().fit(X, y)

    X, y = load_digits(return_X_y=True)
    splits = [(np.asarray(a), np.asarray(b)) for a, b in StratifiedKFold(3).split(X, y)]
    runner = LocalRunner(2, X, y, splits)
    try:
        list(runner.stream(Counting(), [Task(0, f, {}) for f in range(3)],
                           lambda est, X, y: {"score": 0.0}, count=3))
    finally:
        runner.close()
    assert seen == [max(1, (os.cpu_count() or 1) // 2)] * 3
