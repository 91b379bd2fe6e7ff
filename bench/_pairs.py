"""A/B pairs: GridSearchCV in a fresh process (A) and ``searchd run --drain`` (B).

The reference is bench/overhead.py's, extended: it also sums the CV fit and score times
(for the CPU efficiency) and it can be capped by a timeout. Workloads are built with
``bench.overhead.build_workload`` (searchd's own grid functions, the same splits) and the
scores are compared value by value with ``bench.overhead.compare_scores``.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.overhead import clean_env

INJECT = Path(__file__).resolve().parent / "_inject"

# argv: workload pickle (bench.overhead.build_workload), n_jobs. One JSON object on stdout.
REFERENCE = r"""
import hashlib, json, pickle, sys, time
import numpy as np
import sklearn, sklearn.datasets
from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold

with open(sys.argv[1], "rb") as f:
    w = pickle.load(f)
n_jobs = int(sys.argv[2])
X, y = getattr(sklearn.datasets, "load_" + w["dataset"])(return_X_y=True)
assert w["test_size"] is None
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
    r = gs.cv_results_
    cols = [k for k in r if k.startswith("mean_test_") or
            (k.startswith("split") and "_test_" in k)]
    out["models"][m["name"]] = {
        "fit_seconds": fit_seconds,
        "work_seconds": float(np.sum(r["mean_fit_time"] + r["mean_score_time"]) * len(cv)),
        "params": [json.dumps(p, sort_keys=True, default=repr) for p in r["params"]],
        "scores": {k: [float(v) for v in r[k]] for k in cols},
    }
print(json.dumps(out))
"""


def _busy() -> float:
    """CPU seconds the whole machine has been busy (every process, every core)."""
    import psutil

    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0) - getattr(t, "guest", 0.0)
                 - getattr(t, "guest_nice", 0.0))


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


#: other programs' load during the last _run_group, in cores (machine busy - our tree)
last_other_load = 0.0


def _run_group(cmd: list[str], cwd: Path, timeout: float | None,
               env: dict[str, str] | None = None) -> tuple[int | None, str, str, float]:
    """Run ``cmd`` in its own process group; on timeout kill the whole group.

    Returns (exit code or None on timeout, stdout, stderr, wall seconds). Sets
    ``last_other_load``: the machine's busy CPU time minus this run's (reaped processes'),
    per second of the run.
    """
    global last_other_load
    b0, c0 = _busy(), _children_cpu()
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=cwd, env=env or clean_env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)  # loky's workers are in the same group
        out, err = p.communicate()
        return None, out, err, time.perf_counter() - t0
    wall = time.perf_counter() - t0
    last_other_load = max(0.0, (_busy() - b0 - (_children_cpu() - c0)) / wall)
    return p.returncode, out, err, wall


def run_reference(workload: Path, n_jobs: int, cwd: Path, timeout: float | None = None,
                  script: str = REFERENCE) -> dict[str, Any]:
    """GridSearchCV per model type in a fresh process; ``{"timeout": s}`` if capped.

    ``script`` is another reference with the same argv and output (bench/_strategies.py's:
    RandomizedSearchCV, HalvingGridSearchCV)."""
    code, out, err, wall = _run_group([sys.executable, "-c", script, str(workload),
                                       str(n_jobs)], cwd, timeout)
    if code is None:
        return {"timeout": timeout, "n_jobs": n_jobs}
    if code != 0:
        raise SystemExit(f"bench.run: reference (n_jobs={n_jobs}) failed:\n{err[-3000:]}")
    res: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    res.update(n_jobs=n_jobs, process_seconds=wall, other_load=last_other_load,
               search_seconds=sum(m["fit_seconds"] for m in res["models"].values()),
               work_seconds=sum(m["work_seconds"] for m in res["models"].values()))
    res["efficiency"] = res["work_seconds"] / (res["search_seconds"] * n_jobs)
    return res


def run_searchd(job_file: Path, workdir: Path, n_jobs: int,
                timeout: float = 3600.0) -> dict[str, Any]:
    """``searchd run --drain --ignore-load`` on fresh jobs/ and state/ folders."""
    import shutil

    import numpy as np

    import searchd

    jobs, state = workdir / "jobs", workdir / "state"
    shutil.rmtree(workdir, ignore_errors=True)
    jobs.mkdir(parents=True)
    shutil.copyfile(job_file, jobs / job_file.name)
    job_id = job_file.stem
    flush_log = workdir / "flushes.jsonl"
    env = clean_env()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(INJECT), env.get("PYTHONPATH")]))
    env["SEARCHD_BENCH_FLUSH_LOG"] = str(flush_log)
    cmd = [sys.executable, "-m", "searchd", "run", "--drain", "--ignore-load",
           "--state", str(state), "--jobs", str(jobs), "--n-jobs", str(n_jobs)]
    code, _out, err, wall = _run_group(cmd, workdir, timeout, env)
    summary_file = state / job_id / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else {}
    if code != 0 or summary.get("state") != "done":
        raise SystemExit(f"bench.run: searchd exited {code} (job state "
                         f"{summary.get('state')!r}, error {summary.get('error')!r}):\n"
                         f"{err[-3000:]}")
    res = searchd.load_results(job_id, state)
    work = 0.0
    for name in res.models:
        cvr = res.models[name].cv_results_
        folds = sum(1 for k in cvr if k.startswith("split") and k.endswith("_test_score"))
        work += float(np.sum(cvr["mean_fit_time"] + cvr["mean_score_time"]) * folds)
    flushes = [json.loads(line) for line in flush_log.read_text().splitlines()] \
        if flush_log.exists() else []
    search = summary["finished_at"] - summary["first_task_at"]
    # the worker's last "<type> done" log line: what follows it until finished_at is the
    # final report.html (searchd/worker/reporting.py) and the worker's exit
    from bench.overhead import _log_time
    done_at = [t for line in err.splitlines() if f"searchd.worker: {job_id}: " in line
               and " done: " in line and (t := _log_time(line)) is not None]
    tail = summary["finished_at"] - max(done_at) if done_at else None
    # the processes that fitted: 1 when the job was small enough for the worker alone (it
    # then never started joblib's pool and left the other cores free), else n_jobs
    procs = summary.get("processes") or n_jobs
    in_search = [f for f in flushes
                 if summary["first_task_at"] <= f["at"] <= summary["finished_at"]]
    return {"process_seconds": wall, "search_seconds": search, "other_load": last_other_load,
            "start_seconds": summary["first_task_at"] - summary["started_at"],
            "fits_computed": summary.get("fits_computed"),
            "fits_total": summary.get("fits_total"),
            "work_seconds": work, "efficiency": work / (search * procs), "processes": procs,
            "flushes": flushes,
            "flush_seconds": sum(f["seconds"] for f in in_search),
            "flush_share": sum(f["seconds"] for f in in_search) / search,
            "after_last_done_seconds": tail,
            "state_dir": state, "job_id": job_id}
