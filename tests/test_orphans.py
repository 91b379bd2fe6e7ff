"""Nothing outlives the daemon, stopped or running: ``kill -9`` of the supervisor alone, while
its worker tree is suspended (SIGSTOP: a stopped process never notices its parent died), leaves
no process behind within 10 s, without another daemon starting to clean up."""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest
from conftest import Env, fits_logged
from test_idle_daemon import JOB, NO_MEMORY_RULE, all_stopped, tree_status, wait_until

GONE_WITHIN = 10.0


def _alive(pids: dict[int, float]) -> list[int]:
    """The pids still running (a zombie is gone: it runs nothing and holds nothing)."""
    out = []
    for pid, created in pids.items():
        try:
            p = psutil.Process(pid)
            if p.create_time() == created and p.status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            continue
    return out


@pytest.mark.timeout(180)
@pytest.mark.parametrize("paused", [True, False], ids=["suspended", "running"])
def test_kill_9_of_the_supervisor_leaves_nothing_behind(env: Env, paused: bool) -> None:
    env.write_job("orphan.toml", JOB)
    daemon = env.start("--checkpoint-interval", "1", "--n-jobs", "2", *NO_MEMORY_RULE)
    # the worker and its pool's process (n_jobs - 1), plus loky's resource tracker
    env.wait_for(lambda: fits_logged(env, "orphan") >= 5 and len(tree_status(daemon.pid)) >= 2,
                 120, "the job to run with its pool")
    if paused:
        env.cli("pause", check=True)
        assert wait_until(lambda: all_stopped(daemon.pid), 5.0) is not None, \
            tree_status(daemon.pid)
    tree = psutil.Process(daemon.pid).children(recursive=True)
    pids = {p.pid: p.create_time() for p in tree}
    assert len(pids) >= 3, [p.cmdline() for p in tree]  # worker, pool process, tracker

    os.kill(daemon.pid, signal.SIGKILL)  # the supervisor alone, not its group
    daemon.wait(timeout=10)
    deadline = time.monotonic() + GONE_WITHIN
    while _alive(pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = _alive(pids)
    assert not left, [(pid, psutil.Process(pid).status(), psutil.Process(pid).cmdline())
                      for pid in left]
    assert not env.leftovers()
