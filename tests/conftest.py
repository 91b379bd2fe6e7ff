"""Shared fixtures: a private jobs/ and state/ per test, and daemons that are always reaped."""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from searchd.lifeline import find_leftovers

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _no_user_config(tmp_path_factory: pytest.TempPathFactory,
                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's ~/.config/searchd/searchd.toml (the user service's) must not steer tests."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.getbasetemp() / "no-xdg-config"))


#: the longest tests first (measured: a clean-clone run under ``-n 3`` on 2 cores), so that
#: pytest-xdist's workers end together instead of one running the kill storm alone at the
#: end; substrings of node ids, in order, the rest after them in file order. With
#: ``--dist loadgroup --no-loadscope-reorder`` (pyproject's addopts) xdist hands each worker
#: two tests (or ``xdist_group``s: the modules whose module-scoped fixture runs a daemon keep
#: their tests on one worker) to begin with, in this order, then one more as each ends: the
#: two longest are 3rd and 5th, so that no worker begins with both.
LONGEST_FIRST = (
    "test_faults.py::test_kill_storm", "test_example_e2e.py", "test_dask.py::test_scheduler_lost",
    "test_dask.py",
    "test_hostile_jobs.py::test_mutated", "test_etiquette.py::test_a_real_exclusive",
    "test_security_files.py::test_the_daemon_serves", "test_poison.py", "test_checkpoint.py",
    "test_halving.py", "test_security_files.py", "test_worker_limits.py",
    "test_idle_daemon.py", "test_crash.py", "test_faults.py", "test_report",
    "test_service.py", "test_chains", "test_cli.py", "test_hooks.py", "test_features_e2e.py",
)


def _rank(item: pytest.Item) -> int:
    if item.get_closest_marker("solo") is not None:
        return -1
    for i, part in enumerate(LONGEST_FIRST):
        if part in item.nodeid:
            return i
    return len(LONGEST_FIRST)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The ``solo`` tests first (see :func:`pytest_runtest_protocol`), then the longest."""
    items.sort(key=_rank)  # stable: the rest keep their order


def pytest_collection_finish(session: pytest.Session) -> None:
    """Count the solo tests that will run (``-m`` and ``-k`` have deselected the others)."""
    session.config.stash[_SOLO_COUNT] = sum(1 for i in session.items if _rank(i) < 0)


_SOLO_COUNT = pytest.StashKey[int]()
#: how long a test waits for the solo tests to end before it runs anyway (the rw-lock below
#: still keeps it out of a solo test's way)
SOLO_PHASE_WAIT = 300.0


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None
                            ) -> Iterator[None]:
    """Under pytest-xdist (``-n N``), the tests marked ``solo`` (they read the machine's load)
    run first, one at a time, while the other workers' tests wait for them all to end (the
    ``done`` file counts them): a short solo phase at the start instead of every worker
    idling, at each solo test, until the longest test in flight ends.

    A readers-writer lock on two files every worker opens also keeps a solo test alone
    whatever the order: it waits until the tests running in the other workers end and
    holds the others back while it runs. The ``gate`` gives the waiting solo test
    priority, so a stream of other tests cannot starve it. The waits are outside the test's
    own timeout (this wrapper runs before pytest-timeout's)."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if run is None:  # one process: nothing else runs at the same time
        yield
        return
    solo = item.get_closest_marker("solo") is not None
    base = Path(tempfile.gettempdir()) / f"searchd-tests-{run}"
    done = Path(f"{base}.solo-done")
    if not solo:
        deadline = time.monotonic() + SOLO_PHASE_WAIT
        expected = item.config.stash.get(_SOLO_COUNT, 0)
        while time.monotonic() < deadline and expected and \
                (done.stat().st_size if done.exists() else 0) < expected:
            time.sleep(0.2)
    with open(f"{base}.gate", "ab") as gate, open(f"{base}.room", "ab") as room:
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(room, fcntl.LOCK_EX if solo else fcntl.LOCK_SH)
        finally:
            if not solo:
                fcntl.flock(gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(room, fcntl.LOCK_UN)
            if solo:
                with open(done, "ab") as f:
                    f.write(b".")  # one byte per solo test ended
                fcntl.flock(gate, fcntl.LOCK_UN)


@dataclass
class Env:
    root: Path
    jobs: Path
    state: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    #: let the daemons this Env starts draw each job's report.html (matplotlib: a second or
    #: more of CPU per job); the tests of the report turn it on, the others run --no-report
    report: bool = False

    def cli(self, *args: str, timeout: float = 120, check: bool = False
            ) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "searchd", *args, "--state", str(self.state)]
        if args and args[0] in ("run", "status", "submit"):
            cmd += ["--jobs", str(self.jobs)]
        if args and args[0] == "run" and "--ignore-load" not in args:
            cmd.append("--ignore-load")  # tests share a busy machine; the idle suite opts in
        if args and args[0] == "run" and not self.report:
            cmd.append("--no-report")
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                             cwd=self.root)
        if check and out.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({out.returncode}):\n{out.stderr}")
        return out

    def start(self, *flags: str, log: str = "daemon.log",
              extra_env: dict[str, str] | None = None,
              ignore_load: bool = True) -> subprocess.Popen[bytes]:
        """A daemon in its own process group, logging to a file; reaped at teardown.

        ``ignore_load=False`` lets the idle gate's load rule act (the idle suite's tests).
        """
        cmd = [sys.executable, "-m", "searchd", "run", "--state", str(self.state),
               "--jobs", str(self.jobs), *(["--ignore-load"] if ignore_load else []),
               *([] if self.report else ["--no-report"]), *flags]
        logf = open(self.root / log, "ab")  # closed with the process
        p = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, cwd=self.root,
                             start_new_session=True, env={**os.environ, **(extra_env or {})})
        logf.close()
        self.procs.append(p)
        return p

    def log(self, name: str = "daemon.log") -> str:
        path = self.root / name
        return path.read_text(errors="replace") if path.exists() else ""

    def write_job(self, name: str, text: str) -> Path:
        p = self.jobs / name
        p.write_text(text)
        return p

    def summary(self, job: str) -> dict[str, Any]:
        try:
            return json.loads((self.state / job / "summary.json").read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def wait_for(self, cond: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}\n"
                             f"{self.log()[-3000:]}")

    def leftovers(self) -> list[psutil.Process]:
        return find_leftovers(self.state, exclude={os.getpid()})

    def assert_no_leftovers(self, within: float = 5.0) -> None:
        """Every process of this state folder's daemon gone within ``within`` seconds (a
        resource tracker exits by itself shortly after the last process holding its pipe)."""
        deadline = time.monotonic() + within
        while (left := self.leftovers()) and time.monotonic() < deadline:
            time.sleep(0.1)
        described = []
        for p in left:
            try:
                described.append((p.pid, p.status(), " ".join(p.cmdline())[:200]))
            except psutil.Error:
                continue
        assert not described, f"still running {within}s after the daemon: {described}"

    def reap(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        left = self.leftovers()
        for p in left:
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(left, timeout=10)


SHM = Path("/dev/shm")
#: what loky (and joblib) name after the pid of the process that made the pool
_LOKY_SHM = re.compile(r"^(?:sem\.loky-|joblib_memmapping_folder_)(\d+)[-_]")


def remove_orphaned_shm(since: float) -> int:
    """Remove the loky semaphores and joblib folders in /dev/shm that a test's killed
    process group left (made since ``since`` by a process now gone): a real ``kill -9`` of
    the group kills loky's resource tracker too, which would have removed them. (For the
    service, systemd's ``RemoveIPC=`` does this.) Returns how many."""
    n = 0
    if not SHM.is_dir():
        return n
    for p in SHM.iterdir():
        m = _LOKY_SHM.match(p.name)
        try:
            if not m or psutil.pid_exists(int(m.group(1))) or p.stat().st_mtime < since:
                continue
        except OSError:
            continue
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        n += 1
    return n


@pytest.fixture
def env(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Env]:
    e = Env(tmp_path, tmp_path / "jobs", tmp_path / "state",
            report=request.node.get_closest_marker("report") is not None)
    e.jobs.mkdir()
    since = time.time() - 1.0
    try:
        yield e
    finally:
        e.reap()
        remove_orphaned_shm(since)


def fits_logged(env: Env, job: str) -> int:
    try:
        return (env.state / job / "fits.log").stat().st_size
    except FileNotFoundError:
        return 0
