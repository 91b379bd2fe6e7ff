"""The daemon as a systemd service: sd_notify, the watchdog, the config file, SIGHUP, logs."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import Env, fits_logged

JOB = """
[data]
source = "sklearn:digits"
[search]
cv = 5
[models.svc]
estimator = "SVC"
grid = { C = { logspace = [-2, 3, 10] }, gamma = { logspace = [-5, -1, 5] } }
"""


def _receive(sock: socket.socket, seconds: float) -> list[tuple[float, str]]:
    out = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            out.append((time.monotonic(), sock.recv(4096).decode()))
        except TimeoutError:
            break
    return out


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", [pytest.param("path", marks=pytest.mark.slow), "abstract"])
def test_ready_status_watchdog_and_stopping(env: Env, kind: str) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if kind == "path":
        address = str(env.root / "notify.sock")
        sock.bind(address)
    else:
        name = f"searchd-test-{os.getpid()}-{time.monotonic_ns()}"
        sock.bind("\0" + name)
        address = "@" + name
    try:
        env.write_job("svc.toml", JOB)
        daemon = env.start("--n-jobs", "2", extra_env={
            "NOTIFY_SOCKET": address, "WATCHDOG_USEC": "1000000"})
        messages = _receive(sock, 8.0)
        texts = [m for _, m in messages]
        assert texts and texts[0] == "READY=1", texts[:3]
        statuses = [t for t in texts if t.startswith("STATUS=")]
        assert any(re.match(r"STATUS=running svc: svc \d+/250 fits", s) for s in statuses), \
            statuses
        pings = [t for t, m in messages if m == "WATCHDOG=1"]
        gaps = [b - a for a, b in zip(pings, pings[1:], strict=False)]
        # WATCHDOG_USEC=1 s: a ping every half of it, from the supervisor's loop
        assert len(pings) >= 8, len(pings)
        assert 0.3 <= sorted(gaps)[len(gaps) // 2] <= 0.9, gaps  # 0.5 s, on a 0.2 s loop
        daemon.send_signal(signal.SIGTERM)
        after = [m for _, m in _receive(sock, 5.0)]
        assert "STOPPING=1" in after
        assert daemon.wait(timeout=15) == 0
        # the worker never inherited the socket (only the supervisor talks to systemd)
        assert "NOTIFY_SOCKET" not in (env.state / "svc" / "summary.json").read_text()
    finally:
        sock.close()


def _config(path: Path, **values: object) -> Path:
    lines = []
    for k, v in values.items():
        if isinstance(v, str):
            lines.append(f'{k} = "{v}"')
        elif isinstance(v, bool):
            lines.append(f"{k} = {str(v).lower()}")
        elif isinstance(v, (list, tuple)):
            lines.append(f"{k} = [" + ", ".join(f'"{x}"' for x in v) + "]")
        else:
            lines.append(f"{k} = {v}")
    path.write_text("\n".join(lines) + "\n")
    return path


EVERY_KEY = dict(n_jobs=1, checkpoint_interval=0.7, max_candidates=777, allow_modules=["mymod"],
                 log_level="DEBUG", scan_interval=0.6, max_worker_deaths=4, restart_backoff=0.5,
                 max_load=0.7, sample_interval=0.9, pause_after=3, resume_after=7.0,
                 min_free_memory=0.01, max_suspend=99.0, run_window="* * * * *",
                 ignore_load=True, report=False)


@pytest.mark.timeout(120)
def test_every_config_key_reaches_the_daemon_and_flags_win(env: Env) -> None:
    cfg = _config(env.root / "searchd.toml", state_dir=str(env.state),
                  jobs_dir=str(env.jobs), **EVERY_KEY)
    env.write_job("tiny.toml", JOB.replace("digits", "iris").replace("10]", "2]"))
    out = subprocess.run([sys.executable, "-m", "searchd", "run", "--config", str(cfg),
                          "--drain", "--n-jobs", "2"], capture_output=True, text=True,
                         timeout=100, cwd=env.root)
    assert out.returncode == 0, out.stderr[-2000:]
    [line] = [x for x in out.stderr.splitlines() if "searchd: settings: " in x]
    for key, value in EVERY_KEY.items():
        if key == "n_jobs":
            continue
        shown = repr(tuple(value) if isinstance(value, list) else value)
        assert f"{key}={shown}" in line, (key, line)
    assert "n_jobs=2" in line  # the flag wins over the file
    assert f"state_dir=PosixPath('{env.state}')" in line
    # $SEARCHD_CONFIG works too
    env_out = subprocess.run([sys.executable, "-m", "searchd", "status"], capture_output=True,
                             text=True, timeout=60, cwd=env.root,
                             env={**os.environ, "SEARCHD_CONFIG": str(cfg)})
    assert "tiny" in env_out.stdout and "done" in env_out.stdout


@pytest.mark.parametrize("text, message", [
    ("max_lod = 0.5\n", "unknown setting 'max_lod'"),
    ("max_load = \"lots\"\n", "max_load: expected a number, got 'lots'"),
    ("n_jobs = [\n", "not valid TOML"),
])
def test_config_errors_are_one_line(env: Env, text: str, message: str) -> None:
    cfg = env.root / "bad.toml"
    cfg.write_text(text)
    out = env.cli("run", "--config", str(cfg), "--drain")
    assert out.returncode == 2 and message in out.stderr and str(cfg) in out.stderr
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("searchd: error: ")


@pytest.mark.slow  # tests/test_daemon_step.py steps the reload
@pytest.mark.timeout(120)
def test_sighup_reloads_without_interrupting_the_job(env: Env) -> None:
    cfg = _config(env.root / "searchd.toml", max_load=0.5, checkpoint_interval=1.0)
    env.write_job("svc.toml", JOB)
    daemon = env.start("--config", str(cfg), "--n-jobs", "2")
    env.wait_for(lambda: fits_logged(env, "svc") > 5, 60, "fits")
    worker = [c for c in psutil.Process(daemon.pid).children() if "searchd.worker" in
              " ".join(c.cmdline())][0]
    _config(cfg, max_load=0.8, checkpoint_interval=2.0)
    daemon.send_signal(signal.SIGHUP)
    env.wait_for(lambda: "configuration reloaded" in env.log(), 10, "the reload")
    log = env.log()
    assert "max_load=0.8" in log and "checkpoint_interval=2.0" in log
    assert worker.is_running() and worker.status() != psutil.STATUS_ZOMBIE
    cfg.write_text("max_load = [\n")
    daemon.send_signal(signal.SIGHUP)
    env.wait_for(lambda: "keeping the running configuration" in env.log(), 10, "the refusal")
    assert daemon.poll() is None and worker.is_running()
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=15) == 0


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_logs_have_no_timestamps_under_systemd_and_parallel_stays_parallel(env: Env) -> None:
    env.write_job("svc.toml", JOB)
    daemon = env.start("--n-jobs", "2", extra_env={"JOURNAL_STREAM": "8:1234"})
    env.wait_for(lambda: fits_logged(env, "svc") > 5, 60, "fits")
    worker = [c for c in psutil.Process(daemon.pid).children() if "searchd.worker" in
              " ".join(c.cmdline())][0]

    def pool() -> list[psutil.Process]:
        return [c for c in worker.children() if "resource_tracker" not in " ".join(c.cmdline())]

    # the worker fits by itself, and starts its pool's n_jobs - 1 = 1 process as soon as the
    # job shows it is worth it: a real process, not a serial fallback
    env.wait_for(lambda: len(pool()) >= 1, 30, "the worker's pool process")
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=15) == 0
    lines = [x for x in env.log().splitlines() if "searchd" in x]
    assert lines and all(not re.match(r"\d{4}-\d\d-\d\d", x) for x in lines), lines[:3]
    assert any(x.startswith("INFO searchd") and "svc" in x for x in lines)
