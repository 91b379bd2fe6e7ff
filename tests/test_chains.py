"""Warm-start chains: every row of the table grows to the same scores as GridSearchCV's fresh
fits, to the last bit, on the same splits; what the table does not prove takes the plain
path."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.base import is_classifier
from sklearn.datasets import load_diabetes, load_digits
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from threadpoolctl import threadpool_limits

from searchd.worker import chains
from searchd.worker.chains import evaluate_chain, growable, link_ok, plan, table
from searchd.worker.prefit import make_cache

pytestmark = pytest.mark.timeout(120)

#: parameters that make each row's randomness and growth matter (subsampling, features)
EXTRA: dict[str, dict[str, Any]] = {
    "RandomForestClassifier": {"max_depth": 6},
    "RandomForestRegressor": {"max_depth": 6, "max_features": 0.5},
    "ExtraTreesClassifier": {"max_depth": 6},
    "ExtraTreesRegressor": {"max_depth": 6, "max_features": 0.5},
    "BaggingClassifier": {"max_samples": 0.6, "max_features": 0.7, "bootstrap_features": True},
    "BaggingRegressor": {"max_samples": 0.6, "max_features": 0.7},
    "GradientBoostingClassifier": {"subsample": 0.7, "max_features": 0.5, "max_depth": 2},
    "GradientBoostingRegressor": {"subsample": 0.7, "max_features": 0.5, "max_depth": 2},
    "HistGradientBoostingClassifier": {"early_stopping": False, "max_features": 0.5,
                                       "max_leaf_nodes": 8},
    "HistGradientBoostingRegressor": {"early_stopping": False, "max_features": 0.5,
                                      "max_leaf_nodes": 8},
}
SIZES = [2, 3, 5, 8]


def _data(classifier: bool) -> tuple[np.ndarray, np.ndarray, list[Any]]:
    if classifier:
        X, y = load_digits(return_X_y=True)
        X, y = X[:300], y[:300]
        cv: Any = StratifiedKFold(3, shuffle=True, random_state=0)
    else:
        X, y = load_diabetes(return_X_y=True)
        cv = KFold(3, shuffle=True, random_state=0)
    return X, y, [(np.asarray(a), np.asarray(b)) for a, b in cv.split(X, y)]


def _scoring(est: Any, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
    return {"score": est.score(X, y)}


def _chained(template: Any, key: str, sizes: list[int], X: np.ndarray, y: np.ndarray,
             splits: list[Any], cache: Any = None) -> np.ndarray:
    """(size, fold) scores, each fold one chain."""
    out = np.full((len(sizes), len(splits)), np.nan)
    for f, (tr, te) in enumerate(splits):
        links = [(i, {key: k}, "") for i, k in enumerate(sizes)]
        for o in evaluate_chain(template, key, links, X, y, tr, te, _scoring, f, cache=cache):
            assert o.error is None, o.error
            out[o.i, o.fold] = o.scores["score"]  # type: ignore[index]
    return out


def _fresh(template: Any, key: str, sizes: list[int], X: np.ndarray, y: np.ndarray,
           splits: list[Any]) -> np.ndarray:
    gs = GridSearchCV(template, {key: sizes}, cv=splits, refit=False).fit(X, y)
    assert [p[key] for p in gs.cv_results_["params"]] == sizes
    return np.column_stack([gs.cv_results_[f"split{f}_test_score"] for f in range(len(splits))])


@pytest.mark.parametrize("row", table(), ids=lambda r: r.estimator.__name__)
def test_each_row_grows_to_gridsearchs_scores(row: chains.Row) -> None:
    extra = EXTRA[row.estimator.__name__]
    if row.estimator.__name__.startswith("Bagging"):
        base = DecisionTreeClassifier if is_classifier(row.estimator()) else DecisionTreeRegressor
        extra = {**extra, "estimator": base(max_depth=4)}
    template = row.estimator(random_state=0, **extra)
    assert growable(template) == row.param
    assert link_ok(template, row.param, {row.param: 3})
    X, y, splits = _data(is_classifier(template))
    with threadpool_limits(1):  # HistGradientBoosting's OpenMP threads fight on 2 shared cores
        ours = _chained(template, row.param, SIZES, X, y, splits)
        theirs = _fresh(template, row.param, SIZES, X, y, splits)
    assert np.array_equal(ours, theirs), (ours, theirs)
    assert len(np.unique(ours)) > len(splits)  # the sizes' scores differ: a real test


def test_a_chain_inside_a_pipeline_grows_the_model_step() -> None:
    row = table()[0]
    template = Pipeline([("scale", StandardScaler()),
                         ("model", row.estimator(random_state=0, max_depth=6))])
    key = growable(template)
    assert key == "model__n_estimators"
    X, y, splits = _data(True)
    fresh = _fresh(template, key, SIZES, X, y, splits)
    assert np.array_equal(_chained(template, key, SIZES, X, y, splits), fresh)
    # with shared preprocessing: the scaler fitted once per fold, the forest still grows
    cache = make_cache(16)
    assert cache is not None
    assert np.array_equal(_chained(template, key, SIZES, X, y, splits, cache), fresh)
    assert (cache.misses, cache.hits) == (3, 3 * (len(SIZES) - 1))


class _FailsAtThree(RandomForestClassifier):
    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> Any:
        if self.n_estimators == 3:
            raise ValueError("three")
        return super().fit(X, y, sample_weight)


def test_a_failed_link_is_nan_and_the_next_starts_afresh() -> None:
    template = _FailsAtThree(random_state=0, max_depth=6)
    X, y, splits = _data(True)
    tr, te = splits[0]
    links = [(i, {"n_estimators": k}, "") for i, k in enumerate(SIZES)]
    out = list(evaluate_chain(template, "n_estimators", links, X, y, tr, te, _scoring, 0))
    assert [o.error for o in out] == [None, "ValueError: three", None, None]
    fresh = _fresh(RandomForestClassifier(random_state=0, max_depth=6), "n_estimators", SIZES,
                   X, y, splits)[:, 0]
    assert [o.scores["score"] for o in out if o.scores] == [fresh[0], fresh[2], fresh[3]]


def test_unproven_conditions_take_the_plain_path() -> None:
    from sklearn.ensemble import (
        BaggingClassifier,
        GradientBoostingClassifier,
        HistGradientBoostingClassifier,
    )
    assert not link_ok(GradientBoostingClassifier(n_iter_no_change=3), "n_estimators",
                       {"n_estimators": 5})
    assert not link_ok(HistGradientBoostingClassifier(), "max_iter", {"max_iter": 5})  # auto
    assert not link_ok(BaggingClassifier(oob_score=True), "n_estimators", {"n_estimators": 5})
    rs = np.random.RandomState(0)
    assert not link_ok(RandomForestClassifier(random_state=rs), "n_estimators",
                       {"n_estimators": 5})
    assert link_ok(RandomForestClassifier(), "n_estimators", {"n_estimators": 5})  # None
    assert not link_ok(RandomForestClassifier(), "n_estimators", {"n_estimators": True})
    assert growable(KNeighborsClassifier()) is None
    assert growable(Pipeline([("pca", PCA()), ("model", KNeighborsClassifier())])) is None

    class Mine(RandomForestClassifier):
        pass
    assert growable(Mine()) is None  # a subclass may change what warm_start does


def test_plan_groups_a_folds_candidates_by_their_other_parameters() -> None:
    template = table()[0].estimator(random_state=0)
    raw = {0: {"n_estimators": 30, "max_depth": 2}, 1: {"n_estimators": 10, "max_depth": 2},
           2: {"n_estimators": 20, "max_depth": 3}, 3: {"n_estimators": 10, "max_depth": 3},
           4: {"n_estimators": 20, "max_depth": 2}, 5: {"n_estimators": 20, "max_depth": -1}}
    pending = [(i, f) for f in range(2) for i in range(6)]
    units = plan(template, pending, raw, raw, set())
    assert units == [[(1, 0), (4, 0), (0, 0)], [(3, 0), (2, 0)], [(5, 0)],
                     [(1, 1), (4, 1), (0, 1)], [(3, 1), (2, 1)], [(5, 1)]]
    # (5: max_depth -1 is an error, but it is the fit's to report: it chains with nobody)
    knn = plan(KNeighborsClassifier(), pending, raw, raw, set())
    assert knn == [[p] for p in pending]
