"""searchd on a local 2-worker Dask cluster against searchd's local joblib backend.

Run from the repository root::

    python -m bench.dask [--pairs N] [--quick] [--keep]

The workload is the "medium" one: scikit-learn's digits, StandardScaler + SVC over a
10 × 5 grid of C × gamma (50 candidates) with 5-fold stratified CV: 250 fits. Per pair it
runs (A) ``searchd run --drain --n-jobs 2`` (loky, two processes) and then (B) the same
with ``--dask ADDRESS`` on a ``LocalCluster(n_workers=2, threads_per_worker=1)`` that the
bench starts once, as a user's long-lived cluster would be; pairs alternate A B A B so that
drift in the machine's load hits both sides. It also times the LocalCluster's start-up in
a fresh process per pair, and checks that both backends give the same scores, value by value.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

JOB = """
[data]
source = "sklearn:digits"

[search]
cv = 5
scoring = "accuracy"

[[preprocess]]
name = "scale"
estimator = "StandardScaler"

[models.svc]
estimator = "SVC"
grid = { C = { logspace = [-2, 3, %(c)d] }, gamma = { logspace = [-5, -1, %(g)d] } }
"""

# A fresh process: import distributed, start the cluster, wait for its workers, close it.
STARTUP = r"""
import json, time
t0 = time.perf_counter()
from distributed import Client, LocalCluster
t1 = time.perf_counter()
if __name__ == "__main__":
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=None)
    client = Client(cluster)
    client.wait_for_workers(2)
    t2 = time.perf_counter()
    client.close(); cluster.close()
    t3 = time.perf_counter()
    print(json.dumps({"import": t1 - t0, "start": t2 - t1, "close": t3 - t2}))
"""

LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def _log_time(line: str) -> float | None:
    m = LOG_TIME.match(line)
    return None if m is None else datetime.strptime(
        m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if k not in ("SEARCHD_CONFIG", "SEARCHD_STATE", "SEARCHD_JOBS")}


def run_searchd(job_text: str, workdir: Path, dask: str | None) -> dict[str, Any]:
    """One ``searchd run --drain`` on a fresh state folder; its wall and worker times."""
    shutil.rmtree(workdir, ignore_errors=True)
    jobs, state = workdir / "jobs", workdir / "state"
    jobs.mkdir(parents=True)
    (jobs / "medium.toml").write_text(job_text)
    cmd = [sys.executable, "-m", "searchd", "run", "--drain", "--ignore-load", "--n-jobs", "2",
           "--state", str(state), "--jobs", str(jobs)]
    if dask:
        cmd += ["--dask", dask]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=workdir, env=clean_env(), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    summary_path = state / "medium" / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    if p.returncode != 0 or summary.get("state") != "done":
        sys.exit(f"bench.dask: searchd exited {p.returncode} (state {summary.get('state')!r}, "
                 f"error {summary.get('error')!r}):\n{p.stderr[-3000:]}")
    spawn = done = connected = scatter = None
    for line in p.stderr.splitlines():
        t = _log_time(line)
        if "started worker pid" in line and spawn is None:
            spawn = t
        elif "connected to the Dask scheduler" in line:
            connected = t
        elif m := re.search(r"data scattered to \d+ Dask worker\(s\) in ([0-9.]+)s", line):
            scatter = float(m.group(1))
        elif re.search(r"searchd\.worker: medium: svc done: ", line):
            done = t
    if spawn is None or done is None:
        sys.exit(f"bench.dask: cannot find the worker's start and end in the log:\n"
                 f"{p.stderr[-3000:]}")
    return {"process": wall, "worker": done - spawn,
            "connect": None if connected is None else connected - spawn, "scatter": scatter,
            "state": state, "fits_computed": summary.get("fits_computed")}


def cluster_startup() -> dict[str, float]:
    p = subprocess.run([sys.executable, "-c", STARTUP], env=clean_env(), capture_output=True,
                       text=True)
    if p.returncode != 0:
        sys.exit(f"bench.dask: LocalCluster start-up failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def same_scores(a: Path, b: Path) -> bool:
    """Every split and mean test score of the two runs, equal to the bit."""
    from searchd.state.read import load_results
    ra = load_results("medium", a, with_estimators=False).models["svc"].cv_results_
    rb = load_results("medium", b, with_estimators=False).models["svc"].cv_results_
    if [json.dumps(p, sort_keys=True) for p in ra["params"]] != \
            [json.dumps(p, sort_keys=True) for p in rb["params"]]:
        return False
    keys = [k for k in ra if k.startswith("split") and k.endswith("_test_score")]
    return all(list(ra[k]) == list(rb[k]) for k in [*keys, "mean_test_score"])


def mmm(xs: list[float]) -> str:
    return f"{min(xs):6.2f} {statistics.median(xs):6.2f} {max(xs):6.2f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.dask", description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="a 4 × 2 grid (40 fits), 1 pair")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args(argv)
    pairs = 1 if args.quick else args.pairs
    c, g = (4, 2) if args.quick else (10, 5)
    job = JOB % {"c": c, "g": g}

    import dask
    import sklearn
    from distributed import Client, LocalCluster

    tmp = Path(tempfile.mkdtemp(prefix="searchd-bench-dask-"))
    print(f"workload: digits, StandardScaler + SVC, {c} × {g} = {c * g} candidates × 5 folds "
          f"= {c * g * 5} fits; {pairs} pair(s)")
    print(f"python {platform.python_version()}, scikit-learn {sklearn.__version__}, "
          f"dask {dask.__version__}, {os.cpu_count()} CPUs, load average before "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    rows: list[dict[str, Any]] = []
    identical = True
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        client.wait_for_workers(2)
        for k in range(pairs):
            local = run_searchd(job, tmp / f"local-{k}", None)
            onda = run_searchd(job, tmp / f"dask-{k}", cluster.scheduler_address)
            start = cluster_startup()
            same = same_scores(local["state"], onda["state"])
            identical &= same
            rows.append({"local": local, "dask": onda, "startup": start})
            print(f"pair {k + 1}: local worker {local['worker']:6.2f}s proc "
                  f"{local['process']:6.2f}s | dask worker {onda['worker']:6.2f}s proc "
                  f"{onda['process']:6.2f}s (connected after {onda['connect']:.2f}s) | ratio "
                  f"{onda['worker'] / local['worker']:.2f} | LocalCluster start "
                  f"{start['start']:.2f}s + import {start['import']:.2f}s | scores "
                  f"{'identical' if same else 'DIFFER'}", flush=True)
    print("\n                        min  median    max   (seconds)")
    for side in ("local", "dask"):
        for what in ("worker", "process"):
            print(f"{side:>5} {what:<14} {mmm([r[side][what] for r in rows])}")
    print(f"{'dask':>5} {'connect':<14} {mmm([r['dask']['connect'] for r in rows])}"
          "   (worker spawn -> connected)")
    print(f"{'dask':>5} {'scatter':<14} {mmm([r['dask']['scatter'] for r in rows])}")
    for what in ("import", "start", "close"):
        print(f"LocalCluster {what:<7} {mmm([r['startup'][what] for r in rows])}")
    ratios = [r["dask"]["worker"] / r["local"]["worker"] for r in rows]
    pratios = [r["dask"]["process"] / r["local"]["process"] for r in rows]
    print(f"\nratio dask/local, worker time: median {statistics.median(ratios):.2f} "
          f"(per pair: {', '.join(f'{x:.2f}' for x in ratios)})")
    print(f"ratio dask/local, process time: median {statistics.median(pratios):.2f} "
          f"(per pair: {', '.join(f'{x:.2f}' for x in pratios)})")
    print(f"load average after {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"scores identical: {'yes' if identical else 'no'}")
    if args.keep:
        print(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
