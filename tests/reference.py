"""Plain GridSearchCV on the same estimators, grids and splits as a searchd job."""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import sklearn
from filelock import FileLock
from sklearn.model_selection import GridSearchCV

from searchd.jobs.load import load_job
from searchd.jobs.spec import canonical
from searchd.worker.data import load_dataset
from searchd.worker.estimators import build_template, build_value, grid_key, is_classification


def reference_searches(job_file: Path, splits: list[Any]) -> dict[str, Any]:
    """Each model type's GridSearchCV, fitted (its ``cv_results_`` and ``best_params_``).

    Under pytest-xdist, computed once per test run for the same job text, data and splits
    (several tests check the same job against scikit-learn): the other workers wait for the
    first and read its results from the run's private folder."""
    job = load_job(job_file, 10**9)
    data = load_dataset(job, is_classification(job, ()))
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if run is None:
        return _fit(job, data, splits)
    key = hashlib.sha256(pickle.dumps((job_file.read_bytes(), data.X_train, data.y_train,
                                       splits, sklearn.__version__))).hexdigest()[:32]
    folder = Path(tempfile.gettempdir()) / f"searchd-tests-{run}.refs"
    folder.mkdir(mode=0o700, exist_ok=True)
    cached = folder / f"{key}.pkl"
    with FileLock(folder / f"{key}.lock"):
        if cached.exists():  # written below, by this test run
            return pickle.loads(cached.read_bytes())  # type: ignore[no-any-return]
        out = {name: SimpleNamespace(cv_results_=gs.cv_results_, best_params_=gs.best_params_)
               for name, gs in _fit(job, data, splits).items()}
        cached.write_bytes(pickle.dumps(out))
        return out


def _fit(job: Any, data: Any, splits: list[Any]) -> dict[str, GridSearchCV]:
    steps = {s.name for s in job.preprocess}
    out = {}
    for m in job.models:
        grid = [{grid_key(k, steps): [build_value(v, (), k) for v in vals]
                 for k, vals in g.items()} for g in m.grid]
        names = job.search.scoring
        scoring: list[str] | str | None = None
        if names:
            scoring = list(names) if len(names) > 1 else names[0]
        # two processes pay for their start-up only on bigger grids; the scores are the same
        n_jobs = 2 if m.n_candidates * len(splits) >= 100 else 1
        gs = GridSearchCV(build_template(job, m, ()), grid, cv=splits, scoring=scoring,
                          refit=job.search.refit if job.search.multimetric else True,
                          n_jobs=n_jobs)
        out[m.name] = gs.fit(data.X_train, data.y_train)
    return out


def _unprefix(params: dict[str, Any], steps: set[str]) -> str:
    out = {}
    for k, v in params.items():
        key = k[len("model__"):] if k.startswith("model__") else k
        out[key] = v
    return canonical({k: _plain(v) for k, v in out.items()})


def _plain(v: Any) -> Any:
    if hasattr(v, "get_params"):
        return {"estimator": type(v).__name__}
    return v


def assert_same_as_gridsearch(results: Any, job_file: Path) -> int:
    """Every split score and mean of every candidate equal to the bit; returns #compared."""
    refs = reference_searches(job_file, results.splits)
    n = 0
    for name, gs in refs.items():
        ours = results.models[name].cv_results_
        theirs = gs.cv_results_
        suffixes = sorted({k[len("mean_test_"):] for k in theirs if k.startswith("mean_test_")})
        index = {_unprefix(p, set()): i for i, p in enumerate(theirs["params"])}
        assert len(index) == len(ours["params"]), name
        for i, p in enumerate(ours["params"]):
            key = canonical({k: ({"estimator": v["estimator"]} if isinstance(v, dict) else v)
                             for k, v in p.items()})
            j = index[key]
            for s in suffixes:
                k = 0
                while f"split{k}_test_{s}" in theirs:
                    a, b = ours[f"split{k}_test_{s}"][i], theirs[f"split{k}_test_{s}"][j]
                    assert (np.isnan(a) and np.isnan(b)) or a == b, \
                        f"{name} {p} split{k} {s}: {a!r} != {b!r}"
                    k += 1
                    n += 1
                a, b = ours[f"mean_test_{s}"][i], theirs[f"mean_test_{s}"][j]
                assert (np.isnan(a) and np.isnan(b)) or a == b, f"{name} {p} mean {s}"
                assert ours[f"rank_test_{s}"][i] == theirs[f"rank_test_{s}"][j], f"{name} {p}"
        best = _unprefix(gs.best_params_, set())
        ours_best = canonical({k: ({"estimator": v["estimator"]} if isinstance(v, dict) else v)
                               for k, v in results.models[name].best_params_.items()})
        assert ours_best == best, \
            f"{name}: best {results.models[name].best_params_} != {gs.best_params_}"
    return n


