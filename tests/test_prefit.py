"""Shared preprocessing: a fold's deterministic preprocessing fitted once and reused gives
GridSearchCV's scores to the last bit; random or unknown steps are refitted per candidate;
the cache holds at most its bytes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from searchd.worker.evaluate import evaluate
from searchd.worker.prefit import PrefixCache, make_cache, shared_key

pytestmark = pytest.mark.timeout(120)


def _scoring(est: Any, X: Any, y: Any) -> dict[str, float]:
    return {"score": est.score(X, y)}


def _problem() -> tuple[np.ndarray, np.ndarray, list[Any]]:
    X, y = load_digits(return_X_y=True)
    X, y = X[:400], y[:400]
    splits = [(np.asarray(a), np.asarray(b))
              for a, b in StratifiedKFold(3, shuffle=True, random_state=0).split(X, y)]
    return X, y, splits


def test_shared_preprocessing_equals_gridsearch() -> None:
    X, y, splits = _problem()
    template = Pipeline([("scale", StandardScaler()),
                         ("pca", PCA(random_state=0, svd_solver="randomized")),
                         ("model", SVC())])
    grid = {"pca__n_components": [10, 20], "model__C": [0.3, 1.0, 3.0],
            "model__gamma": [1e-3, 1e-2]}
    gs = GridSearchCV(template, grid, cv=splits, refit=False).fit(X, y)
    cache = make_cache(64)
    assert cache is not None
    for i, params in enumerate(gs.cv_results_["params"]):
        for f, (tr, te) in enumerate(splits):
            o = evaluate(template, dict(params), X, y, tr, te, _scoring, i, f, cache)
            assert o.error is None
            assert o.scores == {"score": gs.cv_results_[f"split{f}_test_score"][i]}, (params, f)
    # 2 PCA sizes x 3 folds fitted; every other candidate reused them
    assert (cache.misses, cache.hits) == (6, 12 * 3 - 6)


def test_random_or_stateful_steps_are_not_shared() -> None:
    _, _, splits = _problem()
    tr = splits[0][0]
    shared = Pipeline([("scale", StandardScaler()), ("model", SVC())])
    assert shared_key(shared, tr) is not None
    assert shared_key(shared, tr) != shared_key(shared, splits[1][0])  # per fold
    other = clone(shared).set_params(scale__with_mean=False)
    assert shared_key(other, tr) != shared_key(shared, tr)  # per step parameters
    random = Pipeline([("pca", PCA(svd_solver="randomized")), ("model", SVC())])
    assert shared_key(random, tr) is None  # random_state None
    rs = Pipeline([("pca", PCA(random_state=np.random.RandomState(0))), ("model", SVC())])
    assert shared_key(rs, tr) is None
    assert shared_key(SVC(), tr) is None  # no preprocessing


def test_the_cache_keeps_at_most_its_bytes() -> None:
    cache = PrefixCache(3 * 800)
    for k in range(5):
        cache.put(str(k), [], np.zeros(100))  # 800 bytes each
    assert cache.get("0") is None and cache.get("1") is None
    assert all(cache.get(str(k)) is not None for k in (2, 3, 4))
    cache.put("big", [], np.zeros(1000))  # bigger than the whole cache: not kept
    assert cache.get("big") is None
    assert make_cache(0) is None
