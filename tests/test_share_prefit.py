"""Shared preprocessing in the real runner: the tasks sharing a (fold, preprocessing) go to
one process as a run, so the steps are fitted once per (fold, step parameters), not once
per candidate, in the worker and its pool alike; the scores stay GridSearchCV's."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.decomposition import PCA
from sklearn.model_selection import GridSearchCV, ParameterGrid, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from test_random_search import job_settings

from searchd.jobs.spec import canonical
from searchd.state.read import load_results
from searchd.worker import local_runner
from searchd.worker.events import Events
from searchd.worker.job import JobRun
from searchd.worker.local_runner import LocalRunner
from searchd.worker.prefit import Run, runs

pytestmark = pytest.mark.timeout(120)


class CountingScaler(StandardScaler):
    """A StandardScaler that appends a line (its process, its rows) to ``log`` per fit."""

    def __init__(self, log: str = "", *, copy: bool = True, with_mean: bool = True,
                 with_std: bool = True) -> None:
        super().__init__(copy=copy, with_mean=with_mean, with_std=with_std)
        self.log = log

    def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> CountingScaler:
        with open(self.log, "a") as f:
            f.write(f"{os.getpid()} {len(X)}\n")
        return super().fit(X, y, sample_weight)


def _job(log: Path, folds: int) -> str:
    return f"""
[data]
source = "sklearn:iris"
[search]
cv = {folds}

[[preprocess]]
name = "scale"
estimator = "test_share_prefit.CountingScaler"
params = {{ log = "{log}" }}

[[preprocess]]
name = "pca"
estimator = "PCA"
params = {{ svd_solver = "randomized", random_state = 0 }}

[models.svc]
estimator = "SVC"
[models.svc.grid]
scale__with_std = [true, false]
pca__n_components = [2, 3]
C = [0.5, 1.0, 2.0]
gamma = [0.01, 0.02]
"""


def test_the_pool_fits_each_folds_preprocessing_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "searchd.worker")
    monkeypatch.setattr(local_runner, "POOL_WORTH_SECONDS", 0.0)  # the pool starts at once
    stream = LocalRunner.stream

    def after_the_pool(self: LocalRunner, template: Any, tasks: Any, *a: Any, **kw: Any
                       ) -> Any:
        def wait_for_it() -> Any:  # the worker's first run, then the pool up for the rest
            it = iter(tasks)
            yield from itertools.islice(it, 1)
            self.start_pool()
            assert self.ready.wait(60) and self.start_error is None
            yield from it
        return stream(self, template, wait_for_it(), *a, **kw)

    monkeypatch.setattr(LocalRunner, "stream", after_the_pool)
    log = tmp_path / "scale-fits.log"
    folds = 3
    settings = job_settings(tmp_path, _job(log, folds), allow_modules=("test_share_prefit",))
    run = JobRun(tmp_path / "state" / "j", "j", dataclasses.replace(settings, n_jobs=2),
                 Events(None))
    assert run.run() == 0
    results = load_results("j", tmp_path / "state")
    _assert_same_as_gridsearch(results, tmp_path / "gs.log")
    lines = [line.split() for line in log.read_text().splitlines()]
    n_train = max(int(n) for _, n in lines)  # the refit of the best, on every training row
    fits = [(pid, n) for pid, n in lines if int(n) < n_train]
    # 4 preprocessing parameter sets (with_std x n_components) on 3 folds: the steps are
    # fitted 12 times for 72 tasks (GridSearchCV: 72), each run's where it runs
    assert len(fits) == 4 * folds, fits
    assert "j: svc: preprocessing shared: 72 fits as 12 runs" in caplog.messages
    assert len({pid for pid, _ in fits}) == 2, "both processes fitted"
    # what `searchd validate` says for 2 processes is what they did
    from searchd.worker.chains import model_plan
    from searchd.worker.estimators import check_model
    m, allow = run.spec.model("svc"), ("test_share_prefit",)
    plan = model_plan(run.spec, m, check_model(run.spec, m, allow), allow, processes=2)
    assert plan["preprocess_fits"] == len(fits) and plan["preprocess_exact"]


def _assert_same_as_gridsearch(results: Any, log: Path) -> None:
    """Every split score equal to GridSearchCV(Pipeline(...))'s, to the bit."""
    template = Pipeline([("scale", CountingScaler(str(log))),
                         ("pca", PCA(svd_solver="randomized", random_state=0)),
                         ("model", SVC())])
    grid = {"scale__with_std": [True, False], "pca__n_components": [2, 3],
            "model__C": [0.5, 1.0, 2.0], "model__gamma": [0.01, 0.02]}
    X, y = load_iris(return_X_y=True)
    gs = GridSearchCV(template, grid, cv=results.splits).fit(X, y)
    theirs = {canonical({k.removeprefix("model__"): v for k, v in p.items()}): i
              for i, p in enumerate(gs.cv_results_["params"])}
    ours = results.models["svc"].cv_results_
    assert len(ours["params"]) == len(theirs) == 24
    for i, p in enumerate(ours["params"]):
        j = theirs[canonical(p)]
        for f in range(len(results.splits)):
            a, b = ours[f"split{f}_test_score"][i], gs.cv_results_[f"split{f}_test_score"][j]
            assert a == b, (p, f)


def test_runs_are_cut_to_keep_the_end_short() -> None:
    template = Pipeline([("scale", StandardScaler()), ("pca", PCA(4, random_state=0)),
                         ("model", SVC())])
    built = {i: {"model__C": float(i + 1)} for i in range(30)}
    pending = [(i, f) for i in range(30) for f in range(5)]
    units = runs(template, [[p] for p in pending], built, processes=2)
    # 5 folds x 30 candidates on 2 processes: runs of at most ceil(150 / 8) = 19, so
    # each fold's 30 in two runs of 15, in the place of each fold's first task
    assert [len(u) for u in units] == [15] * 10 and all(isinstance(u, Run) for u in units)
    assert [u[0][1] for u in units] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert sorted(p for u in units for p in u) == sorted(pending)
    # a random step is not shared: every task stays a unit of its own
    random = Pipeline([("pca", PCA(4)), ("model", SVC())])
    assert runs(random, [[p] for p in pending], built, 2) == [[p] for p in pending]
    # a chain stays as it is; one candidate alone in its (fold, key) stays plain
    mixed = runs(template, [[(0, 0), (1, 0)], [(2, 0)]], built, 2)
    assert mixed == [[(0, 0), (1, 0)], [(2, 0)]] and not any(isinstance(u, Run) for u in mixed)


def test_runs_share_their_preprocessing_on_a_dask_cluster(tmp_path: Path) -> None:
    import distributed

    from searchd.worker.chains import as_task
    from searchd.worker.dask_runner import DaskCluster
    from searchd.worker.evaluate import Outcome
    log = tmp_path / "scale-fits.log"
    X, y = load_iris(return_X_y=True)
    splits = [(np.asarray(a), np.asarray(b))
              for a, b in StratifiedKFold(3, shuffle=True, random_state=0).split(X, y)]
    template = Pipeline([("scale", CountingScaler(str(log))),
                         ("pca", PCA(svd_solver="randomized", random_state=0)),
                         ("model", SVC())])
    grid = {"pca__n_components": [2, 3], "model__C": [0.5, 1.0, 2.0]}
    params = [dict(p) for p in ParameterGrid(grid)]
    built = dict(enumerate(params))
    units = runs(template, [[(i, f)] for i in built for f in range(3)], built, processes=1)
    assert len(units) == 6 and all(isinstance(u, Run) for u in units)  # 2 sizes x 3 folds
    tasks = [as_task(u, built, None) for u in units]
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=":0") as lc:
        runner = DaskCluster(lc.scheduler_address, "j", X, y, splits, cache_mb=16)
        try:
            out: list[Outcome] = list(runner.stream(template, tasks, _Score(), count=18))
        finally:
            runner.close()
    assert len(log.read_text().splitlines()) == 6  # once per (fold, preprocessing)
    gs = GridSearchCV(template.set_params(scale__log=str(tmp_path / "gs.log")), grid,
                      cv=splits).fit(X, y)
    assert sorted((o.i, o.fold) for o in out) == [(i, f) for i in range(6) for f in range(3)]
    for o in out:
        assert params[o.i] == gs.cv_results_["params"][o.i]
        assert o.scores == {"score": gs.cv_results_[f"split{o.fold}_test_score"][o.i]}


class _Score:
    """A picklable scorer (a Dask cluster ships it)."""

    def __call__(self, est: Any, X: Any, y: Any) -> dict[str, float]:
        return {"score": est.score(X, y)}
