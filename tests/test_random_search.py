"""search = "random": the same candidates, split scores and best as RandomizedSearchCV with
random_state = seed, drawn once and kept in the checkpoint (a resume never draws again, a
kill -9 loses little); distributions and their errors in job files."""

from __future__ import annotations

import json
import math
import os
import signal
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.stats
from conftest import Env, fits_logged
from scipy.stats import loguniform, randint, uniform
from sklearn.model_selection import RandomizedSearchCV

from searchd.errors import JobSpecError
from searchd.jobs import distributions
from searchd.jobs.load import parse_job
from searchd.settings import Settings
from searchd.state.read import JobResults, ModelSearch, load_results
from searchd.state.signing import load_key
from searchd.worker.data import load_dataset
from searchd.worker.estimators import build_template
from searchd.worker.events import Events
from searchd.worker.job import JobRun

DATA = """
[data]
source = "sklearn:{source}"

[search]
cv = {cv}
"""


def job_text(models: str, source: str = "iris", cv: int | str = 3, search: str = "") -> str:
    return DATA.format(source=source, cv=cv) + search + models


def job_settings(tmp: Path, text: str, job: str = "j", **settings: Any) -> Settings:
    """A private state folder with ``text`` accepted as job ``job``, and its settings."""
    state, jobs = tmp / "state", tmp / "jobs"
    for d in (state, jobs):
        d.mkdir(exist_ok=True)
    load_key(state, create=True)
    (state / job).mkdir(exist_ok=True)
    (state / job / "job.toml").write_text(text)
    (jobs / f"{job}.toml").write_text(text)
    return Settings(state_dir=state, jobs_dir=jobs, n_jobs=1, **settings)


def job_run(tmp: Path, text: str, job: str = "j", **settings: Any) -> JobRun:
    """A JobRun in this process (one process fits: no pool; or a Dask cluster's)."""
    return JobRun(tmp / "state" / job, job, job_settings(tmp, text, job, **settings),
                  Events(None))


def run_in_process(tmp: Path, text: str, job: str = "j") -> JobResults:
    assert job_run(tmp, text, job).run() == 0
    return load_results(job, tmp / "state")


def fit_reference(tmp: Path, search_cls: Any, model: str, splits: list[Any],
                  **kwargs: Any) -> Any:
    """``search_cls`` on the job's template, data and splits (the job file in tmp/jobs)."""
    spec = parse_job((tmp / "jobs" / "j.toml").read_bytes(), tmp / "jobs" / "j.toml", 10**6)
    data = load_dataset(spec, True)
    template = build_template(spec, spec.model(model), ())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return search_cls(template, cv=splits, **kwargs).fit(data.X_train, data.y_train)


def assert_same(ours: ModelSearch, theirs: Any, extra: tuple[str, ...] = ()) -> int:
    """Same candidates in the same order, every split score, mean and rank equal, value by
    value; the same best. Returns how many split scores were compared."""
    a, b = ours.cv_results_, theirs.cv_results_
    assert a["params"] == [dict(p) for p in b["params"]]
    suffixes = sorted(k[len("mean_test_"):] for k in b if k.startswith("mean_test_"))
    n = 0
    for s in suffixes:
        k = 0
        while f"split{k}_test_{s}" in b:
            assert np.array_equal(a[f"split{k}_test_{s}"], b[f"split{k}_test_{s}"],
                                  equal_nan=True), f"split{k}_test_{s}"
            n += len(a["params"])
            k += 1
        for col in (f"mean_test_{s}", f"std_test_{s}", f"rank_test_{s}"):
            assert np.array_equal(a[col], b[col], equal_nan=True), col
    for col in extra:
        assert np.array_equal(a[col], b[col]), col
    assert ours.best_index_ == theirs.best_index_
    assert ours.best_params_ == theirs.best_params_
    assert ours.best_score_ == theirs.best_score_
    return n


# --- identical to RandomizedSearchCV ------------------------------------------------------------

def test_distributions_and_lists_equal_randomized_search(tmp_path: Path) -> None:
    text = job_text("""
[models.svc]
estimator = "SVC"
search = "random"
n_iter = 15
seed = 3
[models.svc.grid]
C = { loguniform = [0.01, 100.0] }
gamma = { loguniform = [1e-3, 1.0] }
kernel = ["rbf", "linear"]
""")
    res = run_in_process(tmp_path, text)
    rs = fit_reference(tmp_path, RandomizedSearchCV, "svc", res.splits, n_iter=15,
                       random_state=3, param_distributions={
                           "C": loguniform(0.01, 100.0), "gamma": loguniform(1e-3, 1.0),
                           "kernel": ["rbf", "linear"]})
    assert assert_same(res["svc"], rs) == 15 * 3
    assert res["svc"].best_estimator_.get_params()["C"] == rs.best_params_["C"]


def test_lists_sampled_without_replacement_two_scorers_and_a_grid_list(tmp_path: Path) -> None:
    # every value a list: ParameterSampler samples the grid without replacement; a list of
    # grids; two scorers (refit names one); uniform and randint drawn with replacement
    text = job_text("""
[models.knn]
estimator = "KNeighborsClassifier"
search = "random"
n_iter = 7
seed = 11
grid = [{ n_neighbors = { range = [1, 30, 2] }, weights = ["uniform", "distance"] },
        { n_neighbors = [3, 5], p = [1, 2] }]

[models.tree]
estimator = "DecisionTreeClassifier"
params = { random_state = 0 }
search = "random"
n_iter = 12
seed = 5
grid = { max_depth = { randint = [2, 6] }, min_weight_fraction_leaf = { uniform = [0.0, 0.2] } }
""", cv="{ folds = 4, shuffle = true, seed = 2 }",
        search='scoring = ["accuracy", "f1_macro"]\nrefit = "f1_macro"\n')
    res = run_in_process(tmp_path, text)
    knn = fit_reference(tmp_path, RandomizedSearchCV, "knn", res.splits, n_iter=7,
                        random_state=11, scoring=["accuracy", "f1_macro"], refit="f1_macro",
                        param_distributions=[
                            {"n_neighbors": list(range(1, 30, 2)),
                             "weights": ["uniform", "distance"]},
                            {"n_neighbors": [3, 5], "p": [1, 2]}])
    assert assert_same(res["knn"], knn) == 7 * 4 * 2
    tree = fit_reference(tmp_path, RandomizedSearchCV, "tree", res.splits, n_iter=12,
                         random_state=5, scoring=["accuracy", "f1_macro"], refit="f1_macro",
                         param_distributions={"max_depth": randint(2, 6),
                                              "min_weight_fraction_leaf": uniform(0.0, 0.2)})
    assert assert_same(res["tree"], tree) == 12 * 4 * 2
    # randint(2, 6) over 12 draws repeats values: every draw is its own row, as in sklearn
    assert len(res["tree"].cv_results_["params"]) == 12


def test_n_iter_is_capped_at_the_grid_size_with_a_warning(tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture
                                                          ) -> None:
    text = job_text("""
[models.lr]
estimator = "LogisticRegression"
params = { max_iter = 500 }
search = "random"
n_iter = 50
grid = { C = [0.1, 1.0, 10.0] }
""")
    spec = parse_job(text.encode(), Path("jobs/x.toml"), 10**6)
    assert spec.models[0].n_candidates == 3 and spec.fits_total == 9
    res = run_in_process(tmp_path, text)
    assert "smaller than n_iter=50" in caplog.text
    rs = fit_reference(tmp_path, RandomizedSearchCV, "lr", res.splits, n_iter=50,
                       random_state=0, param_distributions={"C": [0.1, 1.0, 10.0]})
    assert assert_same(res["lr"], rs) == 9


# --- drawn once ---------------------------------------------------------------------------------

def test_a_resume_takes_the_draw_from_the_checkpoint_and_never_samples_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = job_text("""
[models.svc]
estimator = "SVC"
search = "random"
n_iter = 6
seed = 1
grid = { C = { loguniform = [0.1, 10.0] } }
""")
    first = job_run(tmp_path, text)
    first.prepare()
    first.flush()  # the draw is in the checkpoint before any fit
    drawn = [dict(p) for p in first.models["svc"].params]

    def no_sampling(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("sampled again on a resume")

    monkeypatch.setattr("searchd.worker.strategy.ParameterSampler", no_sampling)
    res = run_in_process(tmp_path, text)
    assert res["svc"].cv_results_["params"] == drawn
    monkeypatch.undo()
    rs = fit_reference(tmp_path, RandomizedSearchCV, "svc", res.splits, n_iter=6,
                       random_state=1, param_distributions={"C": loguniform(0.1, 10.0)})
    assert assert_same(res["svc"], rs) == 18


# --- job files ----------------------------------------------------------------------------------

def _error(models: str, search: str = "") -> str:
    with pytest.raises(JobSpecError) as e:
        parse_job(job_text(models, search=search).encode(), Path("jobs/x.toml"), 10**6)
    return str(e.value)


def test_job_file_errors_name_the_file_the_key_and_the_value() -> None:
    assert _error('[models.a]\nestimator = "SVC"\nsearch = "bayes"\n') == \
        'jobs/x.toml: models.a.search: expected "grid", "random" or "halving", got \'bayes\''
    assert _error('[models.a]\nestimator = "SVC"\nn_iter = 5\n') == \
        'jobs/x.toml: models.a.n_iter: is for search = "random", not "grid"'
    assert _error('[models.a]\nestimator = "SVC"\nsearch = "random"\nfactor = 2\n') == \
        'jobs/x.toml: models.a.factor: is for search = "halving", not "random"'
    assert _error('[models.a]\nestimator = "SVC"\ngrid = { C = { loguniform = [1, 2] } }\n') \
        == ('jobs/x.toml: models.a.grid.C: a distribution ({loguniform = [1, 2]}) needs '
            'search = "random" or "halving"')
    assert _error('[models.a]\nestimator = "SVC"\nsearch = "random"\n'
                  'grid = { C = { eval = ["1"] } }\n').startswith(
        "jobs/x.toml: models.a.grid.C: 'eval' is not a scipy.stats distribution")
    assert _error('[models.a]\nestimator = "SVC"\nsearch = "random"\n'
                  'grid = { C = { uniform = ["a"] } }\n') == \
        ("jobs/x.toml: models.a.grid.C: uniform: expected a list of numbers (scipy's "
         "positional arguments), got ['a']")
    assert _error('[models.a]\nestimator = "SVC"\nsearch = "random"\nn_iter = 0\n') == \
        "jobs/x.toml: models.a.n_iter: expected at least 1, got 0"
    assert _error('[models.a]\nestimator = "SVC"\nsearch = "random"\nseed = -1\n') == \
        "jobs/x.toml: models.a.seed: expected a seed from 0 to 4294967295, got -1"


def test_value_helpers_work_in_a_random_search() -> None:
    spec = parse_job(job_text("""
[models.a]
estimator = "SVC"
search = "random"
n_iter = 4
grid = { C = { logspace = [-2, 2, 5] }, gamma = { expon = [0, 0.1] }, degree = { range = [1, 4] } }
""").encode(), Path("jobs/x.toml"), 10**6)
    [m] = spec.models
    assert m.search.kind == "random" and m.n_candidates == 4
    assert m.grid[0]["C"] == [0.01, 0.1, 1.0, 10.0, 100.0] and m.grid[0]["degree"] == [1, 2, 3]
    assert m.grid[0]["gamma"] == distributions.Distribution("expon", (0, 0.1))


def test_the_allow_list_is_scipys_public_univariate_distributions() -> None:
    public = {n for n in scipy.stats.__all__
              if isinstance(getattr(scipy.stats, n, None),
                            (scipy.stats.rv_continuous, scipy.stats.rv_discrete))}
    assert distributions.NAMES == public


# --- kill -9 in the middle of a random search ---------------------------------------------------

KILL_JOB = """
[data]
source = "sklearn:digits"

[search]
cv = 3

[models.svc]
estimator = "SVC"
search = "random"
n_iter = 24
seed = 4
grid = { C = { loguniform = [0.1, 100.0] }, gamma = { loguniform = [1e-4, 1e-2] } }
"""


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_kill_9_mid_random_search_then_resume(env: Env) -> None:
    env.write_job("rnd.toml", KILL_JOB)
    daemon = env.start("--checkpoint-interval", "0.5", "--n-jobs", "2")
    env.wait_for(lambda: fits_logged(env, "rnd") > 0, 60, "the first fit")
    first = time.monotonic()
    env.wait_for(lambda: env.summary("rnd").get("models", {}).get("svc", {})
                 .get("fits_done", 0) >= 18, 60, "18 fits")
    at_kill = fits_logged(env, "rnd")
    rate = at_kill / (time.monotonic() - first)
    assert at_kill < 72, "the search finished before it could be killed"
    os.killpg(daemon.pid, signal.SIGKILL)
    daemon.wait(timeout=10)
    env.wait_for(lambda: not env.leftovers(), 10, "the dead daemon's workers to exit")

    restart = env.cli("run", "--drain", "--checkpoint-interval", "0.5", "--n-jobs", "2",
                      timeout=100)
    assert restart.returncode == 0, restart.stderr[-3000:]
    assert "resumed" in restart.stderr
    [rec] = json.loads(env.cli("status", "--json", check=True).stdout)
    assert rec["state"] == "done" and rec["fits_done"] == rec["fits_total"] == 72
    wasted = rec["fits_computed"] - rec["fits_total"]
    assert 0 <= wasted <= 2 + math.ceil(rate * 0.7), (wasted, rate)

    res = load_results("rnd", env.state)
    spec = parse_job(KILL_JOB.encode(), env.jobs / "rnd.toml", 10**6)
    data = load_dataset(spec, True)
    rs = RandomizedSearchCV(build_template(spec, spec.models[0], ()), {
        "C": loguniform(0.1, 100.0), "gamma": loguniform(1e-4, 1e-2)}, n_iter=24,
        random_state=4, cv=res.splits, n_jobs=2).fit(data.X_train, data.y_train)
    assert assert_same(res["svc"], rs) == 72
    shown = json.loads(env.cli("show", "rnd", "--json", check=True).stdout)
    assert shown["models"]["svc"]["cv_results"]["params"] == res["svc"].cv_results_["params"]
