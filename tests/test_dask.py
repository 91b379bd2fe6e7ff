"""Running a job's fits on a Dask cluster: same scores, worker and daemon crashes, bad setups.

Each test that needs a cluster starts its own ``LocalCluster`` (two single-threaded workers:
threads of the test process, or processes where one is killed) and points
``searchd run --dask`` at its scheduler.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import distributed  # the `test` extra installs it: these tests must run, not skip
import psutil
import pytest
from conftest import REPO, Env, fits_logged
from faultinject.fitpace import paced
from reference import assert_same_as_gridsearch

import searchd
from searchd import lifeline as guard
from searchd.state.read import load_results
from searchd.worker import evaluate as evaluate_module

JOB = """
[data]
source = "sklearn:iris"

[search]
cv = 4
backend = "dask"

[[preprocess]]
name = "scale"
estimator = "StandardScaler"

[models.svc]
estimator = "SVC"
grid = { C = { logspace = [-1, 2, 5] }, gamma = { logspace = [-4, -2, 3] } }

[models.knn]
estimator = "KNeighborsClassifier"
grid = { n_neighbors = [1, 3, 5] }
"""
FITS = (15 + 3) * 4
#: seconds each fit on the cluster waits first while a test needs the job running (iris fits
#: take milliseconds); the test writes 0 once its kill is done
PACE = 0.25
UNREACHABLE = "tcp://127.0.0.1:1"
EXTRA_HINT = "pip install 'searchd[dask]'"


@pytest.fixture
def pace(env: Env, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A file holding the seconds each fit on the cluster waits first (tests/faultinject):
    the cluster's processes started after this (their environment) and its threads in this
    process (patched here) read it at each fit. Write 0 to let the job finish."""
    f = env.root / "pace"
    f.write_text(str(PACE))
    monkeypatch.setenv("PYTHONPATH", str(REPO / "tests" / "faultinject"))
    monkeypatch.setenv("SEARCHD_TEST_FIT_PACE", str(f))
    monkeypatch.setattr(evaluate_module, "evaluate", paced(evaluate_module.evaluate, str(f)))
    return f


@contextlib.contextmanager
def _local_cluster(processes: bool) -> Iterator[tuple[Any, Any]]:
    kw: dict[str, Any] = {} if processes else {"protocol": "tcp://"}
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=processes,
                                  dashboard_address=None, **kw) as lc, \
            distributed.Client(lc, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=60)
        yield lc, client


@pytest.fixture
def cluster(pace: Path) -> Iterator[tuple[Any, Any]]:
    """A LocalCluster of 2 single-threaded workers in the test's process, on TCP, and a
    client to inspect it. The searchd worker is a process of its own: its data and tasks
    travel to the cluster serialised, as to remote machines. Worker processes would each
    import Dask and scikit-learn again (~7 s of CPU per test on 2 cores)."""
    with _local_cluster(processes=False) as c:
        yield c


@pytest.fixture
def process_cluster(pace: Path) -> Iterator[tuple[Any, Any]]:
    """A LocalCluster of 2 single-threaded worker processes (each with a nanny that restarts
    it), for the test that kills one."""
    with _local_cluster(processes=True) as c:
        yield c


def _status(env: Env) -> dict[str, Any]:
    [rec] = json.loads(env.cli("status", "--json", check=True).stdout)
    return rec  # type: ignore[no-any-return]


def _check_results(env: Env, job: str) -> None:
    rec = _status(env)
    assert rec["state"] == "done" and rec["backend"] == "dask", rec
    assert rec["fits_done"] == rec["fits_total"] == FITS
    results = searchd.load_results(job, env.state)
    assert assert_same_as_gridsearch(results, env.state / job / "job.toml") == FITS
    assert env.cli("verify").returncode == 0


def _single_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("searchd: error: "), stderr
    return lines[0]


@pytest.mark.timeout(300)
def test_cluster_scores_equal_gridsearch(env: Env, cluster: tuple[Any, Any],
                                         pace: Path) -> None:
    lc, _ = cluster
    env.write_job("dj.toml", JOB)

    # a job that asks for a cluster the daemon does not have is invalid, with the reason
    run = env.cli("run", "--drain", timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    rec = _status(env)
    assert rec["state"] == "invalid" and "has none" in rec["error"] and "--dask" in rec["error"]

    # the same job, the daemon now pointed at the cluster: it runs there (no edit needed)
    env.start("--dask", lc.scheduler_address, "--checkpoint-interval", "1")
    env.wait_for(lambda: env.summary("dj").get("cluster_workers") == 2, 120,
                 "status to show 2 cluster workers")
    text = env.cli("status", check=True).stdout
    assert "backend: dask, 2 cluster worker(s)" in text, text
    pace.write_text("0")
    env.wait_for(lambda: env.summary("dj").get("state") == "done", 240, "the job to finish")
    assert "connected to the Dask scheduler" in env.log()
    assert env.log().count("data scattered") == 1  # once per job, not per task or model type
    _check_results(env, "dj")
    assert _status(env)["fits_computed"] == FITS


@pytest.mark.timeout(300)
def test_dask_worker_killed_mid_job(env: Env, process_cluster: tuple[Any, Any],
                                    pace: Path) -> None:
    lc, client = process_cluster
    env.write_job("dk.toml", JOB)
    env.start("--dask", lc.scheduler_address, "--checkpoint-interval", "1")
    env.wait_for(lambda: fits_logged(env, "dk") >= 10, 180, "10 fits")
    assert fits_logged(env, "dk") < FITS, "the job finished before a worker could be killed"
    pids = client.run(os.getpid)
    victim = sorted(pids.values())[0]
    os.kill(victim, signal.SIGKILL)
    pace.write_text("0")
    env.wait_for(lambda: env.summary("dk").get("state") == "done", 240, "the job to finish")
    assert victim not in client.run(os.getpid).values()  # the nanny replaced the worker
    assert "worker died" not in env.log()  # the searchd worker carried on
    _check_results(env, "dk")
    # Dask recomputed the lost task itself: searchd received every fit exactly once
    assert _status(env)["fits_computed"] == FITS


@pytest.mark.timeout(300)
def test_daemon_killed_and_restarted_resumes(env: Env, cluster: tuple[Any, Any],
                                            pace: Path) -> None:
    lc, client = cluster
    env.write_job("dr.toml", JOB)
    interval = 1.0
    daemon = env.start("--dask", lc.scheduler_address, "--checkpoint-interval", str(interval))
    env.wait_for(lambda: fits_logged(env, "dr") > 0, 180, "the first fit")
    first = time.monotonic()
    env.wait_for(lambda: fits_logged(env, "dr") >= 24, 180, "24 fits")
    at_kill = fits_logged(env, "dr")
    rate = at_kill / (time.monotonic() - first)
    assert at_kill < FITS, "the job finished before it could be killed"
    os.killpg(daemon.pid, signal.SIGKILL)
    daemon.wait(timeout=10)
    env.wait_for(lambda: not env.leftovers(), 10, "the dead daemon's worker to exit")

    # the scheduler drops the dead client's tasks: the cluster does not keep working for it
    def cluster_idle() -> bool:
        n = client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))
        return bool(n == 0)

    env.wait_for(cluster_idle, 30, "the scheduler to forget the dead worker's tasks")
    pace.write_text("0")

    restart = env.cli("run", "--drain", "--dask", lc.scheduler_address,
                      "--checkpoint-interval", str(interval), timeout=240)
    assert restart.returncode == 0, restart.stderr[-3000:]
    assert "resumed" in restart.stderr
    _check_results(env, "dr")
    wasted = _status(env)["fits_computed"] - FITS
    bound = 2 * 2 + math.ceil(rate * (interval + 0.2))  # futures in flight + one interval
    assert 0 <= wasted <= bound, f"{wasted} fits recomputed, bound {bound} ({rate:.1f}/s)"


@pytest.mark.timeout(120)
def test_unreachable_scheduler_waits(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT", "2s")
    env.write_job("du.toml", JOB)
    env.start("--dask", UNREACHABLE)
    env.wait_for(lambda: env.log().count("waiting for the Dask cluster; retrying") >= 2, 90,
                 "two tries to reach the scheduler")
    log = env.log()
    errors = [ln for ln in log.splitlines() if "cannot reach the Dask scheduler" in ln]
    assert errors and UNREACHABLE in errors[0], log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    rec = _status(env)
    assert rec["state"] in ("queued", "running") and rec["fits_done"] == 0
    assert "worker died" not in log  # waiting for a cluster is not a death: it never fails


class CliCluster:
    """A scheduler and two workers started with Dask's own command line, as users do."""

    def __init__(self, root: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.root = root
        self.procs: list[subprocess.Popen[bytes]] = []

    def _spawn(self, module: str, *args: str) -> None:
        with open(self.root / "cluster.log", "ab") as log:
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", f"distributed.cli.{module}", *args, "--no-dashboard"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True))

    def start(self) -> None:
        self._spawn("dask_scheduler", "--host", "127.0.0.1", "--port", str(self.port))
        self._spawn("dask_worker", self.address, "--nworkers", "2", "--nthreads", "1")
        with distributed.Client(self.address, timeout=30, set_as_default=False) as c:
            c.wait_for_workers(2, timeout=60)

    def stop(self) -> None:
        """Kill every process of the cluster at once, except multiprocessing's resource
        trackers: once the others are gone they remove the semaphores the workers left in
        /dev/shm, and exit (killing them too leaked 24 semaphores per test run)."""
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(psutil.Error):
                    root = psutil.Process(p.pid)
                    for q in [root, *root.children(recursive=True)]:
                        if not guard.is_resource_tracker(q):
                            with contextlib.suppress(psutil.Error):
                                q.kill()
            p.wait(timeout=10)
        self.procs.clear()


@pytest.fixture
def cli_cluster(tmp_path: Path, pace: Path) -> Iterator[CliCluster]:
    c = CliCluster(tmp_path)
    try:
        yield c
    finally:
        c.stop()


@pytest.mark.timeout(300)
def test_scheduler_lost_mid_job_waits_then_resumes(env: Env, cli_cluster: CliCluster,
                                                   pace: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT", "3s")
    cli_cluster.start()
    env.write_job("ds.toml", JOB)
    env.start("--dask", cli_cluster.address, "--checkpoint-interval", "1")
    env.wait_for(lambda: fits_logged(env, "ds") >= 16, 180, "16 fits")
    cli_cluster.stop()  # scheduler and workers gone at once
    env.wait_for(lambda: "lost the Dask scheduler" in env.log(), 60, "the loss to be noticed")
    env.wait_for(lambda: "waiting for the Dask cluster" in (env.summary("ds").get("error") or ""),
                 60, "the job to wait for the cluster")
    assert env.summary("ds")["state"] in ("queued", "running")
    # the worker flushed before it exited: every result that came back is on disk
    saved = load_results("ds", env.state, with_estimators=False)
    assert sum(m.fits_done for m in saved.models.values()) == fits_logged(env, "ds") >= 16
    assert "Traceback" not in env.log() and "worker died" not in env.log()

    pace.write_text("0")
    cli_cluster.start()  # the cluster comes back on the same address: the job carries on
    env.wait_for(lambda: env.summary("ds").get("state") == "done", 240, "the job to finish")
    assert "resumed" in env.log()
    _check_results(env, "ds")


def _shim(tmp: Path, kind: str) -> str:
    """A PYTHONPATH folder that makes ``distributed`` look absent or broken."""
    d = tmp / f"shim-{kind}"
    d.mkdir()
    if kind == "absent":  # not even findable: what `pip uninstall distributed` gives
        (d / "sitecustomize.py").write_text(
            "import sys\n"
            "class _Absent:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('dask', 'distributed'):\n"
            "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
            "sys.meta_path.insert(0, _Absent())\n")
    else:  # findable, but importing it fails
        (d / "distributed.py").write_text("raise ImportError('distributed is broken here')\n")
    return str(d)


@pytest.mark.timeout(120)
def test_without_the_extra_daemon_refuses(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", _shim(env.root, "absent"))
    env.write_job("dm.toml", JOB)
    run = env.cli("run", "--drain", "--dask", UNREACHABLE, timeout=60)
    assert run.returncode != 0
    line = _single_error_line(run.stderr)
    assert EXTRA_HINT in line and "dask_scheduler" in line, line
    assert _status(env)["state"] != "done"


@pytest.mark.timeout(120)
def test_without_the_extra_job_fails(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", _shim(env.root, "broken"))
    env.write_job("db.toml", JOB)
    run = env.cli("run", "--drain", "--dask", UNREACHABLE, timeout=90)
    assert run.returncode == 1, run.stderr[-3000:]  # a failed job
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    rec = _status(env)
    assert rec["state"] == "failed" and EXTRA_HINT in rec["error"], rec
    assert rec["fits_done"] == 0


def test_a_closed_comm_traceback_from_tornado_is_dropped_others_are_kept() -> None:
    """When the scheduler goes away, each request in flight ends in tornado's "Exception in
    callback" with a traceback; the worker's log keeps its own one line about the loss."""
    import logging

    from distributed.comm.core import CommClosedError

    from searchd.worker import dask_runner  # noqa: F401 - installs the filter
    tornado_log = logging.getLogger("tornado.application")

    def record(exc: BaseException) -> logging.LogRecord:
        return tornado_log.makeRecord("tornado.application", logging.ERROR, __file__, 1,
                                      "Exception in callback %r", ("cb",),
                                      (type(exc), exc, exc.__traceback__))

    def closed() -> None:
        try:
            raise OSError("Stream is closed")
        except OSError as e:
            raise CommClosedError("in <TCP (closed)>: Stream is closed") from e

    try:
        closed()
    except CommClosedError as e:
        assert not tornado_log.filter(record(e))
    assert tornado_log.filter(record(ValueError("a real bug")))
