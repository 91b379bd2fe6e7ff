"""What the workstation-etiquette rules look at: power, CPU temperatures, which exclusive
programs run, and how long ago the keyboard or mouse was used.

:class:`SystemSensors` reads the machine (psutil, /proc, logind) and only what the settings
turn on; a test passes its own :class:`Sensors`. Everything here is cheap enough to run in
the supervisor once a second: no process is listed while the kernel's fork count stands
still, and logind is asked every :data:`LOGIND_EVERY` seconds, not every sample.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import psutil

from searchd.settings import Settings
from searchd.supervisor.load import forks_since_boot

log = logging.getLogger(__name__)

#: psutil's names of chips that measure the CPU (Intel, AMD, ARM boards); when none is
#: present the ACPI thermal zone stands in. Disks, Wi-Fi cards, GPUs and batteries are not
#: the CPU's heat and are left out.
CPU_CHIPS = ("coretemp", "k10temp", "zenpower", "cpu_thermal", "cpu-thermal", "x86_pkg_temp",
             "soc_thermal", "cpu")
FALLBACK_CHIPS = ("acpitz",)
#: seconds a newly seen process is looked at again: the name a fork gets is its parent's
#: until it execs, which may come a little later (a launcher script, a shell)
RECHECK_FOR = 5.0
#: seconds between full listings of the processes, in case a pid was reused unseen
FULL_SCAN_EVERY = 60.0
#: seconds between two questions to logind (each one runs ``loginctl``)
LOGIND_EVERY = 10.0
#: /proc/interrupts lines of input devices with an interrupt of their own: PS/2 keyboards
#: and touchpads (most laptops' built-in ones). USB keyboards share their controller's
#: interrupt with disks and cameras, so they cannot be told apart there.
INPUT_IRQS = ("i8042",)


@dataclass(frozen=True)
class Sensed:
    """One reading of the sensors the etiquette rules need."""

    #: the machine runs on battery (False on AC, and on machines without a battery)
    on_battery: bool = False
    #: CPU temperature sensors, label → °C (empty: none readable, or the rule is off)
    temperatures: Mapping[str, float] = field(default_factory=dict)
    #: names from ``exclusive_apps`` that have a running process
    apps: frozenset[str] = frozenset()
    #: seconds since the last keyboard or mouse input; None: unknown (no source, rule off)
    user_idle: float | None = None
    #: the source ``user_idle`` comes from (the one that saw input last), e.g. "logind"
    idle_source: str | None = None
    #: every source that answered (empty: none is available, or the rule is off)
    idle_sources: tuple[str, ...] = ()


class Sensors(Protocol):
    def read(self, now: float, settings: Settings) -> Sensed:
        """Read what ``settings`` turn on; ``now`` is monotonic seconds."""
        ...


# --- exclusive programs ------------------------------------------------------------------------

class AppWatch:
    """Which of ``names`` have a running process, without reading every process each second.

    A process can only appear after a fork, so the pids are listed (one ``listdir`` of
    /proc) only when the kernel's fork count moved, and only pids not seen before have their
    name read. A new pid is read again for :data:`RECHECK_FOR` seconds (a fork still carries
    its parent's name until it execs), a matching one at every call (it may have exited),
    and every :data:`FULL_SCAN_EVERY` seconds every pid is read again (a pid reused between
    two listings would otherwise go unseen).
    """

    def __init__(self, names: Iterable[str], proc: Path = Path("/proc"),
                 forks: Callable[[], int | None] | None = None) -> None:
        self.names = frozenset(names)
        self._proc = proc
        self._forks = forks or (lambda: forks_since_boot(proc / "stat"))
        self._last_forks: int | None = None
        self._known: set[int] = set()
        self._young: dict[int, float] = {}
        self._matched: dict[int, str] = {}
        self._full_at: float | None = None
        #: pids whose name was read, in all (tests count them)
        self.reads = 0

    def _listing(self) -> set[int]:
        try:
            return {int(n) for n in os.listdir(self._proc) if n.isdigit()}
        except OSError as e:
            log.warning("exclusive_apps: cannot list %s: %s", self._proc, e)
            return set()

    def _name_of(self, pid: int) -> str | None:
        """The entry of ``names`` that ``pid`` runs, if any."""
        self.reads += 1
        try:
            comm = (self._proc / str(pid) / "comm").read_bytes().decode(errors="replace")
        except OSError:  # gone, or not ours to read
            return None
        comm = comm.rstrip("\n")
        if comm in self.names:
            return comm
        # the kernel keeps 15 characters of a name; the command line has all of it
        long = [n for n in self.names if len(n) > 15 and n[:15] == comm]
        if long:
            try:
                argv0 = (self._proc / str(pid) / "cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                return None
            base = os.path.basename(argv0.decode(errors="replace"))
            return base if base in long else None
        return None

    def running(self, now: float) -> frozenset[str]:
        if not self.names:
            return frozenset()
        forks = self._forks()
        full = self._full_at is None or now - self._full_at >= FULL_SCAN_EVERY
        once: set[int] = set()
        if full or forks is None or forks != self._last_forks:
            # the count is read before the listing: a fork during it shows at the next call
            first = self._full_at is None
            self._last_forks = forks
            pids = self._listing()
            for pid in pids - self._known if not first else ():
                self._young[pid] = now
            self._known = pids
            for gone in [p for p in self._matched if p not in pids]:
                del self._matched[gone]
            if full:
                self._full_at, once = now, pids
        for pid in [p for p, seen in self._young.items() if now - seen >= RECHECK_FOR]:
            del self._young[pid]
        for pid in once | set(self._young) | set(self._matched):
            name = self._name_of(pid)
            if name is None:
                self._matched.pop(pid, None)
            else:
                self._matched[pid] = name
        return frozenset(self._matched.values())


# --- keyboard and mouse ------------------------------------------------------------------------

class InterruptWatch:
    """Input seen as the interrupt counts of PS/2 input devices (:data:`INPUT_IRQS`) growing.

    Until they first grow, input is taken to have come when watching began: a daemon
    started by someone at the keyboard waits out the rule's time once.
    """

    name = "/proc/interrupts (i8042)"

    def __init__(self, path: Path = Path("/proc/interrupts")) -> None:
        self._path = path
        self._count: int | None = None
        self._last_input: float | None = None

    def _read(self) -> int | None:
        try:
            text = self._path.read_text(errors="replace")
        except OSError:
            return None
        total, found = 0, False
        for line in text.splitlines()[1:]:
            if not any(irq in line for irq in INPUT_IRQS):
                continue
            found = True
            # "  1:  9  0  IO-APIC  1-edge  i8042": the counts follow the number, one per CPU
            total += sum(int(f) for f in line.split()[1:] if f.isdigit())
        return total if found else None

    def idle(self, now: float) -> float | None:
        count = self._read()
        if count is None:
            return None
        if self._count is None or count != self._count:
            self._last_input = now
        self._count = count
        assert self._last_input is not None
        return max(0.0, now - self._last_input)


def logind_idle(text: str, wall: float) -> float | None:
    """Seconds idle from ``loginctl show-... -p IdleHint -p IdleSinceHint`` output.

    ``IdleHint=yes`` since a time: idle since then. ``no`` with a time: the desktop said the
    user came back, so active now. ``no`` without a time: nobody ever set the hint (a
    desktop that does not report idleness), which says nothing.
    """
    props = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    try:
        since = int(props.get("IdleSinceHint", "0")) / 1e6
    except ValueError:
        return None
    if props.get("IdleHint") == "yes":
        return max(0.0, wall - since) if since else None
    if props.get("IdleHint") == "no" and since:
        return 0.0
    return None


class LogindWatch:
    """logind's idle hint of the seat (or of every session), from ``loginctl``.

    Desktops set the hint only after their own idle delay (GNOME's is 5 minutes by default),
    so "active" here means active within that delay. Asked every :data:`LOGIND_EVERY`
    seconds; in between, the time since the answer is added to it.
    """

    name = "logind"

    def __init__(self, loginctl: str | None = None,
                 run: Callable[[list[str]], str | None] | None = None) -> None:
        self._loginctl = loginctl or shutil.which("loginctl")
        self._run = run or self._call
        self._asked_at: float | None = None
        self._answer: float | None = None

    def _call(self, argv: list[str]) -> str | None:
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=2.0, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            log.debug("%s: %s", argv[0], e)
            return None
        return p.stdout if p.returncode == 0 else None

    def _ask(self) -> float | None:
        if self._loginctl is None:
            return None
        props = ["-p", "IdleHint", "-p", "IdleSinceHint"]
        for what in (["show-seat", "seat0"], ["show-session"]):  # no id: the manager
            out = self._run([self._loginctl, *what, *props])
            if out is not None:
                return logind_idle(out, time.time())
        return None

    def idle(self, now: float) -> float | None:
        if self._asked_at is None or now - self._asked_at >= LOGIND_EVERY:
            self._asked_at, self._answer = now, self._ask()
        if self._answer is None:
            return None
        return self._answer + (now - self._asked_at)


class _IdleSource(Protocol):
    name: str

    def idle(self, now: float) -> float | None: ...


def user_idle(sources: Iterable[_IdleSource], now: float) -> Sensed:
    """The shortest idle time any source reports, which source that is, and which answered."""
    best: tuple[float | None, str | None] = (None, None)
    answered = []
    for s in sources:
        got = s.idle(now)
        if got is None:
            continue
        answered.append(s.name)
        if best[0] is None or got < best[0]:
            best = (got, s.name)
    return Sensed(user_idle=best[0], idle_source=best[1], idle_sources=tuple(answered))


# --- the real sensors --------------------------------------------------------------------------

def on_battery() -> bool:
    """True while discharging; no battery, or an unknown plug state, counts as AC."""
    read = getattr(psutil, "sensors_battery", None)
    try:
        battery = read() if read is not None else None
    except (OSError, RuntimeError) as e:
        log.debug("battery: %s", e)
        return False
    return battery is not None and battery.power_plugged is False


def cpu_temperatures() -> dict[str, float]:
    """label → °C of the CPU's sensors (:data:`CPU_CHIPS`, else :data:`FALLBACK_CHIPS`)."""
    read = getattr(psutil, "sensors_temperatures", None)
    try:
        chips = read() if read is not None else {}
    except (OSError, RuntimeError) as e:
        log.debug("temperatures: %s", e)
        return {}
    names = [c for c in chips if c in CPU_CHIPS] or [c for c in chips if c in FALLBACK_CHIPS]
    out: dict[str, float] = {}
    for chip in names:
        for i, t in enumerate(chips[chip]):
            if t.current is not None and t.current > 0:  # 0 °C: an unpopulated sensor
                out[f"{chip} {t.label or i}"] = float(t.current)
    return out


class SystemSensors:
    """The machine's own sensors, reading only what the settings ask for."""

    def __init__(self) -> None:
        self._apps: AppWatch | None = None
        self._input: list[_IdleSource] = [LogindWatch(), InterruptWatch()]

    def read(self, now: float, settings: Settings) -> Sensed:
        names = frozenset(settings.exclusive_apps)
        if self._apps is None or self._apps.names != names:
            self._apps = AppWatch(names)
        user = user_idle(self._input, now) if settings.pause_while_user_active else Sensed()
        return Sensed(
            on_battery=settings.on_battery == "pause" and on_battery(),
            temperatures=cpu_temperatures() if settings.max_temperature else {},
            apps=self._apps.running(now), user_idle=user.user_idle,
            idle_source=user.idle_source, idle_sources=user.idle_sources)


__all__ = ["AppWatch", "InterruptWatch", "LogindWatch", "Sensed", "Sensors", "SystemSensors",
           "cpu_temperatures", "logind_idle", "on_battery", "user_idle"]
