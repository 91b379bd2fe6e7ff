"""searchd against plain GridSearchCV: the issue-6 benchmark suite.

Run from the repository root::

    python -m bench.run [--quick] [--pairs N] [--only WORKLOAD] [--json FILE]

Workloads (``--only`` takes one, or a comma-separated list): tiny, medium, many (A/B pairs
of GridSearchCV and ``searchd run --drain``), big (100,000 stored results, searchd only),
checkpoint (flush cost in-process), first-fit, kill, idle (bench.idle's latency trials),
footprint (the supervisor's RSS and CPU), random, halving, halving-grid (the search kinds),
seed (issue 15: the seed document's forest and k-NN grids), shared-pca and shared-poly
(issue 15: scale (+ degree-2 features) + PCA shared by SVC candidates); the search kinds,
seed and the shared workloads are not in --quick unless named. See bench/README.md for what
each figure means.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import _checkpoint, _daemon, _report, _strategies
from bench._pairs import run_reference, run_searchd
from bench._workloads import (
    BIG,
    HALVING_GRID,
    KILL,
    KILL_QUICK,
    LONG,
    PAIRED,
    SEED,
    SHARED_PCA,
    SHARED_POLY,
    STRATEGY,
    TINY,
    StrategyWorkload,
    Workload,
)
from bench.overhead import build_workload, clean_env, compare_scores

FIGURES = ("tiny", "medium", "many", "big", "checkpoint", "first-fit", "kill", "idle",
           "footprint", "random", "halving", "halving-grid", "seed", "shared-pca", "shared-poly")
QUICK_SKIPS = ("random", "halving", "halving-grid", "seed", "shared-pca", "shared-poly")
N_JOBS = 2


def paired(w: Workload | StrategyWorkload, tmp: Path, pairs: int,
           quick: bool) -> dict[str, Any]:
    """A B A B ...: the reference (GridSearchCV; for a StrategyWorkload RandomizedSearchCV or
    HalvingGridSearchCV) n_jobs=1 and 2 in fresh processes, then searchd."""
    src = tmp / "src"
    src.mkdir(exist_ok=True)
    job_file = w.write(src, quick)
    pkl = tmp / f"{w.name}.pkl"
    if isinstance(w, StrategyWorkload):
        cls = _strategies.build(w, quick, pkl)["cls"]
        print(f"\n== {w.name}: searchd search = {w.kind!r} vs {cls}; {pairs} pair(s)",
              flush=True)

        def reference(n_jobs: int, timeout: float | None = None) -> dict[str, Any]:
            return _strategies.run_ref(pkl, n_jobs, tmp, timeout)

        def compare(sd: dict[str, Any], r: dict[str, Any]) -> list[str]:
            return _strategies.compare(sd, r, cls)
        candidates: int | None = None
        fits: int | None = None
    else:
        built = build_workload(job_file, pkl)
        job = built["job"]
        candidates, fits = job.n_candidates, job.fits_total
        print(f"\n== {w.name}: {job.n_candidates} candidates, {job.fits_total} fits; "
              f"{pairs} pair(s)", flush=True)

        def reference(n_jobs: int, timeout: float | None = None) -> dict[str, Any]:
            return run_reference(pkl, n_jobs, tmp, timeout=timeout)

        def compare(sd: dict[str, Any], r: dict[str, Any]) -> list[str]:
            return compare_scores(sd, r, built["expected"])
    rows, problems = [], []
    skip2: str | None = None if w.reference_n_jobs_2 else "not run (DESIGN.md §6)"
    if quick and skip2 is None:
        skip2 = "not run with --quick"
    for k in range(pairs):
        r1 = reference(1)
        r2: dict[str, Any] = {"skipped": skip2}
        if skip2 is None:
            # capped: GridSearchCV(n_jobs=2) on scikit-learn 1.9 can take 20+ minutes on
            # big grids; once it is slower than n_jobs=1 by 10 s we know which is faster
            r2 = reference(2, timeout=r1["process_seconds"] + 10.0)
            if "timeout" in r2:
                skip2 = f"> {r2['timeout']:.0f} s (timed out in pair {k + 1}; not rerun)"
        sd = run_searchd(job_file, tmp / f"{w.name}-run{k}", N_JOBS)
        for r in (r1, r2):
            if "models" in r:
                problems += [f"pair {k + 1}: {p}" for p in compare(sd, r)]
        refs = [r for r in (r1, r2) if "search_seconds" in r]
        best = min(refs, key=lambda r: r["search_seconds"])
        same = next((r for r in refs if r["n_jobs"] == sd["processes"]), best)
        row = {"gs1": _brief(r1), "gs2": _brief(r2) if "search_seconds" in r2 else
               {"note": skip2 if "timeout" not in r2 else f"> {r2['timeout']:.0f} s"},
               "sd": {k2: v for k2, v in sd.items() if k2 not in ("state_dir", "flushes")},
               "faster": f"n_jobs={best['n_jobs']}",
               "ratio_search": sd["search_seconds"] / best["search_seconds"],
               "ratio_process": sd["process_seconds"] / min(r["process_seconds"] for r in refs),
               "ratio_search_1": sd["search_seconds"] / r1["search_seconds"],
               "ratio_search_2": (sd["search_seconds"] / r2["search_seconds"]
                                  if "search_seconds" in r2 else None),
               # like for like: the reference run on as many processes as searchd fitted on
               # (1 when its worker fitted a small job alone; else n_jobs=2)
               "eff_sd": sd["efficiency"], "eff_ref": same["efficiency"],
               "eff_against": f"n_jobs={same['n_jobs']}",
               "eff_diff": sd["efficiency"] - same["efficiency"],
               "flush_share": sd["flush_share"], "flushes": len(sd["flushes"])}
        rows.append(row)
        _report.pair_line(k + 1, row)
        shutil.rmtree(tmp / f"{w.name}-run{k}", ignore_errors=True)
    return {"workload": w.name, "about": w.about, "candidates": candidates,
            "fits": fits, "pairs": rows, "problems": problems,
            "n_jobs_2": skip2}


def _brief(r: dict[str, Any]) -> dict[str, Any]:
    return {k: r[k] for k in ("search_seconds", "process_seconds", "work_seconds",
                              "efficiency", "sklearn", "other_load")}


def big(tmp: Path, quick: bool, reference: bool) -> dict[str, Any]:
    """searchd alone on 100,000 results (quick: 5,000): the checkpoint's share of the run."""
    src = tmp / "src"
    src.mkdir(exist_ok=True)
    job_file = BIG.write(src, quick)
    print(f"\n== big: searchd on {BIG.name} ({'5,000' if quick else '100,000'} results)",
          flush=True)
    sd = run_searchd(job_file, tmp / "big-run", N_JOBS)
    out: dict[str, Any] = {"sd": {k: v for k, v in sd.items() if k != "state_dir"}}
    if reference:
        pkl = tmp / "big.pkl"
        build_workload(job_file, pkl)
        out["gs1"] = _brief(run_reference(pkl, 1, tmp))
    shutil.rmtree(tmp / "big-run", ignore_errors=True)
    print(f"   search {sd['search_seconds']:.1f} s, {len(sd['flushes'])} flushes, "
          f"checkpoint {sd['flush_seconds']:.2f} s = {100 * sd['flush_share']:.2f} % of it",
          flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="1 pair (unless --pairs), smaller grids, short windows (CI smoke test)")
    ap.add_argument("--pairs", type=int, help="A/B pairs per workload (default 3; 1 with --quick)")
    ap.add_argument("--only", help=f"comma-separated subset of: {', '.join(FIGURES)}")
    ap.add_argument("--kills", type=int, help="kill -9 trials (default 10; 2 with --quick)")
    ap.add_argument("--big-reference", action="store_true",
                    help="also time GridSearchCV(n_jobs=1) on big (~10 minutes)")
    ap.add_argument("--json", type=Path, help="also write every figure to this file")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args(argv)
    pairs = args.pairs or (1 if args.quick else 3)
    if pairs < 1:
        ap.error("--pairs must be at least 1")
    # --quick (the test suite's check that the bench runs) leaves out the search kinds'
    # workloads: their scores are tests' (test_random_search, test_halving), and they would
    # add ~90 s to every test run; name them with --only
    default = tuple(f for f in FIGURES if not (args.quick and f in QUICK_SKIPS))
    only = default if not args.only else tuple(s.strip() for s in args.only.split(","))
    bad = [s for s in only if s not in FIGURES]
    if bad:
        ap.error(f"--only: unknown {', '.join(bad)} (choose from {', '.join(FIGURES)})")
    kills = args.kills or (2 if args.quick else 10)

    import joblib
    import numpy
    import sklearn
    env = {"sklearn": sklearn.__version__, "numpy": numpy.__version__,
           "joblib": joblib.__version__, "python": platform.python_version(),
           "cpus": os.cpu_count(), "load_before": os.getloadavg()[0],
           "argv": " ".join(["python -m bench.run", *(argv if argv is not None
                                                       else sys.argv[1:])])}
    print(f"scikit-learn {env['sklearn']}, numpy {env['numpy']}, joblib {env['joblib']}, "
          f"Python {env['python']}, {env['cpus']} CPUs, load average {env['load_before']:.2f}")
    tmp = Path(tempfile.mkdtemp(prefix="searchd-bench-run-"))
    report: dict[str, Any] = {"env": env, "quick": args.quick, "pairs": pairs}
    try:
        # warm the page cache so the first run does not pay every cold import alone
        subprocess.run([sys.executable, "-c", "import searchd.worker.main, sklearn.ensemble, "
                        "sklearn.svm, sklearn.tree, sklearn.neighbors"], env=clean_env(),
                       check=True)
        for name in ("tiny", "medium", "many"):
            if name in only:
                report[name] = paired(PAIRED[name], tmp, pairs, args.quick)
        if "big" in only:
            report["big"] = big(tmp, args.quick, args.big_reference)
        if "checkpoint" in only:
            print("\n== checkpoint: flush cost in-process", flush=True)
            sizes = (1_000, 10_000) if args.quick else (1_000, 10_000, 100_000)
            report["checkpoint"] = _checkpoint.measure(sizes, deltas=20,
                                                       compactions=2 if args.quick else 5)
        if "first-fit" in only:
            print("\n== first-fit: job file written into a running daemon's jobs/", flush=True)
            report["first_fit"] = _daemon.first_fit(tmp / "first-fit", TINY.text(True),
                                                    1 if args.quick else 8)
        if "kill" in only:
            print(f"\n== kill: {kills} x kill -9 of the daemon's process group", flush=True)
            report["kill"] = _daemon.kill_waste(tmp / "kill", KILL_QUICK if args.quick else KILL,
                                                kills,
                                                max_delay=2.0 if args.quick else 10.0)
        if "idle" in only:
            trials = 1 if args.quick else 10
            print(f"\n== idle: python -m bench.idle --trials {trials} --skip-supervisor",
                  flush=True)
            report["idle"] = _daemon.idle_latency(tmp, trials,
                                                  timeout=180 if args.quick else 900)
        if "footprint" in only:
            window = 3.0 if args.quick else 30.0
            print(f"\n== footprint: supervisor idle and busy, {window:.0f} s each", flush=True)
            report["footprint"] = _daemon.footprint(tmp / "footprint", LONG, window)
        for name in STRATEGY:
            if name in only:
                report[name] = paired(STRATEGY[name], tmp, pairs, args.quick)
        if "seed" in only:
            for name, w in SEED.items():
                report[name] = paired(w, tmp, pairs, args.quick)
        if "shared-pca" in only:
            report["shared-pca"] = paired(SHARED_PCA, tmp, pairs, args.quick)
        if "shared-poly" in only:
            report["shared-poly"] = paired(SHARED_POLY, tmp, pairs, args.quick)
        if "halving-grid" in only:
            report["halving-grid"] = _strategies.halving_vs_grid(HALVING_GRID, tmp, pairs,
                                                                 args.quick, N_JOBS)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    env["load_after"] = os.getloadavg()[0]
    table = _report.table(report)
    print()
    print(table)
    problems = [p for name in (*PAIRED, *SEED, "shared-pca", "shared-poly") if name in report
                for p in report[name]["problems"]]
    print(f"\nscores identical to GridSearchCV: {'no' if problems else 'yes'}")
    for p in problems[:20]:
        print(f"  {p}")
    others = [p for name in STRATEGY if name in report for p in report[name]["problems"]]
    if any(name in report for name in STRATEGY):
        print("scores identical to RandomizedSearchCV / HalvingGridSearchCV: "
              f"{'no' if others else 'yes'}")
    for p in others[:20]:
        print(f"  {p}")
    problems += others
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
