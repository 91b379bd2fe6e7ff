"""search = "halving": the same rounds, candidates, per-round resources, split scores and
best as HalvingGridSearchCV / HalvingRandomSearchCV with random_state = seed, on n_samples
and on a parameter; one row per (candidate, round); kill -9 in round 2 resumes in round 2."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import Env, fits_logged
from scipy.stats import loguniform, randint
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.model_selection import (
    HalvingGridSearchCV,
    HalvingRandomSearchCV,
    RandomizedSearchCV,
)
from test_random_search import (
    _error,
    assert_same,
    fit_reference,
    job_run,
    job_text,
    run_in_process,
)

from searchd.errors import SearchdError
from searchd.jobs.load import parse_job
from searchd.state.read import ModelSearch, load_results
from searchd.worker.data import load_dataset
from searchd.worker.estimators import build_template

HALVING = ("iter", "n_resources")


def assert_same_halving(ours: ModelSearch, theirs: Any) -> int:
    n = assert_same(ours, theirs, extra=HALVING)
    assert ours.n_candidates_ == theirs.n_candidates_
    assert ours.n_resources_ == theirs.n_resources_
    assert ours.n_iterations_ == theirs.n_iterations_
    assert ours.halving is not None
    for k in ("n_required_iterations_", "n_possible_iterations_", "min_resources_",
              "max_resources_"):
        assert ours.halving[k] == getattr(theirs, k), k
    return n


@pytest.mark.slow  # the quick tier compares halving with scikit-learn's on a Dask cluster
def test_halving_grid_on_n_samples(tmp_path: Path) -> None:
    text = job_text("""
[models.tree]
estimator = "DecisionTreeClassifier"
params = { random_state = 0 }
search = "halving"
factor = 2
grid = { max_depth = [2, 4, 6, 8, 10, { none = true }], min_samples_leaf = [1, 2, 4, 8] }
""", source="digits")
    res = run_in_process(tmp_path, text)
    hs = fit_reference(tmp_path, HalvingGridSearchCV, "tree", res.splits, factor=2,
                       random_state=0, param_grid={"max_depth": [2, 4, 6, 8, 10, None],
                                                   "min_samples_leaf": [1, 2, 4, 8]})
    assert hs.n_resources_ == [112, 224, 448, 896, 1792]
    assert assert_same_halving(res["tree"], hs) == sum(hs.n_candidates_) * 3
    cv = res["tree"].cv_results_
    assert len(cv["params"]) == 47 and list(cv["iter"][:25]) == [0] * 24 + [1]
    # the best comes from the last round, refitted on every sample
    assert cv["iter"][res["tree"].best_index_] == 4
    assert res["tree"].best_estimator_.get_params()["max_depth"] == hs.best_params_["max_depth"]


@pytest.mark.slow  # the quick tier has halving on n_samples and on a Dask cluster
def test_halving_grid_on_a_parameter_with_aggressive_elimination(tmp_path: Path) -> None:
    # min 10, max 30, factor 3: two rounds possible, three needed: aggressive elimination
    # runs rounds 0 and 1 on 10 trees (the same parameters, two rows) and round 2 on 30
    text = job_text("""
[models.rf]
estimator = "RandomForestClassifier"
params = { random_state = 0 }
search = "halving"
resource = "n_estimators"
min_resources = 10
max_resources = 30
aggressive_elimination = true
grid = { max_depth = [1, 2, 3, { none = true }], criterion = ["gini", "entropy", "log_loss"] }
""", source="wine", cv=4)
    res = run_in_process(tmp_path, text)
    hs = fit_reference(tmp_path, HalvingGridSearchCV, "rf", res.splits, random_state=0,
                       resource="n_estimators", min_resources=10, max_resources=30,
                       aggressive_elimination=True,
                       param_grid={"max_depth": [1, 2, 3, None],
                                   "criterion": ["gini", "entropy", "log_loss"]})
    assert hs.n_resources_ == [10, 10, 30] and hs.n_candidates_ == [12, 4, 2]
    assert assert_same_halving(res["rf"], hs) == 18 * 4
    # the resource is inside params, as scikit-learn puts it, and in the refitted model
    assert res["rf"].cv_results_["params"][0]["n_estimators"] == 10
    assert res["rf"].best_params_["n_estimators"] == 30
    assert res["rf"].best_estimator_.n_estimators == 30


@pytest.mark.slow  # the quick tier has halving on n_samples and on a Dask cluster
def test_halving_random_on_a_parameter(tmp_path: Path) -> None:
    text = job_text("""
[models.rf]
estimator = "RandomForestClassifier"
params = { random_state = 0 }
search = "halving"
resource = "n_estimators"
factor = 2.5
min_resources = 4
max_resources = 40
n_candidates = 10
seed = 7
grid = { max_depth = { randint = [2, 12] }, max_features = ["sqrt", "log2"] }
""", source="wine")
    res = run_in_process(tmp_path, text)
    hs = fit_reference(tmp_path, HalvingRandomSearchCV, "rf", res.splits, factor=2.5,
                       resource="n_estimators", min_resources=4, max_resources=40,
                       n_candidates=10, random_state=7,
                       param_distributions={"max_depth": randint(2, 12),
                                            "max_features": ["sqrt", "log2"]})
    assert assert_same_halving(res["rf"], hs) == sum(hs.n_candidates_) * 3


@pytest.mark.slow
def test_halving_random_on_n_samples_exhausting_the_candidates(tmp_path: Path) -> None:
    # n_candidates = "exhaust": max_resources_ // min_resources_ candidates ("smallest":
    # 2 × folds × classes samples), subsampled train and test folds per round
    text = job_text("""
[models.svc]
estimator = "SVC"
search = "halving"
n_candidates = "exhaust"
seed = 3
grid = { C = { loguniform = [0.1, 100.0] }, gamma = { loguniform = [1e-4, 1e-2] } }
""", source="digits", cv="{ folds = 3, shuffle = true, seed = 1 }")
    res = run_in_process(tmp_path, text)
    hs = fit_reference(tmp_path, HalvingRandomSearchCV, "svc", res.splits, random_state=3,
                       param_distributions={"C": loguniform(0.1, 100.0),
                                            "gamma": loguniform(1e-4, 1e-2)})
    assert hs.min_resources_ == 60 and hs.n_candidates_[0] == 1797 // 60
    assert assert_same_halving(res["svc"], hs) == sum(hs.n_candidates_) * 3


def test_halving_job_file_errors() -> None:
    two = 'scoring = ["accuracy", "f1_macro"]\nrefit = "accuracy"\n'
    assert _error('[models.a]\nestimator = "SVC"\nsearch = "halving"\n', search=two) == (
        "jobs/x.toml: models.a.search: halving ranks candidates by one scorer; "
        "search.scoring lists several (scikit-learn's halving searches refuse multi-metric "
        "scoring too)")
    assert _error('[models.a]\nestimator = "SVC"\nsearch = "halving"\nresource = "C"\n') == (
        'jobs/x.toml: models.a.max_resources: resource = \'C\' needs an integer '
        'max_resources ("auto" is the number of samples)')
    assert _error('[models.a]\nestimator = "SVC"\nsearch = "halving"\nresource = "C"\n'
                  'max_resources = 9\ngrid = { C = [1, 2] }\n') == (
        "jobs/x.toml: models.a.resource: 'C' is searched by the grid; the resource must be "
        "another parameter")
    assert _error('[models.a]\nestimator = "SVC"\nsearch = "halving"\nfactor = 1\n') == \
        "jobs/x.toml: models.a.factor: expected a number above 1, got 1"
    assert _error('[models.a]\nestimator = "SVC"\nsearch = "halving"\n'
                  'min_resources = "exhaust"\nn_candidates = "exhaust"\n') == (
        'jobs/x.toml: models.a.n_candidates: n_candidates and min_resources cannot both '
        'be "exhaust"')
    assert _error('[models.a]\nestimator = "SVC"\nsearch = "halving"\n'
                  'min_resources = 50\nmax_resources = 10\n') == \
        "jobs/x.toml: models.a.min_resources: 50 is more than max_resources (10)"


# --- kill -9 in round 2 -------------------------------------------------------------------------

KILL_JOB = """
[data]
source = "sklearn:digits"

[search]
cv = 3

[models.rf]
estimator = "RandomForestClassifier"
params = { random_state = 0 }
search = "halving"
resource = "n_estimators"
min_resources = 10
max_resources = 90
[models.rf.grid]
max_depth = [6, 10, { none = true }]
max_features = ["sqrt", "log2", 0.3]
min_samples_leaf = [1, 2, 4]
"""


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_kill_9_in_round_2_resumes_in_round_2(env: Env) -> None:
    env.write_job("hv.toml", KILL_JOB)
    val = env.cli("validate", str(env.jobs / "hv.toml"), check=True).stdout
    assert "round 2/3: 9 candidates × 30 n_estimators, 27 fits" in val
    assert "total: 27 candidates, 117 fits" in val
    daemon = env.start("--checkpoint-interval", "0.2", "--n-jobs", "2")

    def in_round_2() -> bool:  # the checkpoint holds round 2 fits, and round 2 is not over
        if not 81 < fits_logged(env, "hv") < 81 + 27:  # (fits.log: the summary lags behind)
            return False
        try:
            return load_results("hv", env.state, with_estimators=False)["rf"].fits_done > 81
        except (SearchdError, KeyError):  # no checkpoint of rf yet
            return False

    env.wait_for(in_round_2, 90, "round 2 to be under way")
    os.killpg(daemon.pid, signal.SIGKILL)  # at once: round 2's 27 fits take a second or two
    daemon.wait(timeout=10)
    assert fits_logged(env, "hv") < 81 + 27, "round 2 ended before the kill"
    status = env.cli("status", check=True).stdout  # as the dead daemon last wrote it (its
    assert re.search(r"round [12]/3, (27|9) candidates", status), status  # summary lags ~1 s)
    env.wait_for(lambda: not env.leftovers(), 10, "the dead daemon's workers to exit")
    saved = load_results("hv", env.state, with_estimators=False)["rf"]
    assert max(saved.cv_results_["iter"]) == 1  # the checkpoint holds part of round 2
    assert 81 < saved.fits_done < 81 + 27

    restart = env.cli("run", "--drain", "--checkpoint-interval", "0.5", "--n-jobs", "2",
                      timeout=120)
    assert restart.returncode == 0, restart.stderr[-3000:]
    [rec] = json.loads(env.cli("status", "--json", check=True).stdout)
    assert rec["state"] == "done" and rec["fits_done"] == rec["fits_total"] == 117
    assert 0 <= rec["fits_computed"] - rec["fits_total"] <= 8  # round 1 is never redone

    res = load_results("hv", env.state)
    spec = parse_job(KILL_JOB.encode(), env.jobs / "hv.toml", 10**6)
    data = load_dataset(spec, True)
    hs = HalvingGridSearchCV(build_template(spec, spec.models[0], ()), {
        "max_depth": [6, 10, None], "max_features": ["sqrt", "log2", 0.3],
        "min_samples_leaf": [1, 2, 4]}, resource="n_estimators", min_resources=10,
        max_resources=90, random_state=0, cv=res.splits, n_jobs=2,
    ).fit(data.X_train, data.y_train)
    assert assert_same_halving(res["rf"], hs) == 39 * 3
    shown = json.loads(env.cli("show", "hv", "--json", check=True).stdout)
    cv = shown["models"]["rf"]["cv_results"]
    assert cv["iter"] == [0] * 27 + [1] * 9 + [2] * 3
    assert cv["n_resources"] == [10] * 27 + [30] * 9 + [90] * 3
    assert [p["n_estimators"] for p in cv["params"]] == cv["n_resources"]
    assert np.array_equal(cv["mean_test_score"], hs.cv_results_["mean_test_score"])


# --- on a Dask cluster --------------------------------------------------------------------------

@pytest.mark.timeout(180)
def test_halving_and_random_on_a_dask_cluster(tmp_path: Path) -> None:
    """A halving round's subsampled folds travel with its tasks; a random search's draw is
    the worker's: both give scikit-learn's results on the cluster too."""
    import distributed

    text = job_text("""
[models.tree]
estimator = "DecisionTreeClassifier"
params = { random_state = 0 }
search = "halving"
factor = 3
grid = { max_depth = [2, 4, 8, { none = true }], min_samples_leaf = [1, 4] }

[models.knn]
estimator = "KNeighborsClassifier"
search = "random"
n_iter = 5
seed = 2
grid = { n_neighbors = { randint = [1, 20] }, weights = ["uniform", "distance"] }
""", source="digits", search='backend = "dask"\n')
    # one worker process (tasks travel serialised, as to another machine) with two threads
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=True,
                                  dashboard_address=None) as lc:
        run = job_run(tmp_path, text, dask_scheduler=lc.scheduler_address)
        assert run.run() == 0
        assert run.runner is not None and run.runner.backend == "dask"
    res = load_results("j", tmp_path / "state")
    hs = fit_reference(tmp_path, HalvingGridSearchCV, "tree", res.splits, random_state=0,
                       param_grid={"max_depth": [2, 4, 8, None], "min_samples_leaf": [1, 4]})
    assert assert_same_halving(res["tree"], hs) == sum(hs.n_candidates_) * 3
    rs = fit_reference(tmp_path, RandomizedSearchCV, "knn", res.splits, n_iter=5,
                       random_state=2, param_distributions={
                           "n_neighbors": randint(1, 20), "weights": ["uniform", "distance"]})
    assert assert_same(res["knn"], rs) == 15
