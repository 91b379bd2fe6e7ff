"""Where a searchd worker's start goes.

Diagnostic for figures 1 (tiny) and 2 (time to first fit); not part of bench.run::

    python -m bench._startup [--job FILE] [--n-jobs N]     # default: the tiny workload

It replays the worker's steps in one process with searchd's own functions and prints the
time of each: imports, ``check_model``, data, candidates, then
``searchd.worker.local_runner.LocalRunner.stream`` over every task (first result and end). Run it a
few times: the machine is noisy.
"""

from __future__ import annotations

import os
import sys
import time

T0 = time.perf_counter()


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m bench._startup")
    ap.add_argument("--job", help="job file (default: the tiny workload)")
    ap.add_argument("--n-jobs", type=int, default=2)
    args = ap.parse_args()
    laps: list[tuple[str, float]] = []
    t = [time.perf_counter()]

    def lap(what: str) -> None:
        now = time.perf_counter()
        laps.append((what, now - t[0]))
        t[0] = now

    import tempfile
    from pathlib import Path

    import searchd.worker.main  # noqa: F401 - the worker's own imports (scikit-learn, scipy)
    lap("import searchd.worker.main")
    from searchd.jobs.load import load_job
    from searchd.worker.data import load_dataset
    from searchd.worker.estimators import build_candidate, check_model, is_classification
    from searchd.worker.evaluate import Task
    from searchd.worker.local_runner import LocalRunner
    from searchd.worker.plan import Scoring, candidates, splits

    if args.job:
        job_path = Path(args.job)
    else:
        from bench._workloads import TINY
        job_path = TINY.write(Path(tempfile.mkdtemp(prefix="searchd-bench-startup-")), False)
    job = load_job(job_path, 100_000)
    model = job.models[0]
    template = check_model(job, model, ())
    lap("check_model")
    clf = is_classification(job, ())
    data = load_dataset(job, clf)
    cv = splits(job, data.X_train, data.y_train, clf)
    built = [build_candidate(c, job, (), "bench") for c in candidates(model)]
    tasks = [Task(i, f, p) for i, p in enumerate(built) for f in range(len(cv))]
    lap("data, splits, candidates")
    dispatch = time.perf_counter()
    first = None
    runner = LocalRunner(args.n_jobs, data.X_train, data.y_train, cv)
    for _ in runner.stream(template, tasks, Scoring(job, template), count=len(tasks)):
        first = first or time.perf_counter()
    end = time.perf_counter()
    runner.close()
    assert first is not None
    for what, s in laps:
        print(f"{what:<32} {s:6.2f} s")
    print(f"{'dispatch -> first result':<32} {first - dispatch:6.2f} s")
    print(f"{'search (dispatch -> end)':<32} {end - dispatch:6.2f} s   ({len(tasks)} tasks)")
    print(f"{'process start -> first result':<32} {first - T0:6.2f} s")
    print(f"{'process start -> end':<32} {end - T0:6.2f} s   (load {os.getloadavg()[0]:.1f}, "
          f"pool {'used' if runner.ready.is_set() else 'not up in time'})")


if __name__ == "__main__":
    main()
    sys.exit(0)
