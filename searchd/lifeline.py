"""No orphans: processes searchd starts die with their parent.

* The worker asks the kernel for SIGKILL when the supervisor dies
  (``PR_SET_PDEATHSIG``), so ``kill -9`` of the supervisor takes it along.
* joblib's loky workers get an initializer that watches their parent: once it
  is gone (re-parented to init or a subreaper) they exit, at the latest when
  the fit in progress returns the GIL. (A death signal would be tied to the
  loky thread that spawned them, which may legitimately end first.)
* Every process searchd starts carries ``SEARCHD_OWNER=<state dir>`` in its
  environment, so a restarted daemon can find what a killed one left behind.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import threading
import time
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

OWNER_ENV = "SEARCHD_OWNER"
PR_SET_PDEATHSIG = 1
WATCH_INTERVAL = 0.25


SUPERVISOR_ENV = "SEARCHD_SUPERVISOR_PID"


def _pdeathsig() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the parent watch still works
        pass


def spawn_hook(parent: int) -> None:
    """``preexec_fn`` for the worker (bind the supervisor's pid): between fork and exec,
    ask for SIGKILL on the supervisor's death (it survives exec); go if it is gone."""
    _pdeathsig()
    if os.getppid() != parent:
        os._exit(1)


def die_with_parent() -> None:
    """In the worker: watch the supervisor too (a second line behind the death signal)."""
    parent = int(os.environ.get(SUPERVISOR_ENV, "0")) or os.getppid()
    if os.getppid() != parent:
        os._exit(1)
    _watch_parent(parent)


def _watch_parent(parent: int) -> None:
    def watch() -> None:
        while True:
            time.sleep(WATCH_INTERVAL)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def child_init(parent: int) -> None:
    """joblib/loky worker initializer: exit when the searchd worker ``parent`` is gone
    (also when it died before this process got here)."""
    if os.getppid() != parent:
        os._exit(1)
    _watch_parent(parent)


def is_resource_tracker(p: psutil.Process) -> bool:
    """joblib/loky's (or multiprocessing's) resource tracker.

    Both run ``-c "from ...resource_tracker import main; main(...)"``; matching that, not
    just the word, spares a parent that mentions it.
    """
    try:
        return any("resource_tracker import main" in part for part in p.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def end_children(timeout: float = 2.0) -> None:
    """Terminate every descendant of this process, then kill what is left; call just
    before exiting.

    Resource trackers are left alone: they ignore SIGTERM (waiting for them cost a whole
    ``timeout`` at every exit), and each exits by itself, after removing what it tracks
    (joblib's memory-mapped arrays, semaphores), once this process, the last holder of its
    pipe, is gone. Killing one would leak those files.
    """
    try:
        children = [c for c in psutil.Process().children(recursive=True)
                    if not is_resource_tracker(c)]
    except psutil.Error:
        return
    for c in children:
        try:
            c.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(children, timeout=timeout)
    for c in alive:
        try:
            c.kill()
        except psutil.Error:
            pass


def owner_tag(state_dir: Path) -> str:
    return str(state_dir.resolve())


def find_leftovers(state_dir: Path, exclude: set[int]) -> list[psutil.Process]:
    """Processes a previous daemon on ``state_dir`` left behind (found by their environment).

    Scans every process once; the daemon does this only at start.
    """
    tag = owner_tag(state_dir)
    found = []
    for p in psutil.process_iter():
        if p.pid in exclude:
            continue
        try:
            if p.environ().get(OWNER_ENV) == tag:
                found.append(p)
        except psutil.Error:
            continue
    return found


def end_leftovers(state_dir: Path) -> int:
    """Resume and kill what a killed daemon on ``state_dir`` left; returns how many."""
    me = psutil.Process()
    exclude = {me.pid} | {c.pid for c in me.children(recursive=True)}
    found = find_leftovers(state_dir, exclude)
    for p in found:
        try:
            p.resume()  # a suspended process must run to die cleanly... SIGKILL works anyway
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(found, timeout=3)
    for p in found:
        log.warning("ended leftover process %d of a previous daemon on %s", p.pid, state_dir)
    return len(found)
