"""The supervisor's handle on one worker process: spawn, events, exit status."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

from searchd.lifeline import OWNER_ENV, SUPERVISOR_ENV, owner_tag, spawn_hook
from searchd.settings import Settings

log = logging.getLogger(__name__)


class WorkerProc:
    """One ``python -m searchd.worker`` process and the pipe it reports on."""

    def __init__(self, settings: Settings, job_id: str, log_format: str) -> None:
        self.job_id = job_id
        self.started = time.monotonic()
        self.events_seen: set[str] = set()
        self.stop_reason: str | None = None
        self._buf = b""
        r, w = os.pipe()
        os.set_blocking(r, False)
        cmd = [sys.executable, "-m", "searchd.worker",
               "--state", str(settings.state_dir), "--jobs", str(settings.jobs_dir),
               "--job", job_id, "--n-jobs", str(settings.n_jobs),
               "--checkpoint-interval", str(settings.checkpoint_interval),
               "--max-candidates", str(settings.max_candidates),
               "--log-level", settings.log_level, "--events-fd", str(w)]
        for m in settings.allow_modules:
            cmd += ["--allow-module", m]
        if settings.dask_scheduler:
            cmd += ["--dask", settings.dask_scheduler]
        env = {**os.environ, OWNER_ENV: owner_tag(settings.state_dir),
               SUPERVISOR_ENV: str(os.getpid()), "SEARCHD_LOG_FORMAT": log_format}
        try:
            # Own session: a terminal's Ctrl-C reaches the supervisor only, which stops
            # the worker warmly. The worker dies with the supervisor (PDEATHSIG).
            self.proc = subprocess.Popen(cmd, pass_fds=(w,), env=env, stdin=subprocess.DEVNULL,
                                         start_new_session=True,
                                         preexec_fn=partial(spawn_hook, os.getpid()))
        finally:
            os.close(w)
        self.fd = r
        log.info("%s: started worker pid %d", job_id, self.proc.pid)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def events(self) -> list[dict[str, Any]]:
        """Every complete event line the worker has sent since the last call."""
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            self._buf += chunk
        *lines, self._buf = self._buf.split(b"\n")
        out = []
        for line in lines:
            try:
                ev = json.loads(line)
            except ValueError:
                log.error("%s: unreadable worker event %r", self.job_id, line[:200])
                continue
            self.events_seen.add(ev.get("event", ""))
            out.append(ev)
        return out

    def poll(self) -> int | None:
        return self.proc.poll()

    def terminate(self, reason: str) -> None:
        self.stop_reason = self.stop_reason or reason
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def job_dir(settings: Settings, job_id: str) -> Path:
    return settings.state_dir / job_id
