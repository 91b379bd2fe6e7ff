"""Job-file features end to end, each checked against GridSearchCV on the same splits."""

from __future__ import annotations

import json
import re

import pytest
from conftest import REPO, Env
from reference import assert_same_as_gridsearch

import searchd

FEATURES = """
[data]
source = "sklearn:make_classification"
params = { n_samples = 240, n_features = 8, n_informative = 4, random_state = 3 }
test_size = 0.25
seed = 1

[search]
cv = { folds = 3, shuffle = true, seed = 7 }
scoring = ["accuracy", "f1_macro"]
refit = "f1_macro"

[[preprocess]]
name = "scale"
estimator = "StandardScaler"

[models.bag]
estimator = "BaggingClassifier"
params = { random_state = 0, n_estimators = 5 }
grid = { estimator = [{ estimator = "DecisionTreeClassifier", params = { max_depth = 2 } },
                      { none = true }] }

[models.lr]
estimator = "LogisticRegression"
params = { max_iter = 300 }
grid = [ { C = { logspace = [-2, 1, 3] }, scale__with_mean = [true, false] },
         { C = [1.0], l1_ratio = [1.0] } ]

[models.tree]
estimator = "DecisionTreeClassifier"
params = { random_state = 0 }
grid = { max_depth = [1, 3, { none = true }], min_samples_leaf = { range = [1, 10, 4] } }
"""

FAILING = """
[data]
source = "sklearn:iris"

[search]
cv = 3

[models.svc]
estimator = "SVC"
grid = { C = [1.0, -1.0] }
"""


@pytest.mark.timeout(180)
def test_multimetric_lists_of_grids_estimator_params_and_none(env: Env) -> None:
    env.write_job("features.toml", FEATURES)
    run = env.cli("run", "--drain", timeout=150)
    assert run.returncode == 0, run.stderr[-3000:]
    res = searchd.load_results("features", env.state)
    fits = assert_same_as_gridsearch(res, env.state / "features" / "job.toml")
    assert fits == (2 + 7 + 9) * 3 * 2  # candidates × folds × scorers
    lr = res["lr"].cv_results_
    assert {"mean_test_accuracy", "mean_test_f1_macro", "rank_test_f1_macro"} <= set(lr)
    assert set(res["lr"].test_score_) == {"accuracy", "f1_macro"}
    assert res["bag"].best_estimator_ is not None


@pytest.mark.timeout(120)
def test_a_failing_candidate_is_recorded_like_error_score_nan(env: Env) -> None:
    env.write_job("failing.toml", FAILING)
    run = env.cli("run", "--drain", timeout=100)
    assert run.returncode == 0, run.stderr[-3000:]
    res = searchd.load_results("failing", env.state)
    assert assert_same_as_gridsearch(res, env.state / "failing" / "job.toml") == 6
    svc = res["svc"]
    assert len(svc.errors) == 3 and all("C" in e for e in svc.errors.values())
    assert svc.best_params_ == {"C": 1.0}
    show = json.loads(env.cli("show", "failing", "--json", check=True).stdout)
    assert show["models"]["svc"]["errors"] == 3
    assert show["models"]["svc"]["cv_results"]["mean_test_score"][1] is None  # NaN → null


def test_the_readme_job_example_is_valid(env: Env) -> None:
    readme = (REPO / "README.md").read_text()
    example = re.findall(r"```toml\n(.*?)```", readme, re.S)[0]
    path = env.write_job("readme.toml", example)
    out = env.cli("validate", str(path), "--json", check=True)
    plan = json.loads(out.stdout)
    assert [m["name"] for m in plan["models"]] == ["knn", "rf", "svc", "bag", "tuned"]
    assert plan["candidates"] == 83


ALL_FAIL = """
[data]
source = "sklearn:iris"
[search]
cv = 3
[models.svc]
estimator = "SVC"
grid = { C = [-1.0, -2.0] }
[models.knn]
estimator = "KNeighborsClassifier"
grid = { n_neighbors = [3] }
"""


@pytest.mark.slow  # test_a_failing_candidate_is_recorded_like_error_score_nan: one fails
@pytest.mark.timeout(120)
def test_a_model_type_whose_every_candidate_fails_ends_with_a_reason(env: Env) -> None:
    env.write_job("allfail.toml", ALL_FAIL)
    run = env.cli("run", "--drain", timeout=100)
    assert run.returncode == 0, run.stderr[-3000:]
    [rec] = json.loads(env.cli("status", "--json", check=True).stdout)
    assert rec["state"] == "done"
    show = json.loads(env.cli("show", "allfail", "--json", check=True).stdout)
    assert "refit of the best candidate failed" in show["models"]["svc"]["error"]
    assert show["models"]["knn"]["state"] == "done"
    out = env.cli("export", "allfail", "--model", "svc", "-o", str(env.root / "x.pkl"))
    assert out.returncode != 0 and "no fitted model" in out.stderr
    assert env.cli("export", "allfail", "-o", str(env.root / "best.pkl")).returncode == 0
