"""How big the report gets and how long it takes to write (issue 16's limits).

Run from the repository root::

    python -m bench.report [--repeats N] [--keep] [--reuse DIR]

It runs two real jobs once with ``python -m searchd run --drain`` on a temporary folder
(iris, 2 folds; ~1-2 min on 2 busy cores), adds a day of timeline (one point every 5 s,
with pauses), then writes each job's report:

- ``1k``: one model type, 1,000 candidates (a tree over max_depth × min_samples_leaf:
  a 20 × 50 heatmap);
- ``10k``: 10,000 candidates in two types (knn over four parameters, 8,000; the tree over
  40 × 50, 2,000).

Figures: the page's size, ``write_report`` in a process that has written one report
already (the daemon's case: imports loaded), and ``searchd report`` as a command (a
fresh interpreter: imports, reading the checkpoint, plots, the atomic write), each the
median of ``--repeats`` (default 5). Limits: at most ~1 MB for 1,000 candidates, and
``write_report`` under 2 s for 10,000 candidates (the command's figure adds the
interpreter's imports, ~2 s on a busy 2-core machine: it is printed, not judged). Exits 1
if a job fails; a missed limit is reported, not fatal.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sklearn

from searchd.report import write_report
from searchd.report.timeline import append_timeline

JOBS = {
    "1k": """
[data]
source = "sklearn:iris"
test_size = 0.2
[search]
cv = 2
[models.tree]
estimator = "DecisionTreeClassifier"
params = { random_state = 0 }
grid = { max_depth = { range = [1, 21] }, min_samples_leaf = { range = [1, 51] } }
""",
    "10k": """
[data]
source = "sklearn:iris"
test_size = 0.2
[search]
cv = 2
[models.knn]
estimator = "KNeighborsClassifier"
[models.knn.grid]
n_neighbors = { range = [1, 41] }
weights = ["uniform", "distance"]
p = [1, 2]
leaf_size = { range = [10, 510, 10] }
[models.tree]
estimator = "DecisionTreeClassifier"
params = { random_state = 0 }
grid = { max_depth = { range = [1, 41] }, min_samples_leaf = { range = [1, 51] } }
""",
}
CANDIDATES = {"1k": 1_000, "10k": 10_000}
LIMIT_BYTES_1K = 1_000_000
LIMIT_SECONDS_10K = 2.0


def build(root: Path) -> Path:
    jobs, state = root / "jobs", root / "state"
    jobs.mkdir()
    for name, text in JOBS.items():
        (jobs / f"{name}.toml").write_text(text)
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "searchd", "run", "--drain", "--ignore-load",
                          "--state", str(state), "--jobs", str(jobs)],
                         capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        print(out.stderr[-3000:], file=sys.stderr)
        raise SystemExit(1)
    print(f"jobs run in {time.perf_counter() - t0:.0f} s")
    for name in JOBS:  # a day at one point every 5 s, paused 10 % of the time
        t, fits = 1_800_000_000.0, 0
        for i in range(17_280):
            paused = "other load 60% > 25%" if i % 1000 >= 900 else None
            fits += 0 if paused else 1
            append_timeline(state / name, t + 5 * i, fits, paused)
    return state


def time_in_process(state: Path, job: str, out: Path, repeats: int) -> list[float]:
    write_report(state, job, out)  # imports and font cache: the daemon pays them once
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        write_report(state, job, out)
        times.append(time.perf_counter() - t0)
    return times


def time_command(state: Path, job: str, out: Path, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "searchd", "report", job, "--state", str(state),
                        "-o", str(out)], check=True, capture_output=True, timeout=120)
        times.append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument("--reuse", type=Path, metavar="DIR",
                    help="time the jobs of a folder kept by --keep (no new runs)")
    args = ap.parse_args(argv)
    root = args.reuse or Path(tempfile.mkdtemp(prefix="bench-report-"))
    try:
        import matplotlib
        print(f"scikit-learn {sklearn.__version__}, matplotlib {matplotlib.__version__}, "
              f"python {sys.version.split()[0]}")
        state = root / "state" if args.reuse else build(root)
        print(f"{'job':>4} {'candidates':>10} {'bytes':>10} {'write_report (s)':>17} "
              f"{'searchd report (s)':>19}   medians of {args.repeats}")
        ok = True
        for job in JOBS:
            out = root / f"{job}.html"
            warm = statistics.median(time_in_process(state, job, out, args.repeats))
            size = out.stat().st_size
            cold = statistics.median(time_command(state, job, out, args.repeats))
            print(f"{job:>4} {CANDIDATES[job]:>10,} {size:>10,} {warm:>17.2f} {cold:>19.2f}")
            if job == "1k" and size > LIMIT_BYTES_1K:
                print(f"  over the size limit ({LIMIT_BYTES_1K:,} bytes)")
                ok = False
            if job == "10k" and warm > LIMIT_SECONDS_10K:
                print(f"  write_report is over the time limit ({LIMIT_SECONDS_10K} s)")
                ok = False
        print("limits: " + ("PASS" if ok else "FAIL") + f" (1k ≤ {LIMIT_BYTES_1K:,} bytes, "
              f"10k written in ≤ {LIMIT_SECONDS_10K} s)")
        if args.keep:
            print(f"kept: {root}")
        return 0
    finally:
        if not args.keep and not args.reuse:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
