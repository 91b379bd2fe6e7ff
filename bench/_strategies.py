"""Issue 13's workloads: random search and successive halving against scikit-learn.

* ``random`` / ``halving``: ``RandomizedSearchCV`` / ``HalvingGridSearchCV`` in a fresh
  process (n_jobs=1 and 2) against ``searchd run --drain``, paired as bench.run's other
  workloads are. The reference is built from the workload's Python grid
  (bench/_workloads.py ``StrategyWorkload``) with scikit-learn and scipy only — not with
  searchd's parsing — and gets the same ``StratifiedKFold(5)`` splits as ``cv=``. Every
  ``cv_results_`` row is compared in order: the parameters, every split and mean test
  score, ``iter`` and ``n_resources`` (halving), then ``best_params_``, ``best_score_`` and
  (halving) ``n_candidates_`` / ``n_resources_``.
* ``halving-grid``: searchd's halving against searchd's own full grid on the same 500
  candidates: the time ratio, both best scores, and where halving's pick ranks in the full
  grid.
"""

from __future__ import annotations

import json
import math
import pickle
import shutil
from pathlib import Path
from typing import Any

from bench._pairs import run_reference, run_searchd
from bench._workloads import StrategyWorkload
from bench.overhead import splits_digest

# argv: workload pickle (build), n_jobs. One JSON object on stdout.
REFERENCE = r"""
import hashlib, json, pickle, sys, time, warnings
import numpy as np
import sklearn, sklearn.datasets
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.model_selection import (HalvingGridSearchCV, HalvingRandomSearchCV,
                                     RandomizedSearchCV, StratifiedKFold)

with open(sys.argv[1], "rb") as f:
    w = pickle.load(f)
n_jobs = int(sys.argv[2])
X, y = getattr(sklearn.datasets, "load_" + w["dataset"])(return_X_y=True)
cv = [(np.asarray(tr), np.asarray(te)) for tr, te in StratifiedKFold(w["folds"]).split(X, y)]
h = hashlib.sha256()
for tr, te in cv:
    h.update(np.asarray(tr, np.int64).tobytes()); h.update(b"|")
    h.update(np.asarray(te, np.int64).tobytes()); h.update(b"/")

def plain(p):
    return json.dumps({k: v.item() if isinstance(v, np.generic) else v for k, v in p.items()},
                      sort_keys=True, default=repr)

out = {"sklearn": sklearn.__version__, "splits_digest": h.hexdigest(), "models": {}}
for m in w["models"]:
    cls = {"RandomizedSearchCV": RandomizedSearchCV, "HalvingGridSearchCV": HalvingGridSearchCV,
           "HalvingRandomSearchCV": HalvingRandomSearchCV}[m["cls"]]
    s = cls(m["template"], m["grid"], cv=cv, n_jobs=n_jobs, **m["kwargs"])
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        s.fit(X, y)
    fit_seconds = time.perf_counter() - t0
    r = s.cv_results_
    cols = [k for k in r if k.startswith("mean_test_") or
            (k.startswith("split") and "_test_" in k)]
    extra = {k: [int(v) for v in r[k]] for k in ("iter", "n_resources") if k in r}
    out["models"][m["name"]] = {
        "fit_seconds": fit_seconds,
        "work_seconds": float(np.sum(r["mean_fit_time"] + r["mean_score_time"]) * len(cv)),
        "params": [plain(p) for p in r["params"]],
        "scores": {k: [float(v) for v in r[k]] for k in cols}, "extra": extra,
        "best_params": plain(s.best_params_), "best_score": float(s.best_score_),
        "n_candidates": [int(v) for v in getattr(s, "n_candidates_", [])],
        "n_resources": [int(v) for v in getattr(s, "n_resources_", [])],
    }
print(json.dumps(out))
"""


def _reference_grid(grid: dict[str, Any]) -> dict[str, Any]:
    import scipy.stats

    return {k: getattr(scipy.stats, v[0])(*v[1:]) if isinstance(v, tuple) else list(v)
            for k, v in grid.items()}


def _template(w: StrategyWorkload) -> Any:
    from sklearn.utils import all_estimators

    cls = dict(all_estimators())[w.estimator]
    return cls(**w.params)


def build(w: StrategyWorkload, quick: bool, pkl: Path) -> dict[str, Any]:
    """Pickle the reference's search (scikit-learn objects only) for REFERENCE."""
    grid, keys = w.spec(quick)
    kwargs: dict[str, Any] = {"random_state": keys.get("seed", 0)}
    if w.kind == "random":
        cls = "RandomizedSearchCV"
        kwargs["n_iter"] = keys["n_iter"]
    else:
        drawn = any(isinstance(v, tuple) for v in grid.values()) or "n_candidates" in keys
        cls = "HalvingRandomSearchCV" if drawn else "HalvingGridSearchCV"
        kwargs.update({k: v for k, v in keys.items() if k != "seed"})
    spec = {"dataset": w.source.split(":", 1)[1], "folds": 5,
            "models": [{"name": w.model, "template": _template(w), "cls": cls,
                        "grid": _reference_grid(grid), "kwargs": kwargs}]}
    with open(pkl, "wb") as f:
        pickle.dump(spec, f)
    return {"cls": cls, "kwargs": kwargs}


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def compare(sd: dict[str, Any], ref: dict[str, Any], cls: str) -> list[str]:
    """searchd's cv_results_ against the reference's, row by row in order, value by value."""
    import searchd

    res = searchd.load_results(sd["job_id"], sd["state_dir"])
    problems = []
    if splits_digest(res.splits) != ref["splits_digest"]:
        problems.append("searchd's stored CV splits differ from the reference's")
    for name, rm in ref["models"].items():
        ms = res.models.get(name)
        if ms is None:
            problems.append(f"{name}: missing in searchd's results")
            continue
        cvr = ms.cv_results_
        ours = [json.dumps(p, sort_keys=True, default=repr) for p in cvr["params"]]
        if ours != rm["params"]:
            problems.append(f"{name}: candidates differ from {cls}'s ({len(ours)} rows vs "
                            f"{len(rm['params'])}; first: {ours[:1]} vs {rm['params'][:1]})")
            continue
        for col, vals in [*rm["scores"].items(), *rm["extra"].items()]:
            if col not in cvr:
                problems.append(f"{name}: searchd has no column {col}")
                continue
            bad = [i for i, b in enumerate(vals) if not _same(float(cvr[col][i]), float(b))]
            if bad:
                i = bad[0]
                problems.append(f"{name} {col}: {len(bad)} rows differ, e.g. row {i} "
                                f"{ours[i]}: searchd {float(cvr[col][i])!r} != {cls} "
                                f"{vals[i]!r}")
        if json.dumps(ms.best_params_, sort_keys=True, default=repr) != rm["best_params"]:
            problems.append(f"{name}: best_params_ {ms.best_params_} != {rm['best_params']}")
        if ms.best_score_ is None or not _same(ms.best_score_, rm["best_score"]):
            problems.append(f"{name}: best_score_ {ms.best_score_!r} != {rm['best_score']!r}")
        if rm["n_candidates"] and (list(ms.n_candidates_ or []) != rm["n_candidates"]
                                   or list(ms.n_resources_ or []) != rm["n_resources"]):
            problems.append(f"{name}: rounds {ms.n_candidates_} x {ms.n_resources_} != "
                            f"{rm['n_candidates']} x {rm['n_resources']}")
    return problems


def halving_vs_grid(w: StrategyWorkload, tmp: Path, pairs: int, quick: bool,
                    n_jobs: int) -> dict[str, Any]:
    """searchd's halving and searchd's full grid on the same candidates, alternating."""
    import searchd

    src = tmp / "src"
    src.mkdir(exist_ok=True)
    files = {"grid": w.write(src, quick, "grid"), "halving": w.write(src, quick, "halving")}
    n = math.prod(len(v) for v in w.spec(quick)[0].values())  # type: ignore[arg-type]
    print(f"\n== {w.name}: {n} candidates, full grid vs halving (both searchd --n-jobs "
          f"{n_jobs}); {pairs} pair(s)", flush=True)
    rows = []
    for k in range(pairs):
        order = ("grid", "halving") if k % 2 == 0 else ("halving", "grid")
        runs: dict[str, dict[str, Any]] = {}
        best: dict[str, Any] = {}
        for kind in order:
            sd = run_searchd(files[kind], tmp / f"{w.name}-{kind}-run{k}", n_jobs)
            ms = searchd.load_results(sd["job_id"], sd["state_dir"]).models[w.model]
            best[kind] = ms
            runs[kind] = {k2: v for k2, v in sd.items() if k2 not in ("state_dir", "flushes")}
            runs[kind]["best_score"] = ms.best_score_
            runs[kind]["best_params"] = ms.best_params_
            runs[kind]["rows"] = len(ms.cv_results_["params"])
            shutil.rmtree(tmp / f"{w.name}-{kind}-run{k}", ignore_errors=True)
        g, h = best["grid"], best["halving"]
        # halving's pick in the full grid: its 5-fold score on every sample, and its rank
        gp = [json.dumps(p, sort_keys=True) for p in g.cv_results_["params"]]
        i = gp.index(json.dumps(h.best_params_, sort_keys=True))
        row = {"grid": runs["grid"], "halving": runs["halving"], "order": "/".join(order),
               "ratio": runs["halving"]["search_seconds"] / runs["grid"]["search_seconds"],
               "ratio_process": (runs["halving"]["process_seconds"]
                                 / runs["grid"]["process_seconds"]),
               "pick_grid_score": float(g.cv_results_["mean_test_score"][i]),
               "pick_grid_rank": int(g.cv_results_["rank_test_score"][i]),
               "rounds": [list(h.n_candidates_ or []), list(h.n_resources_ or [])]}
        rows.append(row)
        print(f"  pair {k + 1} ({row['order']}): grid {runs['grid']['search_seconds']:.2f}s "
              f"(proc {runs['grid']['process_seconds']:.1f}s) | halving "
              f"{runs['halving']['search_seconds']:.2f}s (proc "
              f"{runs['halving']['process_seconds']:.1f}s) | after last type done "
              f"{runs['grid'].get('after_last_done_seconds') or 0:.1f}/"
              f"{runs['halving'].get('after_last_done_seconds') or 0:.1f}s | ratio "
              f"{row['ratio']:.3f} | best "
              f"grid {g.best_score_:.4f}, halving {h.best_score_:.4f} (its pick: "
              f"{row['pick_grid_score']:.4f} on the full grid, rank {row['pick_grid_rank']}"
              f"/{len(gp)}) | others' load {runs['grid']['other_load']:.1f}/"
              f"{runs['halving']['other_load']:.1f} cores", flush=True)
    return {"workload": w.name, "about": w.about, "candidates": n, "pairs": rows,
            "problems": []}


def run_ref(pkl: Path, n_jobs: int, tmp: Path, timeout: float | None = None) -> dict[str, Any]:
    return run_reference(pkl, n_jobs, tmp, timeout=timeout, script=REFERENCE)
