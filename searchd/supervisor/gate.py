"""The pause/resume decision: :class:`IdleGate` turns load samples, the operator's pause and
the run window into run/pause decisions with hysteresis. Pure logic, no I/O."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

from apscheduler.triggers.cron import CronTrigger

from searchd.errors import SettingsError
from searchd.settings import Settings, parse_seconds
from searchd.supervisor.load import LoadSample
from searchd.supervisor.sensors import Sensed

log = logging.getLogger(__name__)

#: after a busy sample, the next one comes this fraction of ``sample_interval`` later
CONFIRM_FRACTION = 0.25
#: a heat pause lifts once every sensor is this many °C below ``max_temperature``
COOL_MARGIN = 5.0


@dataclass(frozen=True)
class Decision:
    run: bool
    #: why not, for operators; None when running
    reason: str | None = None


class _Hysteresis:
    """Trips after ``pause_after`` bad samples in a row, or once bad samples have lasted
    ``grace`` seconds when that is given; clears after ``resume_after`` seconds of good
    samples, counted from the first good one (a bad one restarts it)."""

    def __init__(self, pause_after: int, resume_after: float,
                 grace: float | None = None) -> None:
        self.pause_after = pause_after
        self.resume_after = resume_after
        self.grace = grace
        self.tripped = False
        self.bad_since: float | None = None
        self.good_since: float | None = None
        self._bad_count = 0

    def update(self, bad: bool, at: float) -> bool:
        if bad:
            if self.bad_since is None:
                self.bad_since, self._bad_count = at, 0
            self._bad_count += 1
            self.good_since = None
            due = (self._bad_count >= self.pause_after if self.grace is None
                   else at - self.bad_since >= self.grace)
            self.tripped = self.tripped or due
        else:
            self.bad_since, self._bad_count = None, 0
            if self.tripped:
                if self.good_since is None:
                    self.good_since = at
                if at - self.good_since >= self.resume_after:
                    self.tripped, self.good_since = False, None
        return self.tripped

    @property
    def pending(self) -> bool:
        """Some bad samples seen, not yet enough to trip."""
        return not self.tripped and self._bad_count > 0

    def elapsed(self, at: float) -> str:
        """``for 4s`` of bad samples, or ``for 8s of 20s`` of the good ones needed to clear."""
        if self.bad_since is not None:
            return f"for {at - self.bad_since:.0f}s"
        good = 0.0 if self.good_since is None else at - self.good_since
        return f"for {good:.0f}s of {self.resume_after:.0f}s"


def _pct(x: float) -> str:
    return f"{x:.0%}"


def _limit(x: float) -> str:
    return f"{round(x * 100, 1):g}%"


def _grace(pause_after: int | str) -> tuple[int, float | None]:
    """``pause_after`` as (samples, None) or, for a duration such as "10s", (1, seconds)."""
    if isinstance(pause_after, int):
        return pause_after, None
    seconds = parse_seconds(pause_after)
    if seconds is None:
        raise SettingsError(f"pause_after: expected a count or a duration, got {pause_after!r}")
    return 1, seconds


def _duration(seconds: float) -> str:
    return f"{seconds / 60:g}m" if seconds >= 60 and seconds % 60 == 0 else f"{seconds:.0f}s"


def _when(t: datetime, now: datetime) -> str:
    """HH:MM within the next day, else the date too."""
    return t.strftime("%H:%M" if t - now < timedelta(days=1) else "%Y-%m-%d %H:%M")


class IdleGate:
    """Decides from load samples and sensor readings whether the search may run; pure
    logic, no I/O.

    Reasons are checked in priority order: operator pause, run window, battery, exclusive
    programs, the user at the keyboard, heat, memory, load; ``ignore_load`` turns off the
    last one only. Load and heat pause after ``pause_after`` bad samples in a row (or once
    bad samples have lasted ``pause_after`` when it is a duration: a grace period). Memory,
    battery and exclusive programs pause on the first bad sample. Load, heat, memory and
    exclusive programs resume only after ``resume_after`` seconds of good samples, so a value
    hovering at the threshold does not flap; battery resumes on AC at once, the user rule
    once the input is ``pause_while_user_active`` old. ``tz`` is the zone of the run window
    and of times in reasons (None = local).
    """

    #: the settings it is made from: a reload that changes one makes a new gate
    SETTINGS = frozenset({"max_load", "pause_after", "resume_after", "min_free_memory",
                          "ignore_load", "run_window", "on_battery", "max_temperature",
                          "exclusive_apps", "pause_while_user_active"})

    def __init__(self, *, max_load: float = Settings.max_load,
                 pause_after: int | str = Settings.pause_after,
                 resume_after: float = Settings.resume_after,
                 min_free_memory: float = Settings.min_free_memory,
                 ignore_load: bool = Settings.ignore_load,
                 run_window: str | None = Settings.run_window,
                 on_battery: str = Settings.on_battery,
                 max_temperature: float = Settings.max_temperature,
                 exclusive_apps: tuple[str, ...] = Settings.exclusive_apps,
                 pause_while_user_active: float = Settings.pause_while_user_active,
                 tz: tzinfo | None = None) -> None:
        self.max_load = max_load
        self.min_free_memory = min_free_memory
        self.ignore_load = ignore_load
        self.run_window = run_window
        self.pause_on_battery = on_battery == "pause"
        self.max_temperature = max_temperature
        self.exclusive_apps = frozenset(exclusive_apps)
        self.pause_while_user_active = pause_while_user_active
        self._tz = tz
        self._trigger = _parse_window(run_window, tz)
        count, grace = _grace(pause_after)
        self._load = _Hysteresis(count, resume_after, grace)
        self._memory = _Hysteresis(1, resume_after)
        self._heat = _Hysteresis(count, resume_after, grace)
        self._apps = _Hysteresis(1, resume_after)
        self._apps_seen: frozenset[str] = frozenset()
        self._paused_since: float | None = None

    @classmethod
    def from_settings(cls, settings: Settings, *, tz: tzinfo | None = None) -> IdleGate:
        return cls(max_load=settings.max_load, pause_after=settings.pause_after,
                   resume_after=settings.resume_after, min_free_memory=settings.min_free_memory,
                   ignore_load=settings.ignore_load, run_window=settings.run_window,
                   on_battery=settings.on_battery, max_temperature=settings.max_temperature,
                   exclusive_apps=settings.exclusive_apps,
                   pause_while_user_active=settings.pause_while_user_active, tz=tz)

    @property
    def paused_since(self) -> float | None:
        """Monotonic time (a sample's ``at``) the current pause began; None while running."""
        return self._paused_since

    @property
    def confirming(self) -> bool:
        """The last load sample was busy but the pause has not tripped yet.

        The supervisor then samples again after a fraction of ``sample_interval``
        (:data:`CONFIRM_FRACTION`): ``pause_after`` samples still decide, but the
        confirming ones need not wait a whole interval each, so a pause lands within about
        1.5 s of the load starting rather than 2-2.5 s.
        """
        # A grace period in seconds is timed by the samples' own clock: no early ones.
        return not self.ignore_load and self._load.grace is None and self._load.pending

    def update(self, sample: LoadSample, *, sensed: Sensed | None = None,
               operator_paused_until: float | None = None,
               now_wall: datetime | None = None) -> Decision:
        """Feed one sample and the sensors' reading taken with it (None: nothing sensed);
        ``operator_paused_until`` is an epoch or ``math.inf``.

        ``now_wall`` is needed only for the operator pause and the run window; when it is
        not given those two rules read the current time.
        """
        sensed = sensed or Sensed()
        # Every rule sees every sample, so its hysteresis is right when a higher one lifts.
        load = None if self.ignore_load else self._load_reason(sample)
        memory = self._memory_reason(sample)
        heat = self._heat_reason(sensed, sample.at)
        apps = self._apps_reason(sensed, sample.at)
        reason: str | None = None
        if operator_paused_until is not None or self._trigger is not None:
            now = (datetime.now(self._tz) if now_wall is None else now_wall).astimezone(self._tz)
            reason = self._operator_reason(operator_paused_until, now) or self._window_reason(now)
        battery = "on battery" if self.pause_on_battery and sensed.on_battery else None
        reason = (reason or battery or apps or self._user_reason(sensed) or heat or memory
                  or load)
        if reason is None:
            if self._paused_since is not None:
                log.debug("idle gate: resuming after %.0fs", sample.at - self._paused_since)
            self._paused_since = None
            return Decision(run=True)
        if self._paused_since is None:
            log.debug("idle gate: pausing: %s", reason)
            self._paused_since = sample.at
        return Decision(run=False, reason=reason)

    def _load_reason(self, s: LoadSample) -> str | None:
        busy = s.other_load > self.max_load
        if not self._load.update(busy, s.at):
            return None
        return (f"other load {_pct(s.other_load)} {'>' if busy else '<='} "
                f"{_limit(self.max_load)} {self._load.elapsed(s.at)}")

    def _memory_reason(self, s: LoadSample) -> str | None:
        low = s.free_memory < self.min_free_memory
        if not self._memory.update(low, s.at):
            return None
        text = (f"low memory: {_pct(s.free_memory)} free {'<' if low else '>='} "
                f"{_limit(self.min_free_memory)}")
        return text if low else f"{text} {self._memory.elapsed(s.at)}"

    def _heat_reason(self, s: Sensed, at: float) -> str | None:
        if not self.max_temperature or not s.temperatures:
            if self._heat.tripped and not s.temperatures:  # sensors gone: nothing to wait for
                self._heat = _Hysteresis(self._heat.pause_after, self._heat.resume_after,
                                         self._heat.grace)
            return None
        label, hottest = max(s.temperatures.items(), key=lambda kv: kv[1])
        # tripped, it stays bad until every sensor is COOL_MARGIN below the limit
        limit = self.max_temperature - (COOL_MARGIN if self._heat.tripped else 0.0)
        hot = hottest > limit
        if not self._heat.update(hot, at):
            return None
        cool = self.max_temperature - COOL_MARGIN
        if hottest > self.max_temperature:
            return (f"hot: {label} {hottest:.0f}°C > {self.max_temperature:g}°C "
                    f"{self._heat.elapsed(at)}")
        if hot:
            return f"cooling: {label} {hottest:.0f}°C, resumes below {cool:g}°C"
        return f"cooling: {hottest:.0f}°C <= {cool:g}°C {self._heat.elapsed(at)}"

    def _apps_reason(self, s: Sensed, at: float) -> str | None:
        apps = s.apps & self.exclusive_apps
        if apps:
            self._apps_seen = apps
        if not self._apps.update(bool(apps), at):
            return None
        names = ", ".join(sorted(self._apps_seen))
        if apps:
            return f"exclusive app running: {names}"
        return f"exclusive app {names} exited {self._apps.elapsed(at)}"

    def _user_reason(self, s: Sensed) -> str | None:
        limit = self.pause_while_user_active
        if not limit or s.user_idle is None or s.user_idle >= limit:
            return None
        return f"user active {s.user_idle:.0f}s ago < {_duration(limit)} ({s.idle_source})"

    def _operator_reason(self, until: float | None, now: datetime) -> str | None:
        if until is None:
            return None
        if math.isinf(until):
            return "paused by operator"
        if now.timestamp() >= until:
            return None
        end = datetime.fromtimestamp(until, now.tzinfo)
        return f"paused by operator until {_when(end, now)}"

    def _window_reason(self, now: datetime) -> str | None:
        if self._trigger is None:
            return None
        now = now.astimezone(self._trigger.timezone)
        minute = now.replace(second=0, microsecond=0)
        if self._trigger.get_next_fire_time(None, minute) == minute:
            return None
        nxt = self._trigger.get_next_fire_time(None, now)
        if nxt is None:  # unreachable for a validated window, unless the year runs out
            return "outside run window (never again)"
        return f"outside run window (next {_when(nxt, now)})"


def _parse_window(expr: str | None, tz: tzinfo | None) -> Any:
    """A CronTrigger for ``expr`` (None = always), or SettingsError naming the value."""
    if expr is None:
        return None
    try:
        trigger = CronTrigger.from_crontab(expr, timezone=tz)
    except ValueError as e:
        raise SettingsError(f"run_window: bad crontab expression {expr!r}: {e}") from None
    if trigger.get_next_fire_time(None, datetime.now(trigger.timezone)) is None:
        raise SettingsError(f"run_window: crontab expression {expr!r} never matches")
    return trigger


__all__ = ["CONFIRM_FRACTION", "Decision", "IdleGate"]
