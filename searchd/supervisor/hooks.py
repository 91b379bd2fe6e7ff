"""``on_job_end``: the operator's command, run when a job becomes done, failed or invalid.

The command comes from the daemon's config (an argv list, never a shell, never a job
file) and learns about the job from its environment (:func:`job_end_environment`). It
runs beside the loop, never blocking it: :class:`HookRunner` starts it with ``Popen``,
each step polls it, and one that outlives ``on_job_end_timeout`` is killed with its
process group. Its output goes to temporary files (a pipe could fill and stall it, or be
held open by a grandchild) and is logged, clipped, as one line per stream with the job
id. :class:`JobEnds` decides when a job *became* done, failed or invalid, so a restart
does not announce the jobs that were already finished.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import subprocess
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Protocol

from searchd.jobs.messages import clip
from searchd.lifeline import OWNER_ENV, SUPERVISOR_ENV, owner_tag, spawn_hook
from searchd.protocol import describe_exit
from searchd.settings import Settings
from searchd.state.records import JobRecord, JobState

log = logging.getLogger("searchd")

S = JobState
#: the states that fire ``on_job_end`` (a cancelled job was ended by the operator)
ENDS = frozenset({S.DONE, S.FAILED, S.INVALID})
#: characters of a command's stdout (and of its stderr) that reach the log
OUTPUT_CHARS = 2000
#: characters of the job's error passed in SEARCHD_ERROR
ERROR_CHARS = 4000
#: commands running at once; more job ends wait their turn (200 invalid files dropped at
#: once must not start 200 processes)
MAX_RUNNING = 4
#: a stop by signal waits at most this long for running commands (the units give the
#: whole stop TimeoutStopSec=30), a drain waits up to their time limit
STOP_WAIT_SECONDS = 5.0


def best_model(rec: JobRecord) -> tuple[str, float] | None:
    """The model type with the best CV score among the types that are done, and the
    score; ties go to the type listed first. Scores are "greater is better", as in
    scikit-learn (losses are negated)."""
    best: tuple[str, float] | None = None
    for name, m in rec.models.items():
        score = m.get("best_score")
        if m.get("state") != "done" or not isinstance(score, (int, float)) \
                or isinstance(score, bool) or math.isnan(score):
            continue
        if best is None or score > best[1]:
            best = (name, float(score))
    return best


def job_end_environment(rec: JobRecord, settings: Settings) -> dict[str, str]:
    """What the command is told about ``rec``, on top of the daemon's own environment.

    SEARCHD_STATE and SEARCHD_JOBS are the daemon's folders (the variables every searchd
    command reads), so the command can run ``searchd show "$SEARCHD_JOB"``; the job's
    state is therefore SEARCHD_JOB_STATE.
    """
    best = best_model(rec)
    env = {
        "SEARCHD_JOB": rec.id,
        "SEARCHD_JOB_STATE": rec.state.value,
        "SEARCHD_BEST_MODEL": best[0] if best else "",
        "SEARCHD_BEST_SCORE": repr(best[1]) if best else "",
        "SEARCHD_FITS_DONE": str(rec.fits_done),
        "SEARCHD_FITS_TOTAL": str(rec.fits_total),
        "SEARCHD_STATE": str(settings.state_dir.absolute()),
        "SEARCHD_JOBS": str(settings.jobs_dir.absolute()),
    }
    if rec.state in (S.FAILED, S.INVALID):
        env["SEARCHD_ERROR"] = clip(rec.error or rec.state.value, ERROR_CHARS)
    return env


class JobEnds:
    """Which jobs became done, failed or invalid since the last look."""

    def __init__(self) -> None:
        #: per job, what it was at the last look: its state and its accepted file
        self._seen: dict[str, tuple[JobState, str | None]] = {}

    def seed(self, records: Iterable[JobRecord]) -> None:
        """The records found at start: their ends were announced by an earlier daemon."""
        for rec in records:
            self._seen[rec.id] = (rec.state, rec.spec_digest)

    def ended(self, records: Iterable[JobRecord]) -> list[JobRecord]:
        """The records that reached an end state since the last call. A job file that is
        rewritten and is invalid again counts (a new file, a new end)."""
        out = []
        for rec in records:
            mark = (rec.state, rec.spec_digest)
            if self._seen.get(rec.id) != mark and rec.state in ENDS:
                out.append(rec)
            self._seen[rec.id] = mark
        return out


class Hooks(Protocol):
    """What the daemon asks of the runner (tests pass one that records the calls)."""

    def start(self, job_id: str, argv: Sequence[str], env: dict[str, str],
              timeout: float, now: float) -> None: ...
    def poll(self, now: float) -> None: ...
    def finish(self, wait: float, interrupted: Callable[[], bool],
               tick: Callable[[], object]) -> None: ...


@dataclass
class _Run:
    job_id: str
    argv: tuple[str, ...]
    env: dict[str, str]
    timeout: float
    proc: subprocess.Popen[bytes] | None = None
    deadline: float = 0.0
    out: list[IO[bytes]] = field(default_factory=list)


class HookRunner:
    """Runs the commands as child processes, at most :data:`MAX_RUNNING` at once."""

    def __init__(self, state_dir: Path, clock: Callable[[], float] = time.monotonic) -> None:
        self._owner = owner_tag(state_dir)
        self._clock = clock  # for finish(), which waits by itself
        self._waiting: deque[_Run] = deque()
        self._running: list[_Run] = []

    @property
    def busy(self) -> int:
        return len(self._waiting) + len(self._running)

    def start(self, job_id: str, argv: Sequence[str], env: dict[str, str],
              timeout: float, now: float) -> None:
        """Queue the command for ``job_id``; it starts at once unless others are running."""
        self._waiting.append(_Run(job_id, tuple(argv), env, timeout))
        self._launch(now)

    def _launch(self, now: float) -> None:
        while self._waiting and len(self._running) < MAX_RUNNING:
            run = self._waiting.popleft()
            env = {**os.environ, **run.env}
            if "SEARCHD_ERROR" not in run.env:
                env.pop("SEARCHD_ERROR", None)  # not the daemon's own, if it had one
            # what searchd starts carries its owner's tag: a killed daemon's deathwatch
            # and the next daemon's start end it (searchd.lifeline)
            env[OWNER_ENV] = self._owner
            env[SUPERVISOR_ENV] = str(os.getpid())
            run.out = [tempfile.TemporaryFile(), tempfile.TemporaryFile()]
            try:
                # its own session: a terminal's Ctrl-C is the daemon's, and the group can
                # be killed whole (a script's children too); it dies with the daemon
                run.proc = subprocess.Popen(
                    run.argv, env=env, stdin=subprocess.DEVNULL, stdout=run.out[0],
                    stderr=run.out[1], start_new_session=True,
                    preexec_fn=partial(spawn_hook, os.getpid()))
            except OSError as e:  # no such program, not executable, ...
                log.error("%s: on_job_end: cannot run %s: %s", run.job_id,
                          clip(run.argv[0], 200), e.strerror or e)
                self._close(run)
                continue
            run.deadline = now + run.timeout
            log.info("%s: on_job_end: started %s (pid %d)", run.job_id,
                     clip(" ".join(run.argv), 200), run.proc.pid)
            self._running.append(run)

    def poll(self, now: float) -> None:
        """Reap the commands that exited (logging their output), kill the overdue ones,
        start waiting ones. Never blocks."""
        for run in list(self._running):
            assert run.proc is not None
            code = run.proc.poll()
            if code is None and now >= run.deadline:
                log.error("%s: on_job_end: still running after %gs (on_job_end_timeout); "
                          "killing it", run.job_id, run.timeout)
                self._kill(run)
                code = run.proc.wait()  # SIGKILL: at once
            if code is None:
                continue
            self._running.remove(run)
            self._report(run, code)
        self._launch(now)

    def finish(self, wait: float, interrupted: Callable[[], bool],
               tick: Callable[[], object]) -> None:
        """Before the daemon exits: give the commands up to ``wait`` seconds (each within
        its own limit), then kill what is left; ``interrupted`` (a second stop signal)
        cuts the wait short, ``tick`` runs between two looks (the watchdog)."""
        if not self.busy:
            return
        log.info("waiting up to %gs for %d on_job_end command(s)", wait, self.busy)
        end = self._clock() + wait
        while self.busy and self._clock() < end and not interrupted():
            tick()
            time.sleep(0.05)
            self.poll(self._clock())
        for run in self._waiting:
            log.warning("%s: on_job_end: not run: the daemon is exiting", run.job_id)
        self._waiting.clear()
        for run in list(self._running):
            log.error("%s: on_job_end: still running as the daemon exits; killing it",
                      run.job_id)
            self._kill(run)
            assert run.proc is not None
            self._report(run, run.proc.wait())
        self._running.clear()

    @staticmethod
    def _kill(run: _Run) -> None:
        assert run.proc is not None
        try:
            os.killpg(run.proc.pid, signal.SIGKILL)
        except ProcessLookupError:  # exited and reaped meanwhile
            pass
        except PermissionError:  # the group is gone and its id taken: the leader only
            run.proc.kill()

    def _report(self, run: _Run, code: int) -> None:
        for name, f in zip(("stdout", "stderr"), run.out, strict=True):
            f.seek(0)
            text = f.read(OUTPUT_CHARS * 4).decode("utf-8", "replace").strip()
            if text:
                log.info("%s: on_job_end %s: %s", run.job_id, name, clip(text, OUTPUT_CHARS))
        log.log(logging.INFO if code == 0 else logging.WARNING, "%s: on_job_end: %s",
                run.job_id, describe_exit(code))
        self._close(run)

    @staticmethod
    def _close(run: _Run) -> None:
        for f in run.out:
            f.close()
        run.out = []


__all__ = ["ENDS", "HookRunner", "Hooks", "JobEnds", "best_model", "job_end_environment"]
