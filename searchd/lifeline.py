"""No orphans: processes searchd starts die with their parent, stopped or running.

* The worker asks the kernel for SIGKILL when the supervisor dies
  (``PR_SET_PDEATHSIG``), so ``kill -9`` of the supervisor takes it along; the worker logs
  when the request failed (:func:`die_with_parent`).
* joblib's loky workers get an initializer that watches their parent: once it
  is gone (re-parented to init or a subreaper) they exit, at the latest when
  the fit in progress returns the GIL. (A death signal would be tied to the
  loky thread that spawned them, which may legitimately end first.)
* A stopped (suspended) process notices nothing, so the supervisor also leaves a
  *deathwatch* (:func:`deathwatch`): a small process outside the worker's tree, never
  suspended, that waits for the supervisor to go and then SIGKILLs (stopped or not) every
  process it started, resource trackers excepted: they exit by themselves, after removing
  what they track, once the processes holding their pipe are gone.
* Every process searchd starts carries ``SEARCHD_OWNER=<state dir>`` in its
  environment, so a restarted daemon can find what a killed one left behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

OWNER_ENV = "SEARCHD_OWNER"
PR_SET_PDEATHSIG = 1
PR_GET_PDEATHSIG = 2
WATCH_INTERVAL = 0.25


SUPERVISOR_ENV = "SEARCHD_SUPERVISOR_PID"


def _pdeathsig() -> int:
    """Ask for SIGKILL when the parent (thread) dies; returns 0 or the errno. Safe between
    fork and exec: no logging, no allocation beyond ctypes' own."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            return ctypes.get_errno() or -1
    except (OSError, AttributeError):  # no libc prctl (not Linux)
        return -1
    return 0


def pdeathsig_problem() -> str | None:
    """Why this process will *not* get SIGKILL when its parent dies, or None if it will."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        sig = ctypes.c_int(0)
        if libc.prctl(PR_GET_PDEATHSIG, ctypes.byref(sig), 0, 0, 0) != 0:
            return f"prctl(PR_GET_PDEATHSIG) failed: {os.strerror(ctypes.get_errno())}"
    except (OSError, AttributeError) as e:
        return f"no prctl on this platform ({e})"
    if sig.value != signal.SIGKILL:
        return f"the parent-death signal is {sig.value}, not SIGKILL"
    return None


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
    # spawn_hook asked for the death signal between fork and exec, where nothing may log
    problem = pdeathsig_problem()
    if problem is not None:
        log.warning("PR_SET_PDEATHSIG did not take (%s): the worker relies on watching "
                    "the supervisor and on its deathwatch", problem)
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


def limit_address_space(nbytes: int) -> int:
    """Cap this process's address space (``RLIMIT_AS``, inherited by the processes it
    starts) at ``nbytes``, so that a runaway allocation fails as ``MemoryError`` instead of
    waking the out-of-memory killer; returns the cap set.

    Never below what the process already maps plus 256 MiB (a cap under that would fail
    the next allocation, not the runaway one), never above the hard limit.
    """
    import resource

    floor = psutil.Process().memory_info().vms + 256 * 2**20
    if nbytes < floor:
        log.warning("max_memory gives each process %d MiB, less than it already maps plus "
                    "256 MiB; using %d MiB", nbytes >> 20, floor >> 20)
        nbytes = floor
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        nbytes = min(nbytes, hard)
    resource.setrlimit(resource.RLIMIT_AS, (nbytes, hard))
    log.info("address space of the job's processes capped at %d MiB each", nbytes >> 20)
    return nbytes


# --- the deathwatch ------------------------------------------------------------------------


def end_orphans(state_dir: Path, supervisor: int) -> int:
    """SIGKILL what the dead ``supervisor`` on ``state_dir`` started (its workers and their
    pools, stopped or not), except resource trackers; returns how many."""
    tag, me = owner_tag(state_dir), os.getpid()
    found = []
    for p in psutil.process_iter():
        if p.pid == me:
            continue
        try:
            env = p.environ()
            if env.get(OWNER_ENV) == tag and env.get(SUPERVISOR_ENV) == str(supervisor) \
                    and not is_resource_tracker(p):
                p.kill()  # delivered to stopped processes too
                found.append(p)
        except psutil.Error:
            continue
    psutil.wait_procs(found, timeout=3)
    return len(found)


@contextlib.contextmanager
def deathwatch(state_dir: Path) -> Iterator[None]:
    """While held, a detached process (in its own session, not this one's child, so no tree
    walk sees it and no group kill takes it) waits on a pipe from this process; when the
    pipe closes, because this process exited or died, it runs :func:`end_orphans`."""
    r, w = os.pipe()  # not inheritable: only the deathwatch gets the read end, as stdin
    env = {k: v for k, v in os.environ.items() if k not in (OWNER_ENV, SUPERVISOR_ENV)}
    try:
        starter = subprocess.Popen(
            [sys.executable, "-m", "searchd.lifeline", str(state_dir.resolve()),
             str(os.getpid())], stdin=r, env=env, start_new_session=True)
    finally:
        os.close(r)
    try:
        starter.wait(timeout=30)  # it forks the watcher and exits at once
    except subprocess.TimeoutExpired:
        log.warning("the deathwatch did not start in 30 s; going on without it")
    try:
        yield
    finally:
        os.close(w)


def _deathwatch_main(state_dir: str, supervisor: int) -> int:
    if os.fork() > 0:  # detach: the supervisor reaps the starter, init the watcher
        return 0
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is for the daemon
    while True:
        try:
            if not os.read(0, 4096):
                break
        except InterruptedError:
            continue
        except OSError:
            break
    n = end_orphans(Path(state_dir), supervisor)
    if n:
        print(f"searchd deathwatch: supervisor {supervisor} is gone; killed {n} process(es) "
              f"it had started", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_deathwatch_main(sys.argv[1], int(sys.argv[2])))
