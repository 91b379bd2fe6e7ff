"""The supervisor: ``searchd run``.

A light process (it never imports scikit-learn). :meth:`Daemon.step` is one turn of the loop:
read worker events, apply the exit policy, the idle gate and the operator's pause, start the
next job, write summaries, ping systemd; a warm stop is stepped too. In production an
APScheduler 3.x scheduler, whose jobs all run in the main thread, calls it (and ``scan``);
a test calls it with its own clock, worker launcher, process control and load sampler.
Signal handlers only set flags.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import signal
from collections.abc import Callable, Iterator
from types import FrameType

from searchd.errors import SettingsError
from searchd.settings import Settings
from searchd.state.published import SummaryPublisher
from searchd.state.records import JobRecord, JobState, write_summary
from searchd.supervisor.driver import SchedulerDriver
from searchd.supervisor.events import EventFold
from searchd.supervisor.exits import TIME_SLICE, ExitPolicy
from searchd.supervisor.gate import IdleGate
from searchd.supervisor.handle import WorkerProc
from searchd.supervisor.hooks import (
    STOP_WAIT_SECONDS,
    HookRunner,
    Hooks,
    JobEnds,
    job_end_environment,
)
from searchd.supervisor.intake import EDITED, Intake, run_order
from searchd.supervisor.load import LoadSampler
from searchd.supervisor.notify import Notifier
from searchd.supervisor.pausing import Pausing
from searchd.supervisor.proctree import ProcessControl, TreeControl
from searchd.supervisor.reload import reloaded
from searchd.supervisor.seams import Clock, Launcher, Sampler, SystemClock, Worker
from searchd.supervisor.sensors import Sensors
from searchd.supervisor.status import status_line
from searchd.supervisor.stopping import WarmStop
from searchd.supervisor.takeover import taken_over
from searchd.supervisor.timeline import Timeline
from searchd.worker.dask_runner import missing_extra

log = logging.getLogger("searchd")

S = JobState
class Daemon:
    def __init__(self, settings: Settings, drain: bool = False,
                 sampler: Sampler | None = None, log_format: str = "%(message)s",
                 reload: Callable[[], Settings] | None = None, *,
                 clock: Clock | None = None, launcher: Launcher = WorkerProc,
                 control: ProcessControl | None = None,
                 notifier: Notifier | None = None, sensors: Sensors | None = None,
                 hooks: Hooks | None = None) -> None:
        self.settings = settings
        #: re-reads the config file (and re-applies the flags) on SIGHUP
        self._reload = reload
        self.drain = drain
        self.log_format = log_format
        self.clock = clock or SystemClock()
        self.launcher = launcher
        self.control = control or TreeControl()
        self.records: dict[str, JobRecord] = {}
        self.worker: Worker | None = None
        # workers must not ping systemd
        self.notifier = notifier or Notifier(unset_environment=True)
        self.pausing = Pausing(settings, sampler or LoadSampler(), self.control, self.clock,
                               sensors)
        self.not_before: dict[str, float] = {}
        self.stop_signals = 0
        self.reload_requested = False
        self.exit_code = 0
        self.finished = False
        self.driver: SchedulerDriver | None = None
        self._dirty: set[str] = set()
        self._timeline = Timeline(settings.state_dir)
        self._published = SummaryPublisher(settings)  #: summaries for the group (publish)
        self.intake = Intake(self.records, self._dirty)
        self.exits = ExitPolicy()
        self.fold = EventFold()
        #: runs on_job_end for the jobs that ``_job_ends`` sees end
        self.hooks = hooks or HookRunner(settings.state_dir)
        self._job_ends = JobEnds()
        self._stopping: WarmStop | None = None
        self._last_tick = self.clock.monotonic()
        #: the running job's run_seconds when its worker started (for max_job_seconds)
        self._slice_from = 0.0
        self._edited: str | None = None  #: its worker stopped for an edit: it starts first

    @property
    def pause_reason(self) -> str | None:
        return self.pausing.reason

    @property
    def suspended_since(self) -> float | None:
        return self.pausing.suspended_since

    # --- signals ---------------------------------------------------------------------------------

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stop_signals += 1

    def _on_hup(self, signum: int, frame: FrameType | None) -> None:
        self.reload_requested = True

    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)

    # --- start -----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def started(self) -> Iterator[None]:
        """Hold the state directory, clean up what a killed daemon left, load the records
        (:func:`~searchd.supervisor.takeover.taken_over`)."""
        with taken_over(self.settings, self.control) as records:
            for rec in records:
                self.records[rec.id] = rec
                self._dirty.add(rec.id)
            self._job_ends.seed(self.records.values())  # announced by the daemon before
            yield

    def run(self) -> int:
        """Run until stopped (or drained); returns the process exit code."""
        if self.settings.dask_scheduler and missing_extra():
            raise SettingsError(f"dask_scheduler {self.settings.dask_scheduler}: "
                                f"{missing_extra()}")
        self.install_signals()
        with self.started():
            self.scan()
            self.notifier.ready()
            log.info("searchd started: jobs %s, state %s", self.settings.jobs_dir,
                     self.settings.state_dir)
            log.info("settings: %s", ", ".join(
                f"{f.name}={getattr(self.settings, f.name)!r}"
                for f in dataclasses.fields(Settings)))
            self.driver = SchedulerDriver(self)
            self.step()
            if not self.finished:
                self.driver.run()
            signals = self.stop_signals
            self.hooks.finish(
                STOP_WAIT_SECONDS if signals else self.settings.on_job_end_timeout,
                lambda: self.stop_signals > signals,
                lambda: self.notifier.maybe_watchdog(self.clock.monotonic()))
        return self.exit_code

    def wants_step(self, now: float) -> bool:
        """Between steps: is one due at once (a worker's exit, a stop signal, a confirming
        load sample)? Costs one waitpid."""
        if self.stop_signals:
            return True
        w = self.worker
        return w is not None and (w.poll() is not None or self.pausing.confirm_due(
            now, self.settings.sample_interval))

    def shutdown(self, code: int) -> None:
        self.exit_code = code
        self.finished = True
        if self.driver is not None:
            self.driver.shutdown()

    # --- SIGHUP ----------------------------------------------------------------------------------

    def reload(self) -> None:
        """Re-read the configuration without touching the running job (see ``reloaded``)."""
        if self._reload is None:
            log.info("SIGHUP: no configuration file to reload")
            return
        got = reloaded(self.settings, self._reload)
        if got is None:
            return
        new, changed = got
        if changed & IdleGate.SETTINGS:
            self.pausing.reconfigure(new)
        self.settings = new
        if self.driver is not None:
            self.driver.settings_changed(new, changed)

    # --- intake ----------------------------------------------------------------------------------

    def scan(self) -> None:
        """Accept new job files, notice changed and removed ones, apply cancel requests."""
        if self._stopping is not None or self.finished:
            return
        running = self.worker.job_id if self.worker is not None else None
        for reason in self.intake.scan(self.settings, running, self.clock.time()):
            self._stop_worker(reason)

    # --- step ------------------------------------------------------------------------------------

    def step(self, now: float | None = None) -> None:
        """One turn of the loop at monotonic time ``now`` (default: the clock's)."""
        if self.finished:
            return
        now = self.clock.monotonic() if now is None else now
        elapsed, self._last_tick = now - self._last_tick, now
        if self.stop_signals and self._stopping is None:
            self.stop(now)
            return
        if self._stopping is not None:
            self._step_stop(now)
            return
        if self.reload_requested:
            self.reload_requested = False
            self.reload()
        self._poll_worker(elapsed, now)
        self._yield_slot(now)
        self._apply_gate(now)
        if self.worker is None and self.pausing.reason is None:
            self._start_next(now)
        self._write_summaries()
        self._run_hooks(now)
        self._notify(now)
        if self.drain and self.worker is None and not self._runnable(
                now, ignore_backoff=True) and not self._waiting_for_disk():
            failed = [r.id for r in self.records.values() if r.state == S.FAILED]
            log.info("drained: every job is done, invalid or failed%s",
                     f" (failed: {', '.join(failed)})" if failed else "")
            self.shutdown(1 if failed else 0)

    def _runnable(self, now: float, ignore_backoff: bool = False) -> list[JobRecord]:
        return run_order(self.records.values(), self.settings, self.not_before, now,
                         ignore_backoff, first=self._edited)

    def _waiting_for_disk(self) -> list[JobRecord]:
        """Queued jobs whose frozen copy could not be written yet: a drain waits for them."""
        return [r for r in self.records.values()
                if not r.file_removed and self.intake.unfrozen(self.settings, r)]

    def _yield_slot(self, now: float) -> None:
        """A job that has run ``max_job_seconds`` (paused time excluded) while another can
        start is stopped warmly and goes behind the others (its results stay)."""
        w, limit = self.worker, self.settings.max_job_seconds
        if w is None or not limit or w.stop_reason is not None or self.pausing.reason:
            return  # paused: no other job could start in its place
        rec = self.records[w.job_id]
        if rec.run_seconds - self._slice_from < limit:
            return
        if not any(r.id != rec.id for r in self._runnable(now)):
            return  # nobody waits: it goes on
        rec.turn = max(r.turn for r in self.records.values()) + 1
        log.info("%s: ran %.0fs (max_job_seconds); yielding to the queued jobs", rec.id,
                 rec.run_seconds - self._slice_from)
        self._stop_worker(TIME_SLICE)

    def _start_next(self, now: float) -> None:
        runnable = self._runnable(now)
        if not runnable:
            return
        rec, self._edited = runnable[0], None
        self.worker = self.launcher(self.settings, rec.id, self.log_format)
        rec.to(S.RUNNING)
        rec.started_at = rec.started_at or self.clock.time()
        rec.done_at = None  # this session's Done is still to come
        self._slice_from = rec.run_seconds
        rec.disk_error = None
        self.fold.new_session(rec.id)
        self._dirty.add(rec.id)

    def _poll_worker(self, elapsed: float, now: float) -> None:
        w = self.worker
        if w is None:
            return
        rec = self.records[w.job_id]
        if self.pausing.suspended_since is None and rec.done_at is None:
            rec.run_seconds += elapsed  # (after Done, the worker only draws its final report)
        self._read_events(rec, w)
        code = w.poll()
        if code is None:
            return
        self._read_events(rec, w)  # what it said just before exiting
        w.close()
        self.worker = None
        self.pausing.forget()
        self._count_fits(rec)
        delay = self.exits.on_exit(rec, code, w.events_seen, w.stop_reason, self.settings)
        self._edited = rec.id if w.stop_reason == EDITED else None
        if delay is not None:
            self.not_before[rec.id] = now + delay
        self._dirty.add(rec.id)

    def _read_events(self, rec: JobRecord, w: Worker) -> None:
        for ev in w.events():
            self.fold.apply(rec, ev)
            self._dirty.add(rec.id)
        if rec.cluster_workers is not None:
            self.exits.connected(rec.id)
        self._count_fits(rec)

    def _count_fits(self, rec: JobRecord) -> None:
        try:
            rec.fits_computed = (self.settings.state_dir / rec.id / "fits.log").stat().st_size
        except FileNotFoundError:
            pass

    # --- idle gate -------------------------------------------------------------------------------

    def _apply_gate(self, now: float) -> None:
        reason = self.pausing.decide(now, self.settings)
        self._show_pause_reason(reason, now)
        w = self.worker
        if w is not None and self.pausing.carry_out(now, w, self.records[w.job_id],
                                                    self.settings.max_suspend):
            self._stop_worker("long pause")

    def _show_pause_reason(self, reason: str | None, now: float) -> None:
        """The reason goes to the job it holds back: the running one, else the next in line."""
        if self.worker is not None:
            target: str | None = self.worker.job_id
        else:
            target = next((r.id for r in self._runnable(now, ignore_backoff=True)), None)
        for rec in self.records.values():
            want = reason if rec.id == target else None
            if rec.paused_reason != want:
                rec.paused_reason = want
                self._dirty.add(rec.id)

    # --- stopping --------------------------------------------------------------------------------

    def _stop_worker(self, reason: str) -> None:
        w = self.worker
        if w is None:
            return
        self.pausing.release(w)  # a stopped process never sees SIGTERM
        w.terminate(reason)

    def stop(self, now: float | None = None) -> None:
        """Begin a warm stop: the worker flushes its checkpoint and exits (within
        :data:`WARM_STOP_SECONDS`, else it is killed; a second signal kills it at once).
        Later steps carry it on until the daemon is finished."""
        now = self.clock.monotonic() if now is None else now
        log.info("stopping (signal received)")
        self.notifier.stopping()
        self._stopping = WarmStop(now, self.stop_signals)
        self._stop_worker("daemon stopping")
        if self.driver is not None:
            self.driver.stopping()
        self._step_stop(now)

    def _step_stop(self, now: float) -> None:
        assert self._stopping is not None
        w = self.worker
        if not self._stopping.settled(now, w, self.stop_signals, self.control):
            return
        if w is not None and w.poll() is None:  # survived SIGKILL: do not wait for ever
            w.close()
            self.worker = None
        self._poll_worker(0.0, now)
        self._show_pause_reason(None, now)  # no daemon, nothing paused
        self._write_summaries()
        self._run_hooks(now)
        self.shutdown(0)

    # --- reporting -------------------------------------------------------------------------------

    def _write_summaries(self) -> None:
        for jid in sorted(self._dirty):
            rec = self.records[jid]
            try:
                text = write_summary(self.settings.state_dir, rec)
            except OSError as e:
                log.error("%s: cannot write summary.json: %s", jid, e)
                continue
            self._dirty.discard(jid)
            self._published.publish(jid, text)
            self._timeline.note(rec, self.clock.monotonic(), self.clock.time())

    def _run_hooks(self, now: float) -> None:
        """Start on_job_end for each job that ended since the last step (after its
        summary is written, so the command reads the final one), and poll the running."""
        for rec in self._job_ends.ended(self.records.values()):
            if self.settings.on_job_end:
                self.hooks.start(rec.id, self.settings.on_job_end,
                                 job_end_environment(rec, self.settings),
                                 self.settings.on_job_end_timeout, now)
        self.hooks.poll(now)

    def status_line(self) -> str:
        running = self.records[self.worker.job_id] if self.worker is not None else None
        return status_line(running, self.records.values(), self.pausing.reason,
                           self.pausing.status_note)

    def _notify(self, now: float) -> None:
        self.notifier.status(self.status_line())
        self.notifier.maybe_watchdog(now)
