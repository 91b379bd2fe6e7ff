"""searchd's overhead against a plain ``GridSearchCV`` on the same grid and the same splits.

Run from the repository root::

    python -m bench.overhead [--quick] [--pairs N] [--job FILE]

Per pair it runs (A) the reference — one ``GridSearchCV`` per model type, type after type,
once with ``n_jobs=1`` and once with ``n_jobs=2``, each in a fresh ``python -c`` process —
then (B) ``searchd run --drain --ignore-load`` on a copy of the job, and repeats A B A B ...
See bench/README.md for what each figure includes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_JOB = ROOT / "jobs" / "example.toml"
TARGET = 1.10

# The reference: plain scikit-learn in a fresh process. argv: workload pickle, n_jobs.
# Prints one JSON object on stdout. Only the GridSearchCV.fit calls (refit=True) are timed.
REFERENCE = r"""
import hashlib, json, pickle, sys, time
import numpy as np
import sklearn, sklearn.datasets
from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold, train_test_split

with open(sys.argv[1], "rb") as f:
    w = pickle.load(f)
n_jobs = int(sys.argv[2])
X, y = getattr(sklearn.datasets, "load_" + w["dataset"])(return_X_y=True)
X_test = y_test = None
if w["test_size"] is not None:
    X, X_test, y, y_test = train_test_split(
        X, y, test_size=w["test_size"], random_state=w["seed"],
        stratify=y if w["classification"] else None)
cv_cls = StratifiedKFold if w["classification"] else KFold
cv = [(np.asarray(tr), np.asarray(te)) for tr, te in cv_cls(
    n_splits=w["folds"], shuffle=w["shuffle"], random_state=w["cv_seed"]).split(X, y)]
h = hashlib.sha256()
for tr, te in cv:
    h.update(np.asarray(tr, np.int64).tobytes()); h.update(b"|")
    h.update(np.asarray(te, np.int64).tobytes()); h.update(b"/")
out = {"sklearn": sklearn.__version__, "splits_digest": h.hexdigest(), "models": {}}
for m in w["models"]:
    gs = GridSearchCV(m["template"], m["grid"], scoring=w["scoring"], refit=w["refit"],
                      cv=cv, n_jobs=n_jobs)
    t0 = time.perf_counter()
    gs.fit(X, y)
    fit_seconds = time.perf_counter() - t0
    if X_test is not None:
        gs.score(X_test, y_test)  # as searchd scores each type's refitted best on the hold-out
    r = gs.cv_results_
    cols = [k for k in r if k.startswith("mean_test_") or
            (k.startswith("split") and "_test_" in k)]
    out["models"][m["name"]] = {
        "fit_seconds": fit_seconds,
        "params": [json.dumps(p, sort_keys=True, default=repr) for p in r["params"]],
        "scores": {k: [float(v) for v in r[k]] for k in cols},
    }
print(json.dumps(out))
"""


# --- the workload ------------------------------------------------------------------------------

def _to_doc(v: Any) -> Any:
    """A spec value back to job-file form (None is written {none = true})."""
    if v is None:
        return {"none": True}
    if isinstance(v, list):
        return [_to_doc(x) for x in v]
    if isinstance(v, dict) and "estimator" in v:
        return {"estimator": v["estimator"],
                "params": {k: _to_doc(x) for k, x in v.get("params", {}).items()}}
    return v


def write_job(src: Path, jobs_dir: Path, quick: bool) -> Path:
    """The job file searchd runs: a copy of ``src``, or with --quick a smaller grid (JSON)."""
    if not quick:
        dst = jobs_dir / src.name
        shutil.copyfile(src, dst)
        return dst
    from searchd.jobs.load import load_job
    job = load_job(src, 100_000)
    doc = tomllib.loads(src.read_text()) if src.suffix == ".toml" else json.loads(src.read_text())
    for m in job.models:
        grids = []
        for g in m.grid:
            # the first parameter keeps two values, every other one its first value
            grids.append({k: _to_doc(list(vals[:2] if i == 0 else vals[:1]))
                          for i, (k, vals) in enumerate(g.items())})
        doc["models"][m.name]["grid"] = grids
    dst = jobs_dir / f"{job.id}-quick.json"
    dst.write_text(json.dumps(doc, indent=2))
    return dst


def build_workload(job_path: Path, out: Path) -> dict[str, Any]:
    """Pickle what the reference needs, built with searchd's own functions so grids match."""
    from sklearn.model_selection import ParameterGrid

    from searchd.jobs.load import load_job
    from searchd.jobs.spec import canonical
    from searchd.worker.data import load_dataset
    from searchd.worker.estimators import build_template, build_value, grid_key, is_classification
    from searchd.worker.plan import candidates, splits

    job = load_job(job_path, 100_000)
    kind, _, name = job.data.source.partition(":")
    if kind != "sklearn" or name.startswith("make_") or job.data.params:
        sys.exit(f"bench.overhead: only bundled sklearn:<name> datasets are supported, "
                 f"not {job.data.source!r}")
    classification = is_classification(job, ())
    steps = {s.name for s in job.preprocess}
    models, expected = [], {}
    for m in job.models:
        grid = [{grid_key(k, steps): build_value(list(v), (), f"bench: {m.name}.{k}")
                 for k, v in g.items()} for g in m.grid]
        models.append({"name": m.name, "template": build_template(job, m, ()), "grid": grid})
        # how the reference will print each searchd candidate: {pipeline key: built value}
        expected[m.name] = {
            json.dumps({grid_key(k, steps): build_value(v, (), "bench") for k, v in c.items()},
                       sort_keys=True, default=repr): canonical(c)
            for c in candidates(m)}
        n_ref = len(ParameterGrid(grid))
        assert n_ref == m.n_candidates, (m.name, n_ref, m.n_candidates)
    scoring: Any = None
    if job.search.scoring is not None:
        scoring = list(job.search.scoring) if job.search.multimetric else job.search.scoring[0]
    refit: Any = job.search.refit if job.search.multimetric else True
    workload = {"dataset": name, "test_size": job.data.test_size, "seed": job.data.seed,
                "classification": classification, "folds": job.search.folds,
                "shuffle": job.search.shuffle,
                "cv_seed": job.search.cv_seed if job.search.shuffle else None,
                "scoring": scoring, "refit": refit, "models": models}
    with open(out, "wb") as f:
        pickle.dump(workload, f)
    data = load_dataset(job, classification)
    return {"job": job, "expected": expected,
            "splits_digest": splits_digest(splits(job, data.X_train, data.y_train,
                                                  classification))}


def splits_digest(cv: list[Any]) -> str:
    import hashlib

    import numpy as np
    h = hashlib.sha256()
    for tr, te in cv:
        h.update(np.asarray(tr, np.int64).tobytes())
        h.update(b"|")
        h.update(np.asarray(te, np.int64).tobytes())
        h.update(b"/")
    return h.hexdigest()


# --- the runs ----------------------------------------------------------------------------------

def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("SEARCHD_CONFIG", "SEARCHD_STATE", "SEARCHD_JOBS")}
    return env


def run_reference(workload: Path, n_jobs: int, cwd: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", REFERENCE, str(workload), str(n_jobs)],
                       cwd=cwd, env=clean_env(), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"bench.overhead: reference (n_jobs={n_jobs}) failed:\n{p.stderr[-3000:]}")
    out = json.loads(p.stdout.strip().splitlines()[-1])
    out["process_seconds"] = wall
    out["search_seconds"] = sum(m["fit_seconds"] for m in out["models"].values())
    return out


LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def _log_time(line: str) -> float | None:
    m = LOG_TIME.match(line)
    if not m:
        return None
    return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()


def run_searchd(job_file: Path, workdir: Path, n_jobs: int) -> dict[str, Any]:
    jobs, state = workdir / "jobs", workdir / "state"
    shutil.rmtree(workdir, ignore_errors=True)
    jobs.mkdir(parents=True)
    shutil.copyfile(job_file, jobs / job_file.name)
    job_id = job_file.stem
    cmd = [sys.executable, "-m", "searchd", "run", "--drain", "--ignore-load",
           "--state", str(state), "--jobs", str(jobs), "--n-jobs", str(n_jobs)]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=workdir, env=clean_env(), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    summary = json.loads((state / job_id / "summary.json").read_text()) \
        if (state / job_id / "summary.json").exists() else {}
    if p.returncode != 0 or summary.get("state") != "done":
        sys.exit(f"bench.overhead: searchd exited {p.returncode} (job state "
                 f"{summary.get('state')!r}, error {summary.get('error')!r}):\n"
                 f"{p.stderr[-3000:]}")
    # informative only, from the log's ms timestamps: worker spawn -> last model type done,
    # and each type's share (the first one includes the worker's start-up)
    spawn = last = None
    per_model: dict[str, float] = {}
    done_line = re.compile(rf"searchd\.worker: {re.escape(job_id)}: (\S+) done: ")
    for line in p.stderr.splitlines():
        if "started worker pid" in line and spawn is None:
            spawn = _log_time(line)
        elif (m := done_line.search(line)) and (t := _log_time(line)) is not None:
            prev = last if last is not None else spawn
            if prev is not None:
                per_model[m.group(1)] = t - prev
            last = t
    return {"process_seconds": wall,
            # the search proper, on the worker's own clock: first task dispatched → job done
            # (as GridSearchCV.fit's time excludes the interpreter start and the imports)
            "search_seconds": summary["finished_at"] - summary["first_task_at"],
            "start_seconds": summary["first_task_at"] - summary["started_at"],
            "worker_seconds": (last - spawn) if spawn and last else None,
            "per_model": per_model,
            "fits_computed": summary.get("fits_computed"),
            "state_dir": state, "job_id": job_id}


def compare_scores(sd: dict[str, Any], ref: dict[str, Any], expected: dict[str, Any]
                   ) -> list[str]:
    """Every split and mean test score of searchd vs the reference, value by value."""
    import searchd
    from searchd.jobs.spec import canonical

    res = searchd.load_results(sd["job_id"], sd["state_dir"])
    problems = []
    if splits_digest(res.splits) != ref["splits_digest"]:
        problems.append("searchd's stored CV splits differ from the reference's")
    for name, rm in ref["models"].items():
        if name not in res.models:
            problems.append(f"{name}: missing in searchd's results")
            continue
        cvr = res.models[name].cv_results_
        row = {canonical(p): i for i, p in enumerate(cvr["params"])}
        for j, shown in enumerate(rm["params"]):
            key = expected[name].get(shown)
            i = row.get(key) if key is not None else None
            if i is None:
                problems.append(f"{name}: reference candidate {shown} not found in searchd")
                continue
            for col, vals in rm["scores"].items():
                if col not in cvr:
                    problems.append(f"{name}: searchd has no column {col}")
                    continue
                a, b = float(cvr[col][i]), vals[j]
                if not (a == b or (math.isnan(a) and math.isnan(b))):
                    problems.append(f"{name} {key} {col}: searchd {a!r} != GridSearchCV {b!r}")
        if len(row) != len(rm["params"]):
            problems.append(f"{name}: searchd has {len(row)} candidates, the reference "
                            f"{len(rm['params'])}")
    return problems


# --- reporting ---------------------------------------------------------------------------------

def mmm(xs: list[float]) -> str:
    return f"{min(xs):7.2f} {statistics.median(xs):7.2f} {max(xs):7.2f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.overhead", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="1 pair (unless --pairs) and a smaller grid")
    ap.add_argument("--pairs", type=int, help="A/B pairs (default 3; 1 with --quick)")
    ap.add_argument("--job", type=Path, default=DEFAULT_JOB,
                    help=f"job file (default {DEFAULT_JOB.relative_to(ROOT)})")
    ap.add_argument("--searchd-n-jobs", type=int, default=2,
                    help="searchd run --n-jobs (default 2, as the reference's n_jobs=2)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args(argv)
    pairs = args.pairs or (1 if args.quick else 3)
    if pairs < 1:
        ap.error("--pairs must be at least 1")

    import joblib
    import sklearn
    tmp = Path(tempfile.mkdtemp(prefix="searchd-bench-"))
    try:
        (tmp / "src").mkdir()
        job_file = write_job(args.job.resolve(), tmp / "src", args.quick)
        workload = tmp / "workload.pkl"
        w = build_workload(job_file, workload)
        job = w["job"]
        print(f"scikit-learn {sklearn.__version__}, joblib {joblib.__version__}, "
              f"Python {platform.python_version()}, {os.cpu_count()} CPUs")
        print(f"job {job_file.name}{' (--quick grid)' if args.quick else ''}: "
              f"{len(job.models)} model types, {job.n_candidates} candidates, "
              f"{job.fits_total} fits; searchd --n-jobs {args.searchd_n_jobs}; {pairs} pair(s)")
        # warm the page cache so the first A does not pay every cold import alone
        subprocess.run([sys.executable, "-c", "import searchd.worker.main, sklearn.ensemble, "
                        "sklearn.linear_model, sklearn.neighbors, sklearn.naive_bayes"],
                       env=clean_env(), check=True)

        rows, problems, ref_versions = [], [], set()
        per_type: dict[str, dict[str, list[float]]] = {}
        load_before = os.getloadavg()[0]
        hdr = (f"{'pair':>4} | {'GS n_jobs=1':>15} | {'GS n_jobs=2':>15} | "
               f"{'searchd':>23} | {'searchd/GS(faster)':>18}")
        sub = (f"{'':>4} | {'fit':>7} {'proc':>7} | {'fit':>7} {'proc':>7} | "
               f"{'search':>7} {'proc':>7} {'worker':>7} | {'search':>8} {'proc':>8}")
        print()
        print(hdr)
        print(sub)
        for k in range(pairs):
            r1 = run_reference(workload, 1, tmp)                        # A
            r2 = run_reference(workload, 2, tmp)
            sd = run_searchd(job_file, tmp / f"run{k}", args.searchd_n_jobs)  # B
            ref_versions.add(r1["sklearn"])
            for r in (r1, r2):
                problems += [f"pair {k + 1}: {p}" for p in compare_scores(sd, r, w["expected"])]
            if r1["splits_digest"] != w["splits_digest"]:
                problems.append("the reference's splits differ from searchd.worker.plan.splits")
            gs_search = min(r1["search_seconds"], r2["search_seconds"])
            gs_proc = min(r1["process_seconds"], r2["process_seconds"])
            row = {"gs1_fit": r1["search_seconds"], "gs1_proc": r1["process_seconds"],
                   "gs2_fit": r2["search_seconds"], "gs2_proc": r2["process_seconds"],
                   "sd_search": sd["search_seconds"], "sd_proc": sd["process_seconds"],
                   "sd_worker": sd["worker_seconds"],
                   "ratio_search": sd["search_seconds"] / gs_search,
                   "ratio_proc": sd["process_seconds"] / gs_proc,
                   "ratio_search_1": sd["search_seconds"] / r1["search_seconds"],
                   "ratio_search_2": sd["search_seconds"] / r2["search_seconds"]}
            rows.append(row)
            for name, rm in r2["models"].items():
                per_type.setdefault(name, {"gs1": [], "gs2": [], "sd": []})
                per_type[name]["gs1"].append(r1["models"][name]["fit_seconds"])
                per_type[name]["gs2"].append(rm["fit_seconds"])
                if name in sd["per_model"]:
                    per_type[name]["sd"].append(sd["per_model"][name])
            worker = f"{row['sd_worker']:7.2f}" if row["sd_worker"] is not None else f"{'-':>7}"
            print(f"{k + 1:>4} | {row['gs1_fit']:7.2f} {row['gs1_proc']:7.2f} | "
                  f"{row['gs2_fit']:7.2f} {row['gs2_proc']:7.2f} | "
                  f"{row['sd_search']:7.2f} {row['sd_proc']:7.2f} {worker} | "
                  f"{row['ratio_search']:7.3f}x {row['ratio_proc']:7.3f}x", flush=True)
            shutil.rmtree(tmp / f"run{k}", ignore_errors=True)

        col = lambda key: [r[key] for r in rows]  # noqa: E731
        print()
        print(f"{'seconds':<34} {'min':>7} {'median':>7} {'max':>7}")
        for label, key in (("GridSearchCV n_jobs=1, fit calls", "gs1_fit"),
                           ("GridSearchCV n_jobs=1, process", "gs1_proc"),
                           ("GridSearchCV n_jobs=2, fit calls", "gs2_fit"),
                           ("GridSearchCV n_jobs=2, process", "gs2_proc"),
                           ("searchd search (summary.json)", "sd_search"),
                           ("searchd process", "sd_proc")):
            print(f"{label:<34} {mmm(col(key))}")
        if all(r["sd_worker"] is not None for r in rows):
            print(f"{'searchd worker spawn->last done':<34} {mmm(col('sd_worker'))}")
        print()
        print("per model type, median seconds (searchd's from its log; its first type includes "
              "the worker's start-up)")
        print(f"{'type':<10} {'GS n_jobs=1':>11} {'GS n_jobs=2':>11} {'searchd':>8}")
        med = lambda xs: f"{statistics.median(xs):8.2f}" if xs else f"{'-':>8}"  # noqa: E731
        for name, t in per_type.items():
            print(f"{name:<10} {med(t['gs1']):>11} {med(t['gs2']):>11} {med(t['sd'])}")
        faster = "n_jobs=1" if statistics.median(col("gs1_fit")) <= \
            statistics.median(col("gs2_fit")) else "n_jobs=2"
        med_s, med_p = statistics.median(col("ratio_search")), statistics.median(col("ratio_proc"))
        print()
        print(f"GridSearchCV faster by median fit time: {faster}")
        print(f"median ratio searchd/GridSearchCV(faster of the pair), search time:  "
              f"{med_s:.3f}x  (vs n_jobs=1 {statistics.median(col('ratio_search_1')):.3f}x, "
              f"vs n_jobs=2 {statistics.median(col('ratio_search_2')):.3f}x)")
        print(f"median ratio searchd/GridSearchCV(faster of the pair), whole process: "
              f"{med_p:.3f}x")
        verdict = "met" if med_s <= TARGET else "NOT met"
        print(f"target search-time ratio <= {TARGET:.2f}: {verdict}")
        print(f"1-minute load average: {load_before:.2f} before, "
              f"{os.getloadavg()[0]:.2f} after ({os.cpu_count()} CPUs; other load makes "
              "every figure noisier)")
        print(f"scikit-learn version (reference processes): {', '.join(sorted(ref_versions))}")
        print(f"scores identical: {'no' if problems else 'yes'}")
        for p in problems[:20]:
            print(f"  {p}")
        if len(problems) > 20:
            print(f"  ... and {len(problems) - 20} more")
        return 1 if problems else 0
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
