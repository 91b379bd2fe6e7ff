"""The supervisor's handle on one worker process: spawn, events, exit status.

The worker starts in its job's state folder, with ``TMPDIR`` in a private folder there
(:data:`TMP_DIR`, emptied when the worker is gone): whatever a library writes to the current
directory or to temporary files stays with the job. joblib still memory-maps into
``/dev/shm`` (``JOBLIB_TEMP_FOLDER`` is left unset on purpose: it would move those maps to
the disk); ``TMPDIR`` is only its fallback when ``/dev/shm`` is missing or full.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
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

#: the worker's own temporary folder, in its job's state folder
TMP_DIR = "tmp"


class WorkerProc:
    """One ``python -m searchd.worker`` process and the pipe it reports on."""

    def __init__(self, settings: Settings, job_id: str, log_format: str) -> None:
        self.job_id = job_id
        self.started = time.monotonic()
        self.events_seen: set[str] = set()
        self.stop_reason: str | None = None
        self._buf = b""
        self.tmp = job_dir(settings, job_id) / TMP_DIR
        shutil.rmtree(self.tmp, ignore_errors=True)  # a killed worker's
        self.tmp.mkdir(mode=0o700, parents=True)
        r, w = os.pipe()
        os.set_blocking(r, False)
        # -P: nothing is imported from the job's folder, the worker's current directory
        cmd = [sys.executable, "-P", "-m", "searchd.worker", "--job", job_id,
               f"--events-fd={w}",
               f"--settings={encode_settings(_absolute(settings))}"]
        env = {**os.environ, OWNER_ENV: owner_tag(settings.state_dir),
               SUPERVISOR_ENV: str(os.getpid()), "SEARCHD_LOG_FORMAT": log_format,
               "TMPDIR": str(self.tmp)}
        try:
            # Own session: a terminal's Ctrl-C reaches the supervisor only, which stops
            # the worker warmly. The worker dies with the supervisor (PDEATHSIG).
            self.proc = subprocess.Popen(cmd, pass_fds=(w,), env=env, stdin=subprocess.DEVNULL,
                                         cwd=self.tmp.parent, start_new_session=True,
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
        """After the exit: close the pipe, empty the worker's temporary folder."""
        try:
            os.close(self.fd)
        except OSError as e:
            log.debug("%s: closing the event pipe: %s", self.job_id, e)
        shutil.rmtree(self.tmp, ignore_errors=True)


def _absolute(settings: Settings) -> Settings:
    """The settings with absolute folders: the worker runs in another directory."""
    return dataclasses.replace(settings, state_dir=settings.state_dir.absolute(),
                               jobs_dir=settings.jobs_dir.absolute(),
                               data_dirs=tuple(d.absolute() for d in settings.data_dirs),
                               publish_dir=None if settings.publish_dir is None
                               else settings.publish_dir.absolute())


def job_dir(settings: Settings, job_id: str) -> Path:
    return settings.state_dir / job_id
