"""Figures that need a long-running daemon: time to first fit, kill waste, footprint.

Each starts ``python -m searchd run`` on temporary jobs/ and state/ folders, in a session
of its own (``start_new_session=True``), so that ``os.killpg`` reaches the daemon's whole
process group. The daemon's worker has a session of its own and dies with the daemon
(PR_SET_PDEATHSIG); a restarted daemon ends whatever a killed one left.
"""

from __future__ import annotations

import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from bench.overhead import clean_env


class Daemon:
    """``searchd run`` (without --drain) on ``root/jobs`` and ``root/state``."""

    def __init__(self, root: Path, *flags: str) -> None:
        self.root, self.jobs, self.state = root, root / "jobs", root / "state"
        self.jobs.mkdir(parents=True, exist_ok=True)
        self.flags = flags
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        env = clean_env()
        with open(self.root / "daemon.log", "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "searchd", "run", "--ignore-load", "--state",
                 str(self.state), "--jobs", str(self.jobs), *self.flags],
                cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def submit(self, name: str, text: str) -> float:
        """Write a job file atomically; returns the epoch time it appeared in jobs/."""
        tmp = self.jobs / f"{name}.partial"  # no job suffix: the daemon ignores it
        tmp.write_text(text)
        t = time.time()
        os.replace(tmp, self.jobs / f"{name}.toml")
        return t

    def summary(self, job: str) -> dict[str, Any]:
        try:
            return dict(json.loads((self.state / job / "summary.json").read_text()))
        except (FileNotFoundError, ValueError):
            return {}

    def fits_logged(self, job: str) -> int:
        try:
            return (self.state / job / "fits.log").stat().st_size
        except FileNotFoundError:
            return 0

    def kill(self) -> None:
        """kill -9 of the daemon's process group, then wait until its worker is gone too."""
        assert self.proc is not None
        kids = []
        try:
            kids = psutil.Process(self.pid).children(recursive=True)
        except psutil.Error:
            pass
        os.killpg(self.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        psutil.wait_procs(kids, timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


def wait_until(cond: Callable[[], Any], timeout: float, poll: float = 0.01) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(poll)
    return None


# --- (2) time to first fit ---------------------------------------------------------------------

def first_fit(root: Path, job_text: str, trials: int) -> list[dict[str, float]]:
    """Job file written into a running daemon's jobs/ → first fit started / finished."""
    d = Daemon(root, "--n-jobs", "2")
    out = []
    try:
        time.sleep(3.0)  # the daemon is up and idle
        for k in range(trials):
            name = f"first{k}"
            time.sleep(random.uniform(0.0, 2.0))  # a random phase of its 2-second scan
            t0 = d.submit(name, job_text)
            t_fit = wait_until(lambda: d.fits_logged(name) > 0 and time.time(),  # noqa: B023
                               120)
            s = wait_until(lambda: d.summary(name).get("first_task_at")  # noqa: B023
                           and d.summary(name), 60)  # noqa: B023
            if not t_fit or not s:
                raise SystemExit(f"bench.run: first-fit trial {k}: the job did not start; see "
                                 f"{root / 'daemon.log'}")
            out.append({"spawn": s["started_at"] - t0, "dispatch": s["first_task_at"] - t0,
                        "first_fit_done": t_fit - t0,
                        "worker_start": s["first_task_at"] - s["started_at"]})
            wait_until(lambda: d.summary(name).get("state") == "done", 120, 0.1)  # noqa: B023
    finally:
        d.stop()
    return out


# --- (5) kill waste ----------------------------------------------------------------------------

def _stored(state: Path, job: str) -> int:
    """Results in the job's checkpoint now (base + deltas), read as a restart would."""
    from searchd.state.checkpoint import read_results
    from searchd.state.signing import load_key
    from searchd.state.store import CheckpointStore

    store = CheckpointStore(state / job, load_key(state), job)
    snap, _ = read_results(store)
    return 0 if snap is None else sum(m.fits_done for m in snap.models.values())


#: the kill allowance's work: the fits of this many seconds before the kill
KILL_WINDOW = 5.0


def kill_waste(root: Path, job_text: str, kills: int, n_jobs: int = 2,
               max_delay: float = 10.0) -> dict[str, Any]:
    """``kills`` times: kill -9 the daemon's group at a random moment, restart it.

    A kill comes a random 0..max_delay s after the restarted worker's first fit. Per kill,
    lost = growth of (fits.log size - results in the checkpoint). When the job finishes
    before the last kill, a fresh copy is submitted. At the end the daemon drains every
    copy and ``fits_computed - fits_total`` is summed over them.
    """
    d = Daemon(root, "--n-jobs", str(n_jobs))
    jobs = ["killme0"]
    per_kill: list[dict[str, float]] = []
    lost_before = 0
    d.submit(jobs[-1], job_text)
    try:
        while len(per_kill) < kills:
            job = jobs[-1]
            logged0 = d.fits_logged(job)
            t_first = wait_until(
                lambda: d.fits_logged(job) > logged0 and time.monotonic(), 180)  # noqa: B023
            if not t_first:
                raise SystemExit(f"bench.run: kill trial: no progress; see {root}/daemon.log")
            n0 = d.fits_logged(job)
            # fits logged over time, for the rate just before the kill: the session's
            # average would include the worker fitting alone before joblib's pool is up
            seen = [(time.monotonic(), n0)]
            until = time.monotonic() + random.uniform(0.0, max_delay)
            while time.monotonic() < until:
                time.sleep(min(0.05, max(0.0, until - time.monotonic())))
                seen.append((time.monotonic(), d.fits_logged(job)))
            if d.summary(job).get("state") == "done":
                jobs.append(f"killme{len(jobs)}")
                lost_before = 0
                d.submit(jobs[-1], job_text)
                continue
            n1 = d.fits_logged(job)
            t_kill = time.monotonic()
            d.kill()
            lost = d.fits_logged(job) - _stored(d.state, job)
            t_from, n_from = next(((t, n) for t, n in seen if t >= t_kill - KILL_WINDOW),
                                  seen[-1])
            recent = (n1 - n_from) / (t_kill - t_from) if t_kill - t_from >= 1.0 else 0.0
            per_kill.append({"after_s": t_kill - t_first, "lost": lost - lost_before,
                             "rate": max((n1 - n0) / max(t_kill - t_first, 1e-9), recent)})
            lost_before = lost
            d.start()
        d.stop()
        d.proc = subprocess.Popen(  # finish every copy: the final counts
            [sys.executable, "-m", "searchd", "run", "--drain", "--ignore-load", "--state",
             str(d.state), "--jobs", str(d.jobs), "--n-jobs", str(n_jobs)], cwd=root,
            env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL, start_new_session=True)
        d.proc.wait(timeout=1800)
        summaries = [d.summary(j) for j in jobs]
    finally:
        d.stop()
    return {"kills": per_kill, "jobs": len(jobs),
            "fits_total": sum(s.get("fits_total", 0) for s in summaries),
            "fits_computed": sum(s.get("fits_computed", 0) for s in summaries),
            "state": "done" if all(s.get("state") == "done" for s in summaries) else "not done",
            "n_jobs": n_jobs}


# --- (7) supervisor footprint ------------------------------------------------------------------

def _measure(d: Daemon, window: float, job: str | None) -> dict[str, float]:
    ps = psutil.Process(d.pid)
    rss, worker_rss, tree_rss = [], [], []
    c0, t0 = ps.cpu_times(), time.monotonic()
    while time.monotonic() - t0 < window:
        time.sleep(1.0)
        rss.append(ps.memory_info().rss)
        if job is not None:
            own = tree = 0
            for p in ps.children(recursive=True):
                try:
                    r = p.memory_info().rss
                    tree += r
                    own += r if p.ppid() == d.pid else 0
                except psutil.Error:
                    continue
            worker_rss.append(own)
            tree_rss.append(tree)
    c1, elapsed = ps.cpu_times(), time.monotonic() - t0
    out = {"cpu_pct": 100 * (c1.user + c1.system - c0.user - c0.system) / elapsed,
           "rss_mb": max(rss) / 2**20, "seconds": elapsed}
    if job is not None:
        out.update(worker_rss_mb=max(worker_rss) / 2**20, tree_rss_mb=max(tree_rss) / 2**20)
    return out


def footprint(root: Path, job_text: str, window: float) -> dict[str, Any]:
    """The supervisor process alone (children excluded): idle, then while a job runs."""
    d = Daemon(root, "--n-jobs", "2")
    try:
        time.sleep(3.0)  # start-up (imports, first scan) is not steady state
        idle = _measure(d, window, None)
        d.submit("long", job_text)
        if not wait_until(lambda: d.fits_logged("long") > 0, 120, 0.2):
            raise SystemExit(f"bench.run: footprint: the job did not start; see {root}")
        busy = _measure(d, window, "long")
    finally:
        d.stop()
    return {"idle": idle, "busy": busy}


# --- (6) pause and resume latency, from bench.idle ---------------------------------------------

def idle_latency(root: Path, trials: int, timeout: float) -> dict[str, Any]:
    """Runs ``python -m bench.idle --trials N --skip-supervisor --json FILE``, if it works."""
    out = root / "idle.json"
    cmd = [sys.executable, "-m", "bench.idle", "--trials", str(trials), "--skip-supervisor",
           "--json", str(out)]
    repo = Path(__file__).resolve().parent.parent
    p = subprocess.Popen(cmd, cwd=repo, env=clean_env(), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                         start_new_session=True)
    try:
        text, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        return {"skipped": f"python -m bench.idle did not finish within {timeout:.0f} s"}
    if not out.exists():
        return {"skipped": f"python -m bench.idle exited {p.returncode} without figures: "
                f"{text.strip().splitlines()[-1] if text.strip() else ''}"}
    report: dict[str, Any] = json.loads(out.read_text())
    report["cmd"] = " ".join(["python", *cmd[1:-2]])
    pauses = [t["pause"] for t in report.get("trials", []) if t.get("pause") is not None]
    if pauses:
        report.setdefault("pause_latency", {"median": statistics.median(pauses)})
    return report
