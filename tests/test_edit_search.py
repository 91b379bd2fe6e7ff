"""Edited random and halving searches: results found by candidate, identical to
scikit-learn's search on the edited file (RandomizedSearchCV, HalvingGridSearchCV)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scipy.stats import loguniform
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.model_selection import HalvingGridSearchCV, ParameterSampler, RandomizedSearchCV
from test_edits import run
from test_halving import assert_same_halving
from test_random_search import assert_same, fit_reference, job_text

pytestmark = [pytest.mark.timeout(120)]

RANDOM_DISTRIBUTIONS = """
[models.svc]
estimator = "SVC"
search = "random"
n_iter = {n}
seed = 3
[models.svc.grid]
C = {{ loguniform = [0.01, 100.0] }}
kernel = ["rbf", "linear"]
"""


def test_random_search_with_distributions_draws_only_the_additional_candidates(
        tmp_path: Path) -> None:
    dists = {"C": loguniform(0.01, 100.0), "kernel": ["rbf", "linear"]}
    res, n, _ = run(tmp_path, job_text(RANDOM_DISTRIBUTIONS.format(n=6)))
    assert n == 6 * 3
    res, n, _ = run(tmp_path, job_text(RANDOM_DISTRIBUTIONS.format(n=10)))
    assert n == 4 * 3, "ParameterSampler's draws are prefix-stable with a distribution"
    wide = fit_reference(tmp_path, RandomizedSearchCV, "svc", res.splits, n_iter=10,
                         random_state=3, param_distributions=dists)
    assert assert_same(res["svc"], wide) == 10 * 3
    res, n, _ = run(tmp_path, job_text(RANDOM_DISTRIBUTIONS.format(n=4)))
    assert n == 0 and res["svc"].cv_results_["params"] == \
        [dict(p) for p in wide.cv_results_["params"][:4]]  # a prefix
    assert assert_same(res["svc"], fit_reference(
        tmp_path, RandomizedSearchCV, "svc", res.splits, n_iter=4, random_state=3,
        param_distributions=dists)) == 4 * 3


RANDOM_LISTS = """
[models.knn]
estimator = "KNeighborsClassifier"
search = "random"
n_iter = {n}
seed = 0
grid = {{ n_neighbors = {{ range = [1, 21] }} }}
"""


def test_random_search_over_lists_reuses_every_candidate_it_draws_again(
        tmp_path: Path) -> None:
    # lists are sampled without replacement by a method that depends on n_iter (and
    # n_iter >= the grid's size is the whole grid, in its order): 5 then 20 of 20 are no
    # prefix, yet every candidate drawn before is reused
    grid = {"n_neighbors": list(range(1, 21))}
    small = list(ParameterSampler(grid, 5, random_state=0))
    big = list(ParameterSampler(grid, 20, random_state=0))
    assert big[:5] != small and all(c in big for c in small)
    run(tmp_path, job_text(RANDOM_LISTS.format(n=5)))
    res, n, _ = run(tmp_path, job_text(RANDOM_LISTS.format(n=20)))
    assert n == 3 * (20 - 5)
    assert assert_same(res["knn"], fit_reference(
        tmp_path, RandomizedSearchCV, "knn", res.splits, n_iter=20, random_state=0,
        param_distributions=grid)) == 20 * 3


HALVING = """
[models.tree]
estimator = "DecisionTreeClassifier"
params = {{ random_state = 0 }}
search = "halving"
factor = 2
grid = {{ max_depth = {depths}, min_samples_leaf = [1, 4] }}
"""


def _rows(cv: dict) -> set[str]:
    return {json.dumps([p, int(r)], sort_keys=True)
            for p, r in zip(cv["params"], cv["n_resources"], strict=True)}


def test_halving_replans_from_the_rounds_it_has(tmp_path: Path) -> None:
    first, n, _ = run(tmp_path, job_text(HALVING.format(depths="[2, 4, 6, 8]"),
                                         source="digits"))
    res, n, _ = run(tmp_path, job_text(HALVING.format(depths="[2, 4, 6, 8, 10, 12]"),
                                       source="digits"))
    hs = fit_reference(tmp_path, HalvingGridSearchCV, "tree", res.splits, factor=2,
                       random_state=0, param_grid={"max_depth": [2, 4, 6, 8, 10, 12],
                                                   "min_samples_leaf": [1, 4]})
    assert assert_same_halving(res["tree"], hs) == sum(hs.n_candidates_) * 3
    # a (candidate, resources) row computed in the first search is never computed again
    old, new = _rows(first["tree"].cv_results_), _rows(res["tree"].cv_results_)
    assert old & new, "the edit should share rows with the first search"
    assert n == 3 * len(new - old)
