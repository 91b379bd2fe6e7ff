"""How fast searchd gets out of the way, and what its supervisor costs.

Run from the repository root::

    python -m bench.idle [--trials N] [--window S] [--sample-interval S] [--resume-after S]

Three phases, each with a real daemon (``python -m searchd run``) on a temporary folder:

1. **Supervisor, idle**: no jobs, for ``--window`` seconds (default 30): the supervisor's own
   CPU time (``psutil`` ``cpu_times`` user + system of that one process, children excluded)
   as a percentage of one core, and its RSS.
2. **Supervisor, a job running**: the same, while a job runs on every core
   (``--ignore-load`` here so that other programs cannot pause it; the supervisor samples
   the load and runs the gate all the same), plus the worker's RSS (its own, and the whole
   tree's with joblib's processes).
3. **Latency**, ``--trials`` times (default 20) with the load rule on: start one Python busy
   loop per core (children of this script, not of searchd) at a random phase of the
   daemon's sampling clock; *pause latency* = load start → every process of the worker
   tree (joblib's resource tracker aside) has ``psutil`` status ``stopped``. Then end the
   load; *resume latency* = load end → the tree runs again, minus ``resume_after``.
   On a shared machine: a trial starts only if other programs used under 10 % of the CPUs
   in the 1.5-2.5 s before it (else it is repeated), and a trial in which the daemon
   reported busy samples after our load ended is left out of the resume figures.

Targets (issue 3): pause p95 ≤ 2 s; supervisor ≤ 0.5 % of one core and ≤ 60 MB RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from searchd.supervisor.load import LoadSampler

NCPU = os.cpu_count() or 1
TARGET_PAUSE_P95 = 2.0
TARGET_CPU_PCT = 0.5
TARGET_RSS_MB = 60.0
#: other programs' load (share of all CPUs) below which a trial may start
QUIET = 0.10

# Thousands of SVC fits: never finished within a run of this benchmark.
LONG_JOB = """
[data]
source = "sklearn:digits"

[search]
cv = 5

[[preprocess]]
name = "scale"
estimator = "StandardScaler"

[models.svc]
estimator = "SVC"
grid = { C = { logspace = [-2, 3, 80] }, gamma = { logspace = [-4, -1, 10] } }
"""


# --- processes -------------------------------------------------------------------------------

class Daemon:
    """``searchd run`` on a private jobs/ and state/, logging to a file."""

    def __init__(self, root: Path, name: str, *flags: str) -> None:
        self.root, self.jobs, self.state = root, root / "jobs", root / "state"
        self.jobs.mkdir(parents=True, exist_ok=True)
        self.logfile = root / f"{name}.log"
        with open(self.logfile, "ab") as logf:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "searchd", "run", "--state", str(self.state),
                 "--jobs", str(self.jobs), *flags],
                stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        self.ps = psutil.Process(self.proc.pid)

    def summary(self, job: str) -> dict[str, Any]:
        try:
            return dict(json.loads((self.state / job / "summary.json").read_text()))
        except (FileNotFoundError, ValueError):
            return {}

    def tree(self) -> list[psutil.Process]:
        """The worker and its descendants, joblib's resource tracker aside."""
        try:
            procs = self.ps.children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        out = []
        for p in procs:
            try:
                if not any("resource_tracker" in part for part in p.cmdline()):
                    out.append(p)
            except psutil.Error:
                continue
        return out

    def statuses(self) -> list[str]:
        out = []
        for p in self.tree():
            try:
                st = p.status()
            except psutil.Error:
                continue
            if st != psutil.STATUS_ZOMBIE:
                out.append(st)
        return out

    def all_stopped(self) -> bool:
        st = self.statuses()
        return bool(st) and all(s == psutil.STATUS_STOPPED for s in st)

    def none_stopped(self) -> bool:
        st = self.statuses()
        return bool(st) and all(s != psutil.STATUS_STOPPED for s in st)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


def start_load() -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"],
                             stdin=subprocess.DEVNULL, start_new_session=True)
            for _ in range(NCPU)]


def stop_load(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
    for p in procs:
        p.wait(timeout=10)


def wait_until(cond: Callable[[], bool], timeout: float, poll: float = 0.01) -> float | None:
    deadline = time.monotonic() + timeout
    while True:
        if cond():
            return time.monotonic()
        if time.monotonic() > deadline:
            return None
        time.sleep(poll)


def machine_busy() -> float:
    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0)
                 - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0))


# --- phases ----------------------------------------------------------------------------------

def measure(d: Daemon, window: float, job: str | None) -> dict[str, Any]:
    """The supervisor's CPU and RSS over ``window`` seconds (and the worker's, with a job)."""
    sup_rss, worker_rss, tree_rss = [], [], []
    paused = 0
    c0, b0, t0 = d.ps.cpu_times(), machine_busy(), time.monotonic()
    while time.monotonic() - t0 < window:
        time.sleep(1.0)
        sup_rss.append(d.ps.memory_info().rss)
        if job is not None:
            paused += d.summary(job).get("state") != "running"
            kids = d.ps.children(recursive=True)
            rss = {}
            for p in kids:
                try:
                    rss[p.pid] = (p.ppid(), p.memory_info().rss)
                except psutil.Error:
                    continue
            worker_rss.append(sum(r for pp, r in rss.values() if pp == d.ps.pid))
            tree_rss.append(sum(r for _, r in rss.values()))
    c1, b1, t1 = d.ps.cpu_times(), machine_busy(), time.monotonic()
    elapsed = t1 - t0
    cpu = (c1.user + c1.system - c0.user - c0.system) / elapsed * 100
    out: dict[str, Any] = {
        "seconds": round(elapsed, 1), "cpu_pct_one_core": round(cpu, 3),
        "rss_mb_max": round(max(sup_rss) / 2**20, 1),
        "rss_mb_mean": round(statistics.fmean(sup_rss) / 2**20, 1),
        "machine_busy_pct": round((b1 - b0) / (elapsed * NCPU) * 100, 1)}
    if job is not None:
        out.update(worker_rss_mb_max=round(max(worker_rss) / 2**20, 1),
                   worker_tree_rss_mb_max=round(max(tree_rss) / 2**20, 1),
                   samples_not_running=paused)
    return out


def supervisor_phases(root: Path, window: float) -> dict[str, Any]:
    d = Daemon(root / "supervisor", "daemon", "--ignore-load", "--n-jobs", "-1")
    try:
        time.sleep(3.0)  # imports and the first scan are start-up, not steady state
        print(f"supervisor, no jobs, {window:.0f} s ...", flush=True)
        idle = measure(d, window, None)
        (d.jobs / "long.toml").write_text(LONG_JOB)
        if wait_until(lambda: len(d.tree()) >= 2 and d.summary("long").get("fits_done", 0) > 0,
                      120, 0.2) is None:
            raise SystemExit(f"the job did not start; see {d.logfile}")
        print(f"supervisor, a job on {NCPU} cores, {window:.0f} s ...", flush=True)
        busy = measure(d, window, "long")
        return {"idle": idle, "busy": busy}
    finally:
        d.stop()


class MachineBusy(Exception):
    """Other programs kept the machine busy too long for a trial."""


def one_trial(d: Daemon, name: str, sample_interval: float,
              resume_after: float) -> dict[str, Any] | None:
    """One pause and resume; None if other programs paused the job just before our load."""
    def running() -> bool:
        return d.summary(name).get("state") == "running" and d.none_stopped() \
            and len(d.statuses()) >= 2
    if wait_until(running, 600, 0.1) is None:
        raise MachineBusy(f"the job did not run for 10 minutes; see {d.logfile}")
    # Other programs' load just before ours would shorten the pause: measure it as searchd
    # does (the daemon's tree is own; this script counts as other) and start only on quiet.
    others = LoadSampler(own_root_pid=d.proc.pid)
    others.sample()
    time.sleep(1.5 + random.uniform(0.0, sample_interval))  # a random phase of the sampling
    if others.sample().other_load > QUIET or not running():
        return None
    load = start_load()
    try:
        t0 = time.monotonic()
        t_stop = wait_until(d.all_stopped, 30)
        time.sleep(1.0)
    finally:
        stop_load(load)
    t_end, end_epoch = time.monotonic(), time.time()
    quiet_from = end_epoch
    # a sample ending within one interval (plus a tick) of our load's end still holds some of it
    ours_until = end_epoch + sample_interval + 0.3

    def resumed() -> bool:
        nonlocal quiet_from
        s = d.summary(name)
        at = s.get("updated_at", 0)
        if " > " in (s.get("paused_reason") or "") and at > max(quiet_from, ours_until):
            quiet_from = at  # another program kept the machine busy
        return d.none_stopped()
    t_run = wait_until(resumed, 300)
    return {"pause": None if t_stop is None else round(t_stop - t0, 3),
            "resume": None if t_run is None else
            round(t_run - t_end - (quiet_from - end_epoch) - resume_after, 3),
            "disturbed": quiet_from > end_epoch}


def latency_trials(root: Path, trials: int, sample_interval: float, resume_after: float,
                   out: list[dict[str, Any]]) -> None:
    """Appends each trial to ``out`` as it ends, so that a busy machine keeps what it got."""
    d = Daemon(root / f"latency-{sample_interval:g}", "daemon", "--n-jobs", "-1",
               "--sample-interval", str(sample_interval), "--resume-after", str(resume_after),
               "--max-suspend", "0", "--min-free-memory", "0")
    job = 0
    try:
        while len(out) < trials:
            name = f"long{job}"
            if not (d.jobs / f"{name}.toml").exists():
                (d.jobs / f"{name}.toml").write_text(LONG_JOB)
            if d.summary(name).get("state") == "done":  # a fast machine: a fresh job
                job += 1
                continue
            trial = one_trial(d, name, sample_interval, resume_after)
            if trial is None:
                print("  (other programs were busy just before our load; trial repeated)",
                      flush=True)
                continue
            out.append(trial)
            print(f"  trial {len(out):>2}: pause {trial['pause']}s, resume {trial['resume']}s "
                  f"past resume_after"
                  f"{' (others were busy after our load)' if trial['disturbed'] else ''}",
                  flush=True)
    finally:
        d.stop()


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q / 100 * len(s) + 0.5)) - 1))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.idle", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=20, help="latency trials (default 20)")
    ap.add_argument("--window", type=float, default=30.0,
                    help="seconds of each supervisor measurement (default 30)")
    ap.add_argument("--sample-interval", type=float, default=1.0,
                    help="the daemon's --sample-interval for the trials (default 1, its default)")
    ap.add_argument("--resume-after", type=float, default=3.0,
                    help="the daemon's --resume-after for the trials (default 3; it is "
                    "subtracted from the resume latency)")
    ap.add_argument("--skip-supervisor", action="store_true", help="latency trials only")
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args(argv)
    if args.trials < 1:
        ap.error("--trials must be at least 1")

    import sklearn
    print(f"searchd idle benchmark: {NCPU} CPUs, Python {platform.python_version()}, "
          f"scikit-learn {sklearn.__version__}, psutil {psutil.__version__}")
    print(f"load average now: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    tmp = Path(tempfile.mkdtemp(prefix="searchd-bench-idle-"))
    report: dict[str, Any] = {"cpus": NCPU, "sample_interval": args.sample_interval,
                              "resume_after": args.resume_after}
    try:
        if not args.skip_supervisor:
            report["supervisor"] = supervisor_phases(tmp, args.window)
        print(f"latency: {args.trials} trials, sample_interval {args.sample_interval:g} s, "
              f"pause_after 2 (default), resume_after {args.resume_after:g} s", flush=True)
        trials: list[dict[str, Any]] = []
        report["trials"] = trials
        try:
            latency_trials(tmp, args.trials, args.sample_interval, args.resume_after, trials)
        except MachineBusy as e:
            print(f"stopped after {len(trials)} trial(s): {e}")
            report["incomplete"] = str(e)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    print()
    ok = "incomplete" not in report
    pauses = [t["pause"] for t in trials if t["pause"] is not None]
    resumes = [t["resume"] for t in trials if t["resume"] is not None and not t["disturbed"]]
    missed = len(trials) - len(pauses)
    if pauses:
        p50, p95 = statistics.median(pauses), pct(pauses, 95)
        report["pause_latency"] = {"median": p50, "p95": p95, "max": max(pauses),
                                   "missed": missed}
        ok &= p95 <= TARGET_PAUSE_P95 and not missed
        print(f"pause latency   median {p50:.2f} s  p95 {p95:.2f} s  max {max(pauses):.2f} s"
              f"  (target p95 <= {TARGET_PAUSE_P95:g} s){f'; {missed} missed' if missed else ''}")
    if resumes:
        r50, r95 = statistics.median(resumes), pct(resumes, 95)
        report["resume_latency"] = {"median": r50, "p95": r95, "max": max(resumes),
                                    "disturbed": sum(t["disturbed"] for t in trials)}
        print(f"resume latency  median {r50:.2f} s  p95 {r95:.2f} s  max {max(resumes):.2f} s"
              f"  past resume_after (over {len(resumes)} trial(s); "
              f"{report['resume_latency']['disturbed']} disturbed by other programs left out)")
    sup = report.get("supervisor")
    if sup:
        for phase in ("idle", "busy"):
            m = sup[phase]
            ok &= m["cpu_pct_one_core"] <= TARGET_CPU_PCT and m["rss_mb_max"] <= TARGET_RSS_MB
            print(f"supervisor {phase:<4}  CPU {m['cpu_pct_one_core']:.3f} % of one core  "
                  f"RSS max {m['rss_mb_max']:.1f} MB (mean {m['rss_mb_mean']:.1f})  "
                  f"[machine busy {m['machine_busy_pct']:.0f} %]")
        b = sup["busy"]
        print(f"worker          RSS max {b['worker_rss_mb_max']:.1f} MB; with joblib's "
              f"processes {b['worker_tree_rss_mb_max']:.1f} MB")
        print(f"targets: supervisor <= {TARGET_CPU_PCT:g} % of one core, "
              f"<= {TARGET_RSS_MB:g} MB RSS")
    print("all targets met" if ok else "a target was missed")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
