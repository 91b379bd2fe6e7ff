"""Load sampling: how busy the machine is *without* searchd's own process tree.

"Other load" is the machine's busy CPU time minus the own tree's, per sample; the own tree's
time is summed cheaply (the tree is listed again only after a fork) and a reaped child's
lifetime is not counted twice. This runs in the supervisor: no scikit-learn here.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import psutil

log = logging.getLogger(__name__)


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


def forks_since_boot(stat: str | os.PathLike[str] = "/proc/stat") -> int | None:
    """How many processes and threads the kernel has created since boot; None if unknown.

    Linux counts them in /proc/stat. While the count stands still nothing can have joined
    searchd's tree (nor started anywhere), so the tree need not be listed again.
    """
    try:
        with open(stat, "rb") as f:
            for line in f:
                if line.startswith(b"processes "):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError) as e:
        log.debug("no fork count in /proc/stat (%s); listing the own tree at every sample", e)
    return None


def _forks_since_boot() -> int | None:
    return forks_since_boot()


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


__all__ = ["LoadSample", "LoadSampler", "forks_since_boot"]
