"""The idle gate's decisions carried out: sample the load and the sensors, ask the gate (with
the operator's pause file and the run window), suspend or resume the worker's tree, and let a
worker that stayed suspended too long go (``max_suspend``) to free its memory."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from searchd.settings import Settings
from searchd.state import control
from searchd.state.daemon_status import user_activity, write_status
from searchd.state.records import JobRecord, JobState
from searchd.supervisor.gate import CONFIRM_FRACTION, IdleGate
from searchd.supervisor.load import LoadSample
from searchd.supervisor.proctree import ProcessControl
from searchd.supervisor.seams import Clock, Sampler, Worker
from searchd.supervisor.sensors import Sensors, SystemSensors

log = logging.getLogger("searchd")

S = JobState


class Pausing:
    """Owns the gate, the worker tree's suspension and the current pause reason."""

    def __init__(self, settings: Settings, sampler: Sampler, control: ProcessControl,
                 clock: Clock, sensors: Sensors | None = None) -> None:
        self.gate = IdleGate.from_settings(settings)
        self.sampler = sampler
        self.sensors = sensors or SystemSensors()
        #: where keyboard and mouse activity is read from ("logind", ...; empty: nowhere),
        #: once ``pause_while_user_active`` is on and a reading was taken (else None)
        self.idle_sources: tuple[str, ...] | None = None
        #: what searchd.status.json says now (a sentinel until it was first written)
        self._told: dict[str, object] | None | str = "unwritten"
        self.control = control
        self.clock = clock
        #: monotonic time the worker's tree was suspended; None while it runs
        self.suspended_since: float | None = None
        #: why nothing runs now (for operators); None while the gate lets jobs run
        self.reason: str | None = None
        self.last_sample_at = clock.monotonic()

    def reconfigure(self, settings: Settings) -> None:
        self.gate = IdleGate.from_settings(settings)

    def confirm_due(self, now: float, sample_interval: float) -> bool:
        """A busy sample asks for an early confirming one (``IdleGate.confirming``)."""
        return (self.suspended_since is None and self.gate.confirming
                and now - self.last_sample_at >= sample_interval * CONFIRM_FRACTION)

    def decide(self, now: float, settings: Settings) -> str | None:
        """Take a load sample and return why the search must not run now (None: it may)."""
        self.last_sample_at = now
        got = self.sampler.sample()
        sample = LoadSample(at=now, other_load=got.other_load, free_memory=got.free_memory)
        sensed = self.sensors.read(now, settings)
        self._note_idle_sources(sensed.idle_sources, settings)
        wall = self.clock.time()
        decision = self.gate.update(
            sample, sensed=sensed,
            operator_paused_until=control.read_operator_pause(settings.state_dir, now=wall),
            now_wall=datetime.fromtimestamp(wall, UTC))
        reason = None if decision.run else (decision.reason or "paused")
        # reasons carry running figures ("for 4s"): log the pause and the resume, not each sample
        if reason is not None and self.reason is None:
            log.info("pausing: %s", reason)
        elif reason is None and self.reason is not None:
            log.info("resuming (was %s)", self.reason)
        self.reason = reason
        return reason

    @property
    def status_note(self) -> str | None:
        """What ``status`` adds about the sensors: a user rule with nothing to read."""
        if self.idle_sources == ():
            return "pause_while_user_active: no source of keyboard/mouse activity"
        return None

    def _note_idle_sources(self, sources: tuple[str, ...], settings: Settings) -> None:
        """Log which sources the user rule reads, once, and again when they change; and
        tell ``searchd status`` (``state/searchd.status.json``)."""
        if not settings.pause_while_user_active:
            self.idle_sources = None
            self._tell_status(None, settings)
            return
        self._tell_status(user_activity(settings.pause_while_user_active, sources), settings)
        if sources == self.idle_sources:
            return
        if not sources:
            log.warning("pause_while_user_active: no source of keyboard/mouse activity "
                        "(logind has no idle hint, no PS/2 input interrupts); the rule "
                        "cannot pause anything")
        else:
            log.info("pause_while_user_active: keyboard/mouse activity from %s",
                     ", ".join(sources))
        self.idle_sources = sources

    def _tell_status(self, doc: dict[str, object] | None, settings: Settings) -> None:
        if doc != self._told:
            write_status(settings, None if doc is None else {"user_activity": doc})
            self._told = doc

    def carry_out(self, now: float, w: Worker, rec: JobRecord, max_suspend: float) -> bool:
        """Suspend or resume ``w``'s tree as the last decision says; True when it stayed
        suspended longer than ``max_suspend`` (0 = for ever) and should be stopped."""
        if self.reason is not None and self.suspended_since is None:
            if w.stop_reason is not None:
                return False  # it was told to flush and exit: stopping it again would hang it
            self.control.suspend(w.pid)
            self.suspended_since = now
            rec.to(S.PAUSED)
        elif self.reason is None and self.suspended_since is not None:
            self.control.resume(w.pid)
            self.suspended_since = None
            rec.to(S.RUNNING)
        elif (self.reason is not None and self.suspended_since is not None and max_suspend
              and now - self.suspended_since > max_suspend and w.stop_reason is None):
            log.info("%s: suspended for over %.0fs; stopping the worker to free its memory",
                     rec.id, max_suspend)
            return True
        return False

    def release(self, w: Worker) -> None:
        """Resume ``w``'s tree if it is suspended (before a stop: a stopped process never
        sees SIGTERM)."""
        if self.suspended_since is not None:
            self.control.resume(w.pid)
            self.suspended_since = None

    def forget(self) -> None:
        """The worker exited: nothing is suspended any more."""
        self.suspended_since = None


__all__ = ["Pausing"]
