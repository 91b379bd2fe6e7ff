"""Warm-start chains through the worker's own code path: a job whose types chain finishes
with GridSearchCV's cv_results value by value; a job stopped mid-chain resumes at the
first missing link and redoes none in the checkpoint; chains in the pool's processes."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from reference import assert_same_as_gridsearch
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from test_random_search import job_run

from searchd.state.read import load_results
from searchd.worker import local_runner
from searchd.worker.chains import as_task
from searchd.worker.job import FITS_LOG, JobRun
from searchd.worker.local_runner import LocalRunner

pytestmark = pytest.mark.timeout(120)

JOB = """
[data]
source = "sklearn:iris"
[search]
cv = 3

[[preprocess]]
name = "scale"
estimator = "StandardScaler"

[models.rf]
estimator = "RandomForestClassifier"
params = { random_state = 0, max_depth = 4 }
grid = { n_estimators = { range = [2, 20, 3] }, max_features = [1, 2] }

[models.gb]
estimator = "GradientBoostingClassifier"
params = { random_state = 1, subsample = 0.8 }
grid = { n_estimators = [3, 1, 6], max_depth = [1, 2] }

[models.knn]
estimator = "KNeighborsClassifier"
grid = { n_neighbors = [1, 5, 9] }
"""


def test_a_chained_job_equals_gridsearch(tmp_path: Path, caplog: pytest.LogCaptureFixture
                                         ) -> None:
    caplog.set_level(logging.INFO, "searchd.worker")
    assert job_run(tmp_path, JOB).run() == 0
    results = load_results("j", tmp_path / "state")
    n = assert_same_as_gridsearch(results, tmp_path / "jobs" / "j.toml")
    assert n == (12 + 6 + 3) * 3
    said = [r.getMessage() for r in caplog.records if "warm-start chains" in r.getMessage()]
    assert said == ["j: rf: runs as warm-start chains: 36 fits as 6 chains growing "
                    "model__n_estimators",
                    "j: gb: runs as warm-start chains: 18 fits as 6 chains growing "
                    "model__n_estimators"]
    fits = (tmp_path / "state" / "j" / FITS_LOG).read_bytes()
    assert len(fits) == n  # each (candidate, fold) once


def test_a_stop_mid_chain_resumes_at_the_first_missing_link(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[int, int]] = []
    record = JobRun.record

    def dies_at_seven(self: JobRun, name: str, res: Any, o: Any) -> None:
        if name == "rf" and len(seen) == 4:  # fold 0's first chain of 6 is 4 links in
            raise RuntimeError("killed")
        seen.append((o.i, o.fold))
        record(self, name, res, o)

    monkeypatch.setattr(JobRun, "record", dies_at_seven)
    with pytest.raises(RuntimeError, match="killed"):
        job_run(tmp_path, JOB).run()
    monkeypatch.setattr(JobRun, "record", record)

    tasks: list[Any] = []
    stream = LocalRunner.stream

    def watch(self: LocalRunner, template: Any, ts: Any, *args: Any, **kw: Any) -> Any:
        def seen_tasks() -> Any:
            for t in ts:
                tasks.append(t)
                yield t
        return stream(self, template, seen_tasks(), *args, **kw)

    monkeypatch.setattr(LocalRunner, "stream", watch)
    run = job_run(tmp_path, JOB)
    assert run.run() == 0
    results = load_results("j", tmp_path / "state")
    n = assert_same_as_gridsearch(results, tmp_path / "jobs" / "j.toml")
    # the broken chain starts again at its 5th link (n_estimators 14), fitted afresh
    done = set(seen)
    broken = [t for t in tasks if t.fold == seen[0][1] and
              any((j, t.fold) not in done for j in [t.i, *(j for j, _, _ in t.links)])
              and t.grow and t.params.get("model__max_features") == 1]
    assert broken[0].params["model__n_estimators"] == 14 and len(broken[0].links) == 1
    # nothing in the checkpoint was fitted again: one fit logged per (candidate, fold)
    assert len((tmp_path / "state" / "j" / FITS_LOG).read_bytes()) == n


def test_chains_in_the_pools_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_runner, "POOL_WORTH_SECONDS", 0.0)
    X, y = load_iris(return_X_y=True)
    splits = list(StratifiedKFold(3, shuffle=True, random_state=0).split(X, y))
    template = RandomForestClassifier(random_state=0, max_depth=3)
    sizes = list(range(1, 16, 2))
    built = {i: {"n_estimators": k} for i, k in enumerate(sizes)}
    tasks = [as_task([(i, f) for i in range(len(sizes))], built, "n_estimators")
             for f in range(3)] * 4  # the same chains again: the pool gets some of them

    def scoring(est: Any, X: Any, y: Any) -> dict[str, float]:
        return {"score": est.score(X, y)}

    gs = GridSearchCV(template, {"n_estimators": sizes}, cv=splits).fit(X, y)
    runner = LocalRunner(2, X, y, splits)
    try:
        def slow_tasks() -> Any:
            yield from tasks[:2]  # the worker's own, while the pool starts ...
            assert runner.ready.wait(60), "the pool never started"
            yield from tasks[2:]  # ... and the rest by both

        out = list(runner.stream(template, slow_tasks(), scoring, count=12 * len(sizes)))
        assert runner.ready.is_set() and runner.start_error is None
    finally:
        runner.close()
    assert len(out) == 12 * len(sizes)
    for o in out:
        assert o.error is None
        assert o.scores == {"score": gs.cv_results_[f"split{o.fold}_test_score"][o.i]}
    assert len(np.unique([o.fit_time for o in out])) > 1


def test_validate_says_how_the_fits_run_as_chains(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from searchd.cli.main import main
    path = tmp_path / "seed.toml"
    path.write_text(JOB.replace('max_depth = [1, 2] }',
                                'max_depth = [1, 2], n_iter_no_change = [2, { none = true }] }'))
    config = tmp_path / "one.toml"
    config.write_text("n_jobs = 1\n")
    assert main(["validate", "--state", str(tmp_path / "state"), "--config", str(config),
                 str(path)]) == 0
    out = capsys.readouterr().out
    assert "36 fits as 6 chains" in out  # rf: 6 sizes × 2 max_features × 3 folds
    assert "36 fits (18 as 6 chains)" in out  # gb: early stopping's half is plain
    knn = [line for line in out.splitlines() if "KNeighborsClassifier" in line]
    assert knn and "chains" not in knn[0]
    # the scaler: once per fold for all 3 k-NN candidates (one process: no run is cut)
    assert knn[0].endswith("9 fits; preprocessing fitted 3 times (shared)")


SHARED = """
[data]
source = "sklearn:iris"
[search]
cv = 5
[[preprocess]]
name = "scale"
estimator = "StandardScaler"
[models.svc]
estimator = "SVC"
grid = { C = { logspace = [-2, 2, 30] } }
"""


@pytest.mark.parametrize(("backend", "n_jobs", "says"), [
    # the README's case: 30 candidates x 5 folds on 2 processes are 10 runs of 15
    ("local", 2, "150 fits; preprocessing fitted 10 times (shared)"),
    ("local", 1, "150 fits; preprocessing fitted 5 times (shared)"),
    # a cluster's threads are not known before it runs: the least, once per fold
    ("dask", 2, "150 fits; preprocessing fitted at least 5 times (shared)"),
])
def test_validate_counts_the_preprocessing_fits_of_the_runs_as_the_worker_cuts_them(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], backend: str, n_jobs: int,
        says: str) -> None:
    from searchd.cli.main import main
    if n_jobs > (os.cpu_count() or 1):
        pytest.skip(f"{n_jobs} processes need {n_jobs} cores")
    path = tmp_path / "shared.toml"
    path.write_text(SHARED.replace("cv = 5", f'cv = 5\nbackend = "{backend}"'))
    config = tmp_path / "config.toml"
    config.write_text(f"n_jobs = {n_jobs}\n" + (
        'dask_scheduler = "tcp://127.0.0.1:1"\n' if backend == "dask" else ""))
    assert main(["validate", "--state", str(tmp_path / "state"), "--config", str(config),
                 str(path)]) == 0
    [svc] = [line for line in capsys.readouterr().out.splitlines() if "SVC" in line]
    assert svc.endswith(says), svc


def test_the_default_n_jobs_cuts_runs_for_every_core(tmp_path: Path) -> None:
    """n_jobs = -1 (the default) is every core, for the runs' size as for the pool."""
    from test_random_search import job_settings

    from searchd.worker import taskplan
    from searchd.worker.events import Events
    from searchd.worker.runner import job_n_jobs
    settings = dataclasses.replace(job_settings(tmp_path, SHARED), n_jobs=-1)
    run = JobRun(tmp_path / "state" / "j", "j", settings, Events(None))
    assert job_n_jobs(run.spec, -1) == taskplan.slots(run) == (os.cpu_count() or 1)
    assert job_n_jobs(run.spec, 1) == 1


def test_chains_on_a_dask_cluster() -> None:
    import distributed

    from searchd.worker.dask_runner import DaskCluster
    X, y = load_iris(return_X_y=True)
    splits = [(np.asarray(a), np.asarray(b))
              for a, b in StratifiedKFold(3, shuffle=True, random_state=0).split(X, y)]
    template = RandomForestClassifier(random_state=0, max_depth=3)
    sizes = [1, 4, 6, 11]
    built = {i: {"n_estimators": k} for i, k in enumerate(sizes)}
    tasks = [as_task([(i, f) for i in range(len(sizes))], built, "n_estimators")
             for f in range(3)]
    scoring = _Score()
    gs = GridSearchCV(template, {"n_estimators": sizes}, cv=splits).fit(X, y)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=":0") as lc:
        runner = DaskCluster(lc.scheduler_address, "j", X, y, splits)
        try:
            out = list(runner.stream(template, tasks, scoring, count=12))
        finally:
            runner.close()
    assert sorted((o.i, o.fold) for o in out) == [(i, f) for i in range(4) for f in range(3)]
    for o in out:
        assert o.scores == {"score": gs.cv_results_[f"split{o.fold}_test_score"][o.i]}


class _Score:
    """A picklable scorer (a Dask cluster ships it)."""

    def __call__(self, est: Any, X: Any, y: Any) -> dict[str, float]:
        return {"score": est.score(X, y)}


def test_status_counts_each_link_as_a_result(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """In progress, ``status`` counts results: a chain's links one by one, out of the
    fits_total that validate states as "N fits as K chains"."""
    from searchd import protocol
    from searchd.cli.commands import status_json
    from searchd.jobs.load import load_job
    from searchd.state.records import JobRecord
    from searchd.supervisor.events import EventFold
    from searchd.supervisor.status import status_line
    from searchd.worker.chains import describe, model_plan
    from searchd.worker.estimators import check_model

    text = JOB.split("[models.gb]")[0]  # the rf type: 6 sizes x 2 max_features x 3 folds
    run = job_run(tmp_path, text)
    sent: list[protocol.Progress] = []
    monkeypatch.setattr(run.events, "send", lambda ev: sent.append(ev)
                        if isinstance(ev, protocol.Progress) else None)
    record = JobRun.record

    def reporting(self: JobRun, name: str, res: Any, o: Any) -> None:
        record(self, name, res, o)
        self.progress(running=name)  # a report after every result

    monkeypatch.setattr(JobRun, "record", reporting)
    assert run.run() == 0
    rec, fold, lines = JobRecord(id="j"), EventFold(), []
    done = []
    for ev in sent:
        fold.apply(rec, ev)
        if ev.running == "rf":
            done.append(rec.fits_done)
            lines.append(status_line(rec, [rec], None))
    assert done == list(range(37))  # one result at a time, each link one
    assert rec.fits_total == 36 and status_json(rec)["models"]["rf"]["fits_total"] == 36
    assert lines[5] == "running j: rf 5/36 fits"
    spec = load_job(tmp_path / "jobs" / "j.toml", 10**6)
    m = spec.model("rf")
    plan = model_plan(spec, m, check_model(spec, m, ()), ())
    assert describe(36, plan["chains"], plan["chained_fits"]) == " as 6 chains"
