"""The supervisor's handle on one worker process: spawn, events, exit status."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

from searchd.lifeline import OWNER_ENV, SUPERVISOR_ENV, owner_tag, spawn_hook
from searchd.protocol import Event, decode, encode_settings
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
        cmd = [sys.executable, "-m", "searchd.worker", f"--job={job_id}", f"--events-fd={w}",
               f"--settings={encode_settings(settings)}"]
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

    def events(self) -> list[Event]:
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
                ev = decode(line)
            except ValueError:
                log.error("%s: unreadable worker event %r", self.job_id, line[:200])
                continue
            self.events_seen.add(ev.kind)
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


def job_dir(settings: Settings, job_id: str) -> Path:
    return settings.state_dir / job_id
