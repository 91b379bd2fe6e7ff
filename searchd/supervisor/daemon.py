"""The supervisor: ``searchd run``.

A light process (it never imports scikit-learn) driven by an APScheduler 3.x
scheduler whose jobs all run in the main thread: ``scan`` reads ``jobs/``,
``tick`` reads worker events, applies the idle gate, starts the next job,
writes summaries and pings systemd. Signal handlers only set flags.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

from apscheduler.executors.debug import DebugExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.base import STATE_STOPPED
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.interval import IntervalTrigger

from searchd import lifeline as guard
from searchd import protocol
from searchd.errors import JobSpecError, SearchdError, SettingsError
from searchd.jobs.folder import JobFile, freeze, frozen_path, scan
from searchd.jobs.spec import clip, parse_job
from searchd.protocol import Exit, describe_exit
from searchd.settings import Settings
from searchd.state import control
from searchd.state.records import ACTIVE, JobRecord, JobState, all_summaries, write_summary
from searchd.state.store import clean_temp_files, exclusive, load_key, secure_state_dir
from searchd.supervisor.handle import WorkerProc
from searchd.supervisor.idle import (
    CONFIRM_FRACTION,
    IdleGate,
    LoadSample,
    LoadSampler,
    resume_tree,
    suspend_tree,
)
from searchd.supervisor.notify import Notifier
from searchd.worker.dask_runner import NO_SCHEDULER, missing_extra, no_scheduler_message

log = logging.getLogger("searchd")

S = JobState
MAX_CLUSTER_WAIT = 120.0  # seconds between two tries to reach the Dask scheduler, at most
WARM_STOP_SECONDS = 8.0
WATCH_SECONDS = 0.2
IDLE_SETTINGS = frozenset({"max_load", "pause_after", "resume_after", "min_free_memory",
                           "ignore_load", "run_window"})


class Daemon:
    def __init__(self, settings: Settings, drain: bool = False,
                 sampler: LoadSampler | None = None, log_format: str = "%(message)s",
                 reload: Callable[[], Settings] | None = None) -> None:
        self.settings = settings
        #: re-reads the config file (and re-applies the flags) on SIGHUP
        self._reload = reload
        self.drain = drain
        self.log_format = log_format
        self.records: dict[str, JobRecord] = {}
        self.files: dict[str, JobFile] = {}
        self.worker: WorkerProc | None = None
        self.notifier = Notifier(unset_environment=True)  # workers must not ping systemd
        self.gate = IdleGate.from_settings(settings)
        self.sampler = sampler or LoadSampler()
        self.suspended_since: float | None = None
        self.pause_reason: str | None = None
        self.not_before: dict[str, float] = {}
        self.stop_signals = 0
        self.reload_requested = False
        self.exit_code = 0
        self.scheduler: BlockingScheduler | None = None
        self._dirty: set[str] = set()
        self._rejected: set[tuple[Path, str]] = set()
        self._last_tick = time.monotonic()
        self._last_sample_at = self._last_tick
        self._session_fits: dict[str, tuple[int, float]] = {}
        self._cluster_waits: dict[str, int] = {}

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
        """Hold the state directory, clean up what a killed daemon left, load the records."""
        state = self.settings.state_dir
        secure_state_dir(state)  # private folders, no links followed
        with exclusive(state / "searchd.lock", f"state directory {state}", state / "searchd.pid"):
            load_key(state, create=True)
            n = guard.end_leftovers(state)
            if n:
                log.warning("ended %d leftover process(es) of a previous daemon", n)
            for rec in all_summaries(state):
                clean_temp_files(state / rec.id)
                if rec.state in (S.RUNNING, S.PAUSED):
                    rec.to(S.QUEUED)  # it was running when the last daemon died
                    rec.paused_reason = None
                self.records[rec.id] = rec
                self._dirty.add(rec.id)
            clean_temp_files(state)
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
            sched = BlockingScheduler(executors={"default": DebugExecutor()},
                                      job_defaults={"coalesce": True, "max_instances": 1,
                                                    "misfire_grace_time": None})
            sched.add_job(self.scan, IntervalTrigger(seconds=self.settings.scan_interval),
                          id="scan")
            sched.add_job(self._tick_job, IntervalTrigger(seconds=min(
                self.settings.sample_interval, 1.0)), id="tick")
            sched.add_job(self._watch_job, IntervalTrigger(seconds=WATCH_SECONDS), id="watch")
            self.scheduler = sched
            self.tick()
            if self.scheduler is not None:
                try:
                    sched.start()
                except JobLookupError:
                    # APScheduler 3 updates the job that ran after it returns; when that job
                    # shut the scheduler down, its store is already empty. Nothing is lost.
                    if sched.state != STATE_STOPPED:
                        raise
        return self.exit_code

    def _tick_job(self) -> None:
        self.tick()

    def _watch_job(self) -> None:
        """Between ticks: act at once on a worker's exit or a stop signal (one waitpid),
        and ping the systemd watchdog on time (from this loop: a stuck loop stops pinging).
        After a busy load sample, the confirming one comes early (see ``IdleGate.confirming``)."""
        now = time.monotonic()
        self.notifier.maybe_watchdog(now)
        if self.stop_signals or (self.worker is not None and self.worker.poll() is not None):
            self.tick(now)
        elif (self.worker is not None and self.suspended_since is None and self.gate.confirming
              and now - self._last_sample_at >= self.settings.sample_interval * CONFIRM_FRACTION):
            self.tick(now)

    def shutdown(self, code: int) -> None:
        self.exit_code = code
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        self.scheduler = None

    # --- SIGHUP ------------------------------------------------------------------------------

    def reload(self) -> None:
        """Re-read the configuration without touching the running job.

        Idle settings apply at once; n_jobs, checkpoint_interval, allow_modules and
        max_candidates apply from the next worker start; the directories need a restart.
        """
        if self._reload is None:
            log.info("SIGHUP: no configuration file to reload")
            return
        try:
            new = self._reload()
        except SearchdError as e:
            log.error("SIGHUP: keeping the running configuration: %s", e)
            return
        old = self.settings
        for name in ("state_dir", "jobs_dir"):
            if getattr(new, name) != getattr(old, name):
                log.warning("SIGHUP: %s changes only at a restart (keeping %s)", name,
                            getattr(old, name))
        new = dataclasses.replace(new, state_dir=old.state_dir, jobs_dir=old.jobs_dir)
        changed = [f.name for f in dataclasses.fields(Settings)
                   if getattr(new, f.name) != getattr(old, f.name)]
        if set(changed) & IDLE_SETTINGS:
            self.gate = IdleGate.from_settings(new)
        self.settings = new
        if self.scheduler is not None:
            if "scan_interval" in changed:
                self.scheduler.reschedule_job("scan", trigger=IntervalTrigger(
                    seconds=new.scan_interval))
            if "sample_interval" in changed:
                self.scheduler.reschedule_job("tick", trigger=IntervalTrigger(
                    seconds=min(new.sample_interval, 1.0)))
        log.info("SIGHUP: configuration reloaded; changed: %s",
                 ", ".join(f"{n}={getattr(new, n)!r}" for n in changed) or "nothing")

    # --- scan ------------------------------------------------------------------------------------

    def scan(self) -> None:
        """Accept new job files, notice changed and removed ones, apply cancel requests."""
        files, rejected = scan(self.settings.jobs_dir, self.settings.state_dir)
        for path, reason in rejected:
            if (path, reason) not in self._rejected:  # once, not at every scan
                log.warning("%s: %s", clip(str(path), 300), reason)
        self._rejected = set(rejected)
        for jid, jf in files.items():
            rec = self.records.get(jid)
            if rec is None:
                rec = self.records[jid] = JobRecord(id=jid)
                self._accept(rec, jf)
            elif rec.state == S.INVALID and (jf.digest != rec.spec_digest or (
                    self.settings.dask_scheduler and NO_SCHEDULER in (rec.error or ""))):
                rec.to(S.QUEUED)
                self._accept(rec, jf)
            elif rec.state in (S.FAILED, S.CANCELLED) and jf.mtime > rec.mtime + 1e-6:
                log.info("%s: job file touched; queueing it again", jid)
                rec.to(S.QUEUED)
                rec.deaths, rec.mtime = 0, jf.mtime
                self._dirty.add(jid)
            changed = rec.spec_digest is not None and jf.digest != rec.spec_digest
            if rec.file_changed != changed or rec.file_removed:
                if changed:
                    log.warning("%s: the job file changed; the frozen spec keeps running", jid)
                rec.file_changed, rec.file_removed = changed, False
                self._dirty.add(jid)
        for jid, rec in self.records.items():
            if jid not in files and not rec.file_removed and rec.state != S.INVALID:
                rec.file_removed = True
                self._dirty.add(jid)
                if self.worker is not None and self.worker.job_id == jid:
                    log.info("%s: job file removed; stopping the job (results stay)", jid)
                    self._stop_worker("removed")
            if control.cancel_requested(self.settings.state_dir / jid):
                self._cancel(rec)
        self.files = files

    def _accept(self, rec: JobRecord, jf: JobFile) -> None:
        rec.source, rec.mtime, rec.spec_digest = str(jf.path), jf.mtime, jf.digest
        self._dirty.add(rec.id)
        try:
            if jf.error is not None:  # a symlink, not a regular file, too large, unreadable
                raise JobSpecError(jf.error)
            spec = parse_job(jf.raw, jf.path, self.settings.max_candidates)
        except JobSpecError as e:
            rec.to(S.INVALID, str(e))
            log.error("%s: invalid: %s", rec.id, e)
            return
        freeze(self.settings.state_dir / rec.id, jf)
        rec.priority, rec.fits_total = spec.priority, spec.fits_total
        # with a scheduler, every job runs on the cluster; without, asking for one is an error
        rec.backend = "dask" if self.settings.dask_scheduler else spec.search.backend
        if spec.search.backend == "dask" and not self.settings.dask_scheduler:
            rec.to(S.INVALID, no_scheduler_message(jf.path))
            log.error("%s: invalid: %s", rec.id, rec.error)
            return
        log.info("%s: accepted %s: %d model type(s), %d fits", rec.id, jf.path,
                 len(spec.models), spec.fits_total)

    def _cancel(self, rec: JobRecord) -> None:
        control.clear_cancel(self.settings.state_dir / rec.id)
        if rec.state not in ACTIVE and rec.state != S.FAILED:
            return
        if self.worker is not None and self.worker.job_id == rec.id:
            self._stop_worker("cancelled")
        else:
            rec.to(S.CANCELLED, "cancelled by the operator")
            self._dirty.add(rec.id)

    # --- tick ------------------------------------------------------------------------------------

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        elapsed, self._last_tick = now - self._last_tick, now
        if self.stop_signals:
            self.stop()
            return
        if self.reload_requested:
            self.reload_requested = False
            self.reload()
        self._poll_worker(elapsed)
        self._apply_gate(now)
        if self.worker is None and self.pause_reason is None:
            self._start_next(now)
        self._write_summaries()
        self._notify(now)
        if self.drain and self.worker is None and not self._runnable(now, ignore_backoff=True):
            failed = [r.id for r in self.records.values() if r.state == S.FAILED]
            log.info("drained: every job is done, invalid or failed%s",
                     f" (failed: {', '.join(failed)})" if failed else "")
            self.shutdown(1 if failed else 0)

    def _runnable(self, now: float, ignore_backoff: bool = False) -> list[JobRecord]:
        recs = [r for r in self.records.values()
                if r.state in ACTIVE and not r.file_removed and frozen_path(
                    self.settings.state_dir / r.id) is not None
                and (ignore_backoff or self.not_before.get(r.id, 0) <= now)]
        return sorted(recs, key=lambda r: (-r.priority, r.mtime, r.id))

    def _start_next(self, now: float) -> None:
        runnable = self._runnable(now)
        if not runnable:
            return
        rec = runnable[0]
        self.worker = WorkerProc(self.settings, rec.id, self.log_format)
        rec.to(S.RUNNING)
        rec.started_at = rec.started_at or time.time()
        rec.disk_error = None
        self._session_fits.pop(rec.id, None)
        self._dirty.add(rec.id)

    def _poll_worker(self, elapsed: float) -> None:
        w = self.worker
        if w is None:
            return
        rec = self.records[w.job_id]
        if self.suspended_since is None:
            rec.run_seconds += elapsed
        for ev in w.events():
            self._on_event(rec, ev)
        self._count_fits(rec)
        code = w.poll()
        if code is None:
            return
        for ev in w.events():  # what it said just before exiting
            self._on_event(rec, ev)
        w.close()
        self.worker = None
        self.suspended_since = None
        self._on_exit(rec, w, code)
        self._dirty.add(rec.id)

    def _on_event(self, rec: JobRecord, ev: protocol.Event) -> None:
        if isinstance(ev, protocol.Progress):
            rec.models = ev.models
            done = sum(m["fits_done"] for m in rec.models.values())
            if done > rec.fits_done and rec.deaths:
                rec.deaths = 0  # progress again: deaths count "in a row"
            rec.fits_done = done
            rec.fits_total = sum(m["fits_total"] for m in rec.models.values())
            start = self._session_fits.setdefault(rec.id, (done, rec.run_seconds))
            rate_fits, rate_time = done - start[0], rec.run_seconds - start[1]
            rec.eta_seconds = ((rec.fits_total - done) * rate_time / rate_fits
                               if rate_fits > 0 and rate_time > 0 else None)
            rec.backend = ev.backend
            rec.cluster_workers = ev.cluster_workers
            rec.processes = ev.processes
            if rec.cluster_workers is not None:
                self._cluster_waits.pop(rec.id, None)  # connected: the next loss waits briefly
        elif isinstance(ev, protocol.Dispatching):
            rec.first_task_at = rec.first_task_at or ev.at
        elif isinstance(ev, protocol.Done):
            rec.done_at = ev.at
        elif isinstance(ev, protocol.Invalid | protocol.Failed | protocol.Cluster):
            rec.error = ev.error
        elif isinstance(ev, protocol.Disk):
            rec.disk_error = ev.error
        self._dirty.add(rec.id)

    def _count_fits(self, rec: JobRecord) -> None:
        try:
            rec.fits_computed = (self.settings.state_dir / rec.id / "fits.log").stat().st_size
        except FileNotFoundError:
            pass

    def _on_exit(self, rec: JobRecord, w: WorkerProc, code: int) -> None:
        self._count_fits(rec)
        rec.paused_reason = None
        rec.last_exit = describe_exit(code)
        rec.cluster_workers = None
        if code == Exit.DONE and protocol.Done.kind in w.events_seen:
            rec.deaths = 0
            rec.to(S.DONE)
            rec.finished_at = rec.done_at or rec.finished_at  # the worker's clock, not the tick
            log.info("%s: done: %d fits (%d computed)", rec.id, rec.fits_total, rec.fits_computed)
        elif code == Exit.INVALID:
            rec.to(S.INVALID, rec.error or "invalid job (see the log)")
        elif code == Exit.STOPPED and w.stop_reason is not None:
            if w.stop_reason == "cancelled":
                rec.to(S.CANCELLED, "cancelled by the operator")
            else:
                rec.to(S.QUEUED)
        elif code == Exit.LOCKED:
            log.warning("%s: another process holds the job; retrying later", rec.id)
            rec.to(S.QUEUED)
            self.not_before[rec.id] = time.monotonic() + 10
        elif code == Exit.CLUSTER:  # not a death: the job waits for the cluster, results stay
            n = self._cluster_waits[rec.id] = self._cluster_waits.get(rec.id, 0) + 1
            delay = min(MAX_CLUSTER_WAIT, self.settings.restart_backoff * 2 ** (n - 1))
            log.warning("%s: waiting for the Dask cluster; retrying in %.0fs", rec.id, delay)
            rec.to(S.QUEUED, f"waiting for the Dask cluster: {rec.error or 'unreachable'}")
            self.not_before[rec.id] = time.monotonic() + delay
        elif protocol.Failed.kind in w.events_seen and code == Exit.FAILED:
            rec.to(S.FAILED, rec.error)
        else:
            rec.deaths += 1
            what = describe_exit(code)
            if rec.deaths >= self.settings.max_worker_deaths:
                rec.to(S.FAILED, f"worker died {rec.deaths} times in a row (last: {what})")
            else:
                delay = self.settings.restart_backoff * 2 ** (rec.deaths - 1)
                log.error("%s: worker died (%s); restarting from the checkpoint in %.0fs "
                          "(%d/%d)", rec.id, what, delay, rec.deaths,
                          self.settings.max_worker_deaths)
                rec.to(S.QUEUED, f"worker died ({what})")
                self.not_before[rec.id] = time.monotonic() + delay

    # --- idle gate -------------------------------------------------------------------------------

    def _apply_gate(self, now: float) -> None:
        self._last_sample_at = now
        sample = self.sampler.sample()
        sample = LoadSample(at=now, other_load=sample.other_load, free_memory=sample.free_memory)
        decision = self.gate.update(sample, operator_paused_until=control.read_operator_pause(
            self.settings.state_dir))
        reason = None if decision.run else (decision.reason or "paused")
        # reasons carry running figures ("for 4s"): log the pause and the resume, not each sample
        if reason is not None and self.pause_reason is None:
            log.info("pausing: %s", reason)
        elif reason is None and self.pause_reason is not None:
            log.info("resuming (was %s)", self.pause_reason)
        self.pause_reason = reason
        w = self.worker
        self._show_pause_reason(reason, now)
        if w is None:
            return
        rec = self.records[w.job_id]
        if reason is not None and self.suspended_since is None:
            if w.stop_reason is not None:
                return  # it was told to flush and exit: stopping it again would hang it
            suspend_tree(w.pid)
            self.suspended_since = now
            rec.to(S.PAUSED)
        elif reason is None and self.suspended_since is not None:
            resume_tree(w.pid)
            self.suspended_since = None
            rec.to(S.RUNNING)
        elif (reason is not None and self.suspended_since is not None
              and self.settings.max_suspend
              and now - self.suspended_since > self.settings.max_suspend
              and w.stop_reason is None):
            log.info("%s: suspended for over %.0fs; stopping the worker to free its memory",
                     rec.id, self.settings.max_suspend)
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
        if self.suspended_since is not None:
            resume_tree(w.pid)  # a stopped process never sees SIGTERM
            self.suspended_since = None
        w.terminate(reason)

    def stop(self) -> None:
        """Warm stop: the worker flushes its checkpoint and exits; a second signal kills it."""
        log.info("stopping (signal received)")
        self.notifier.stopping()
        w = self.worker
        if w is not None:
            self._stop_worker("daemon stopping")
            seen = self.stop_signals
            deadline = time.monotonic() + WARM_STOP_SECONDS
            while w.poll() is None and time.monotonic() < deadline:
                if self.stop_signals > seen:
                    log.warning("second signal: cold stop")
                    break
                time.sleep(0.05)
            if w.poll() is None:
                log.warning("%s: worker did not stop in time; killing it", w.job_id)
                _kill_tree(w.pid)
                w.proc.wait(timeout=5)
            self._poll_worker(0.0)
        self._show_pause_reason(None, time.monotonic())  # no daemon, nothing paused
        self._write_summaries()
        self.shutdown(0)

    # --- reporting -------------------------------------------------------------------------------

    def _write_summaries(self) -> None:
        for jid in sorted(self._dirty):
            rec = self.records[jid]
            try:
                write_summary(self.settings.state_dir, rec)
            except OSError as e:
                log.error("%s: cannot write summary.json: %s", jid, e)
                continue
            self._dirty.discard(jid)

    def status_line(self) -> str:
        if self.worker is not None:
            rec = self.records[self.worker.job_id]
            if self.pause_reason:
                return f"paused {rec.id}: {self.pause_reason}"
            running = [f"{n} {m['fits_done']}/{m['fits_total']} fits"
                       for n, m in rec.models.items() if m.get("state") == "running"]
            return f"running {rec.id}: {running[0] if running else 'starting'}"
        queued = [r for r in self.records.values() if r.state in ACTIVE]
        if self.pause_reason and queued:
            return f"paused: {self.pause_reason}"
        return "idle: no jobs" if not queued else f"waiting: {len(queued)} job(s) queued"

    def _notify(self, now: float) -> None:
        self.notifier.status(self.status_line())
        self.notifier.maybe_watchdog(now)


def _kill_tree(pid: int) -> None:
    import psutil
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.resume()
            p.kill()


