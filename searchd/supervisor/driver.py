"""The production driver: an APScheduler 3.x scheduler whose jobs all run in the main thread
and call the daemon's ``scan`` and ``step`` (tests call them directly)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from apscheduler.executors.debug import DebugExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.base import STATE_STOPPED
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.interval import IntervalTrigger

from searchd.settings import Settings

if TYPE_CHECKING:
    from searchd.supervisor.daemon import Daemon

WATCH_SECONDS = 0.2
STOP_WATCH_SECONDS = 0.05  # the watch job's interval during a warm stop


def _tick_seconds(settings: Settings) -> float:
    return min(settings.sample_interval, 1.0)


class SchedulerDriver:
    """``scan`` every ``scan_interval``; ``step`` every sample (at most a second apart); a
    cheap ``watch`` every 0.2 s that steps at once on a worker's exit or a signal."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        s = daemon.settings
        self.sched = BlockingScheduler(executors={"default": DebugExecutor()},
                                       job_defaults={"coalesce": True, "max_instances": 1,
                                                     "misfire_grace_time": None})
        self.sched.add_job(daemon.scan, IntervalTrigger(seconds=s.scan_interval), id="scan")
        self.sched.add_job(self._tick, IntervalTrigger(seconds=_tick_seconds(s)), id="tick")
        self.sched.add_job(self._watch, IntervalTrigger(seconds=WATCH_SECONDS), id="watch")

    def run(self) -> None:
        """Block until the daemon shuts the scheduler down."""
        try:
            self.sched.start()
        except JobLookupError:
            # APScheduler 3 updates the job that ran after it returns; when that job shut the
            # scheduler down, its store is already empty. Nothing is lost.
            if self.sched.state != STATE_STOPPED:
                raise

    def _tick(self) -> None:
        self.daemon.step()

    def _watch(self) -> None:
        d = self.daemon
        now = d.clock.monotonic()
        d.notifier.maybe_watchdog(now)  # from this loop: a stuck loop stops pinging
        if d.wants_step(now):
            d.step(now)

    def settings_changed(self, new: Settings, changed: frozenset[str]) -> None:
        if "scan_interval" in changed:
            self.sched.reschedule_job("scan", trigger=IntervalTrigger(seconds=new.scan_interval))
        if "sample_interval" in changed:
            self.sched.reschedule_job("tick", trigger=IntervalTrigger(
                seconds=_tick_seconds(new)))

    def stopping(self) -> None:
        """Notice the worker's exit sooner during a warm stop."""
        self.sched.reschedule_job("watch", trigger=IntervalTrigger(seconds=STOP_WATCH_SECONDS))

    def shutdown(self) -> None:
        if self.sched.running:
            self.sched.shutdown(wait=False)


__all__ = ["SchedulerDriver"]
