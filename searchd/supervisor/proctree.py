"""Process control of a worker's tree: suspend (SIGSTOP), resume (SIGCONT) and kill it.

:class:`ProcessControl` is the seam the daemon calls through, so that a test can step the
daemon with a fake; :class:`TreeControl` is the real one (psutil).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

import psutil

from searchd import lifeline
from searchd.lifeline import is_resource_tracker

log = logging.getLogger(__name__)


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


def kill_tree(root_pid: int) -> int:
    """SIGKILL the root and its descendants (resumed first: nothing stays stopped); return
    how many were signalled."""
    try:
        root = psutil.Process(root_pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    n = 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.resume()
            p.kill()
            n += 1
    return n


class ProcessControl(Protocol):
    """What the daemon does to process trees; each returns how many processes it signalled."""

    def suspend(self, root_pid: int) -> int: ...
    def resume(self, root_pid: int) -> int: ...
    def kill(self, root_pid: int) -> int: ...
    def end_leftovers(self, state_dir: Path) -> int: ...
    def lifeline(self, state_dir: Path) -> AbstractContextManager[object]: ...


class TreeControl:
    """The real process control, through psutil."""

    def suspend(self, root_pid: int) -> int:
        return suspend_tree(root_pid)

    def resume(self, root_pid: int) -> int:
        return resume_tree(root_pid)

    def kill(self, root_pid: int) -> int:
        return kill_tree(root_pid)

    def end_leftovers(self, state_dir: Path) -> int:
        return lifeline.end_leftovers(state_dir)

    def lifeline(self, state_dir: Path) -> AbstractContextManager[object]:
        """While it is held, a process outside the worker's tree waits for this daemon to
        die and then kills what it started (:func:`searchd.lifeline.deathwatch`)."""
        return lifeline.deathwatch(state_dir)


__all__ = ["ProcessControl", "TreeControl", "kill_tree", "resume_tree", "suspend_tree"]
