"""Load sampling and the pause/resume decision.

:class:`LoadSampler` measures how busy the machine is *without* searchd's own process tree;
:class:`IdleGate` turns those samples (plus the operator's pause and the run window) into
run/pause decisions with hysteresis; :func:`suspend_tree` and :func:`resume_tree` carry them
out. This module runs in the supervisor, so it must stay light: no scikit-learn here.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

import psutil
from apscheduler.triggers.cron import CronTrigger

from searchd.errors import SettingsError
from searchd.lifeline import is_resource_tracker
from searchd.settings import Settings

log = logging.getLogger(__name__)

#: after a busy sample, the next one comes this fraction of ``sample_interval`` later
CONFIRM_FRACTION = 0.25


@dataclass(frozen=True)
class LoadSample:
    #: monotonic seconds
    at: float
    #: busy time of the machine minus searchd's own tree, as a fraction of all CPUs (0..1)
    other_load: float
    #: available memory as a fraction of RAM (0..1)
    free_memory: float


@dataclass(frozen=True)
class _ProcTimes:
    create_time: float
    ppid: int
    #: user + system seconds of the process itself
    own: float
    #: children_user + children_system: descendants it has waited for, whole lifetimes
    reaped: float


def _busy_seconds(t: Any) -> float:
    """Non-idle CPU seconds of the whole machine since boot."""
    # Guest time is already inside user/nice on Linux; psutil's cpu_percent subtracts it too.
    total = sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)
    return float(total - t.idle - getattr(t, "iowait", 0.0))


def _forks_since_boot() -> int | None:
    """How many processes and threads the kernel has created since boot; None if unknown.

    Linux counts them in /proc/stat. While the count stands still nothing can have joined
    searchd's tree, so the tree need not be listed again.
    """
    try:
        with open("/proc/stat", "rb") as f:
            for line in f:
                if line.startswith(b"processes "):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError) as e:
        log.debug("no fork count in /proc/stat (%s); listing the own tree at every sample", e)
    return None


def _own_tree(root_pid: int) -> list[psutil.Process]:
    """The root and its descendants.

    psutil finds the descendants by reading the parent of every process on the machine
    (~15 µs each, most of a sample's cost), hence :class:`LoadSampler` caches the list.
    """
    try:
        root = psutil.Process(root_pid)
        return [root, *root.children(recursive=True)]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        log.warning("own root process %d is gone; counting only known extra pids", root_pid)
        return []


def _tree_times(tree: list[psutil.Process], extra: Iterable[int]) -> dict[int, _ProcTimes]:
    """CPU times of the ``tree``'s processes and of the ``extra`` pids, by pid."""
    procs = list(tree)
    for pid in set(extra) - {p.pid for p in procs}:
        try:
            procs.append(psutil.Process(pid))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            log.debug("extra own pid %d is gone", pid)
    out: dict[int, _ProcTimes] = {}
    for p in procs:
        try:
            with p.oneshot():
                t, ppid, created = p.cpu_times(), p.ppid(), p.create_time()
        # ZombieProcess is a NoSuchProcess: a process that vanished is simply not counted.
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        out[p.pid] = _ProcTimes(created, ppid, t.user + t.system,
                                t.children_user + t.children_system)
    return out


def _own_delta(prev: dict[int, _ProcTimes], cur: dict[int, _ProcTimes], since: float) -> float:
    """CPU seconds the own tree used between two snapshots; ``since`` is the first's epoch."""

    def same(pid: int) -> bool:
        return pid in prev and pid in cur and prev[pid].create_time == cur[pid].create_time

    # A descendant that exited and was waited for reappears in its parent's children_* times
    # with its *whole* lifetime, of which we counted the part up to the last sample already:
    # owe that part back to the nearest ancestor still alive. If nobody in the tree waited for
    # it (still a zombie, or orphaned), the owed amount is clamped away and we lose at most
    # what it used since the last sample.
    owed: dict[int, float] = {}
    for pid, old in prev.items():
        if same(pid):
            continue
        anc, hops = old.ppid, 0
        while anc in prev and not same(anc) and hops < len(prev):
            anc, hops = prev[anc].ppid, hops + 1
        if same(anc):
            owed[anc] = owed.get(anc, 0.0) + old.own + old.reaped
    total = 0.0
    for pid, now in cur.items():
        if same(pid):
            old = prev[pid]
            total += max(0.0, now.own - old.own)
            total += max(0.0, now.reaped - old.reaped - owed.get(pid, 0.0))
        elif now.create_time >= since - 1.0:
            # Born since the last sample (1 s of slack for create_time's coarse clock):
            # all of its time falls into this interval.
            total += now.own + now.reaped
        # Else an old process that just joined (an extra pid, or reparented into the tree):
        # its past is unknown, so it is counted from the next sample on.
    return total


class LoadSampler:
    """Measures the machine's load other than searchd's own process tree, cheaply."""

    def __init__(self, own_root_pid: int | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.own_root_pid = os.getpid() if own_root_pid is None else own_root_pid
        self._clock = clock
        self._ncpu = psutil.cpu_count() or 1
        self._prev: tuple[float, float, float, dict[int, _ProcTimes]] | None = None
        self._tree: list[psutil.Process] | None = None
        self._forks: int | None = None

    def _members(self) -> list[psutil.Process]:
        """The own tree, listed again only when a process was created or a member left.

        The fork count is read before the listing: a process born during it changes the
        count, so the next sample lists the tree again. (A pid can only be reused after a
        fork, so the cached processes are still the ones that were listed.)
        """
        forks = _forks_since_boot()
        if self._tree is None or forks is None or forks != self._forks:
            self._tree, self._forks = _own_tree(self.own_root_pid), forks
        return self._tree

    def sample(self, own_pids_extra: Iterable[int] = ()) -> LoadSample:
        """Take a sample; ``own_pids_extra`` are pids to count as own (e.g. known orphans).

        The first sample has nothing to compare with and reports ``other_load`` 0.0.
        """
        at, wall = self._clock(), time.time()
        busy = _busy_seconds(psutil.cpu_times())
        tree = self._members()
        procs = _tree_times(tree, own_pids_extra)
        if any(p.pid not in procs for p in tree):
            self._tree = None  # a member left; its children, if any, went elsewhere
        mem = psutil.virtual_memory()
        free = min(1.0, mem.available / mem.total)
        other = 0.0
        if self._prev is not None:
            prev_at, prev_wall, prev_busy, prev_procs = self._prev
            if at > prev_at:
                own = _own_delta(prev_procs, procs, prev_wall)
                other = max(0.0, busy - prev_busy - own) / ((at - prev_at) * self._ncpu)
                other = min(1.0, other)
        self._prev = (at, wall, busy, procs)
        return LoadSample(at=at, other_load=other, free_memory=free)


@dataclass(frozen=True)
class Decision:
    run: bool
    #: why not, for operators; None when running
    reason: str | None = None


class _Hysteresis:
    """Trips after ``pause_after`` bad samples in a row; clears after ``resume_after``
    seconds of good samples, counted from the first good one (a bad one restarts it)."""

    def __init__(self, pause_after: int, resume_after: float) -> None:
        self.pause_after = pause_after
        self.resume_after = resume_after
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
            self.tripped = self.tripped or self._bad_count >= self.pause_after
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


def _when(t: datetime, now: datetime) -> str:
    """HH:MM within the next day, else the date too."""
    return t.strftime("%H:%M" if t - now < timedelta(days=1) else "%Y-%m-%d %H:%M")


class IdleGate:
    """Decides from load samples whether the search may run; pure logic, no I/O.

    Reasons are checked in priority order: operator pause, run window, memory, load.
    Load pauses after ``pause_after`` busy samples in a row. Memory pauses on the first low
    sample (running out of memory is worse than losing a second of work). Both resume only
    after ``resume_after`` seconds of good samples, so a value hovering at the threshold does
    not flap. ``tz`` is the zone of the run window and of times in reasons (None = local).
    """

    def __init__(self, *, max_load: float = Settings.max_load,
                 pause_after: int = Settings.pause_after,
                 resume_after: float = Settings.resume_after,
                 min_free_memory: float = Settings.min_free_memory,
                 ignore_load: bool = Settings.ignore_load,
                 run_window: str | None = Settings.run_window,
                 tz: tzinfo | None = None) -> None:
        self.max_load = max_load
        self.min_free_memory = min_free_memory
        self.ignore_load = ignore_load
        self.run_window = run_window
        self._tz = tz
        self._trigger = _parse_window(run_window, tz)
        self._load = _Hysteresis(pause_after, resume_after)
        self._memory = _Hysteresis(1, resume_after)
        self._paused_since: float | None = None

    @classmethod
    def from_settings(cls, settings: Settings, *, tz: tzinfo | None = None) -> IdleGate:
        return cls(max_load=settings.max_load, pause_after=settings.pause_after,
                   resume_after=settings.resume_after, min_free_memory=settings.min_free_memory,
                   ignore_load=settings.ignore_load, run_window=settings.run_window, tz=tz)

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
        return not self.ignore_load and self._load.pending

    def update(self, sample: LoadSample, *, operator_paused_until: float | None = None,
               now_wall: datetime | None = None) -> Decision:
        """Feed one sample; ``operator_paused_until`` is an epoch or ``math.inf``.

        ``now_wall`` is needed only for the operator pause and the run window; when it is
        not given those two rules read the current time.
        """
        # Every rule sees every sample, so its hysteresis is right when a higher one lifts.
        load = None if self.ignore_load else self._load_reason(sample)
        memory = self._memory_reason(sample)
        reason: str | None = None
        if operator_paused_until is not None or self._trigger is not None:
            now = (datetime.now(self._tz) if now_wall is None else now_wall).astimezone(self._tz)
            reason = self._operator_reason(operator_paused_until, now) or self._window_reason(now)
        reason = reason or memory or load
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


def _signal(p: psutil.Process, action: str) -> bool:
    """``p.suspend()`` or ``p.resume()``; False if the process vanished or is not ours."""
    try:
        getattr(p, action)()
        return True
    except psutil.NoSuchProcess:
        log.debug("process %d vanished before %s", p.pid, action)
    except psutil.AccessDenied:
        log.warning("not allowed to %s process %d", action, p.pid)
    return False


def suspend_tree(root_pid: int, skip: Callable[[psutil.Process], bool] | None = None) -> int:
    """SIGSTOP the root and its descendants except those ``skip`` accepts; return how many.

    Parents go before their children (``children(recursive=True)`` lists them so) and the tree
    is listed again until nothing new shows up: a stopped process cannot fork, so no child
    escapes the pause by being born while we walk the tree.
    """
    skip = is_resource_tracker if skip is None else skip
    handled: set[int] = set()
    count = 0
    try:
        root = psutil.Process(root_pid)
        todo = [root]
        for _ in range(10):  # bounded, in case a skipped process keeps forking
            handled.update(p.pid for p in todo)
            count += sum(_signal(p, "suspend") for p in todo if not skip(p))
            todo = [c for c in root.children(recursive=True) if c.pid not in handled]
            if not todo:
                break
    except psutil.NoSuchProcess:  # the root is gone: its orphans are no longer its tree
        log.debug("process tree of %d vanished while suspending it", root_pid)
    return count


def resume_tree(root_pid: int) -> int:
    """SIGCONT the root and all its descendants; return how many were signalled.

    Children first, the root last: the root (joblib's parent) then finds its workers running
    when it wakes, instead of judging them by a half-resumed tree.
    """
    try:
        root = psutil.Process(root_pid)
        procs = [*reversed(root.children(recursive=True)), root]
    except psutil.NoSuchProcess:
        return 0
    return sum(_signal(p, "resume") for p in procs)


__all__ = ["CONFIRM_FRACTION", "Decision", "IdleGate", "LoadSample", "LoadSampler", "resume_tree",
           "suspend_tree"]
