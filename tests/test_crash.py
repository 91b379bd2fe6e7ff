"""kill -9 in the middle of a model type, then a restart: nothing lost, nothing orphaned."""

from __future__ import annotations

import json
import math
import os
import signal
import time

import pytest
from conftest import Env, fits_logged
from jobtexts import DIGITS_THREE_TYPES
from reference import assert_same_as_gridsearch

import searchd
from searchd.state.read import load_results

JOB = DIGITS_THREE_TYPES
INTERVAL = 1.0
N_JOBS = 2


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_kill_9_mid_model_then_resume(env: Env) -> None:
    env.write_job("crash.toml", JOB)
    fits_total = (4 + 36 + 2) * 4
    daemon = env.start("--checkpoint-interval", str(INTERVAL), "--n-jobs", str(N_JOBS))

    def svc_half_done() -> bool:
        svc = env.summary("crash").get("models", {}).get("svc", {})
        return svc.get("state") == "running" and svc.get("fits_done", 0) >= 40

    env.wait_for(lambda: fits_logged(env, "crash") > 0, 60, "the first fit")
    first_fit = time.monotonic()
    env.wait_for(svc_half_done, 120, "svc to be well under way")
    at_kill = fits_logged(env, "crash")
    rate = at_kill / (time.monotonic() - first_fit)  # fits per second on this machine
    assert at_kill < fits_total, "the job finished before it could be killed"
    os.killpg(daemon.pid, signal.SIGKILL)
    daemon.wait(timeout=10)

    # the worker and joblib's workers do not outlive the daemon for long
    env.wait_for(lambda: not env.leftovers(), 10, "the dead daemon's workers to exit")

    restart = env.cli("run", "--drain", "--ignore-load", "--checkpoint-interval", str(INTERVAL),
                      "--n-jobs", str(N_JOBS), timeout=240)
    assert restart.returncode == 0, restart.stderr[-3000:]
    assert "resumed" in restart.stderr

    [rec] = json.loads(env.cli("status", "--json", check=True).stdout)
    assert rec["state"] == "done"
    assert rec["fits_done"] == rec["fits_total"] == fits_total
    wasted = rec["fits_computed"] - rec["fits_total"]
    bound = N_JOBS + math.ceil(rate * (INTERVAL + 0.2))
    assert 0 <= wasted <= bound, f"{wasted} fits recomputed, bound {bound} (rate {rate:.1f}/s)"

    results = searchd.load_results("crash", env.state)
    assert assert_same_as_gridsearch(results, env.state / "crash" / "job.toml") == fits_total
    assert env.cli("verify").returncode == 0


@pytest.mark.slow  # the worker's SIGTERM paths: tests/test_worker_limits.py, quick tier
@pytest.mark.timeout(120)
def test_warm_stop_flushes_and_resumes(env: Env) -> None:
    env.write_job("warm.toml", JOB)
    daemon = env.start("--checkpoint-interval", "60", "--n-jobs", str(N_JOBS))
    env.wait_for(lambda: fits_logged(env, "warm") >= 30, 60, "30 fits")
    started = time.monotonic()
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=15) == 0
    assert time.monotonic() - started < 10
    env.assert_no_leftovers()
    # with a 60 s interval, only the warm stop's flush can have saved these results
    res = load_results("warm", env.state, with_estimators=False)
    saved = sum(m.fits_done for m in res.models.values())
    assert saved >= 30
    assert env.summary("warm")["state"] == "queued"
