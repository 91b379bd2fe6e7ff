"""Idle gate: decisions on fake samples and a fake clock; sampler and suspend on real processes."""

from __future__ import annotations

import base64
import math
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import Any

import psutil
import pytest

from searchd.errors import SettingsError
from searchd.settings import Settings
from searchd.supervisor.gate import Decision, IdleGate
from searchd.supervisor.load import LoadSample, LoadSampler
from searchd.supervisor.proctree import resume_tree, suspend_tree

pytestmark = pytest.mark.timeout(60)

NOON = datetime(2024, 1, 3, 12, 0, tzinfo=UTC)
NCPU = psutil.cpu_count() or 1
#: one busy process is 1/NCPU of the machine; demand a clear majority of it
ONE_BUSY = 0.6 / NCPU


def sample(at: float, load: float = 0.0, free: float = 0.5) -> LoadSample:
    return LoadSample(at=at, other_load=load, free_memory=free)


def gate(**kwargs: Any) -> IdleGate:
    params = {"max_load": 0.25, "pause_after": 3, "resume_after": 10.0,
              "min_free_memory": 0.10, "tz": UTC, **kwargs}
    return IdleGate(**params)


# --- IdleGate: load ---------------------------------------------------------------------------

def test_pauses_after_exactly_pause_after_busy_samples() -> None:
    g = gate()
    assert g.update(sample(0, 0.63)) == Decision(run=True)
    assert g.update(sample(1, 0.63)) == Decision(run=True)
    assert g.paused_since is None
    assert g.update(sample(2, 0.63)) == Decision(run=False, reason="other load 63% > 25% for 2s")
    assert g.paused_since == 2
    assert g.update(sample(6, 0.9)).reason == "other load 90% > 25% for 6s"


def test_confirming_between_the_first_busy_sample_and_the_pause() -> None:
    g = gate(pause_after=2)
    assert not g.confirming
    g.update(sample(0, 0.63))
    assert g.confirming
    g.update(sample(0.25, 0.1))  # a quiet sample ends the suspicion
    assert not g.confirming
    g.update(sample(1, 0.63))
    assert g.confirming
    assert not g.update(sample(1.25, 0.9)).run
    assert not g.confirming  # tripped: nothing left to confirm
    assert not gate(pause_after=2, ignore_load=True).confirming


def test_load_at_the_limit_is_quiet() -> None:
    g = gate(pause_after=1)
    assert g.update(sample(0, 0.25)).run
    assert not g.update(sample(1, 0.26)).run


def test_quiet_sample_restarts_the_busy_streak() -> None:
    g = gate()
    for t in range(40):  # busy, busy, quiet, ...: never three busy in a row
        assert g.update(sample(t, 0.9 if t % 3 != 2 else 0.1)).run, t


def test_resumes_only_after_the_full_quiet_period() -> None:
    g = gate()
    for t in range(3):
        g.update(sample(t, 0.9))
    assert g.paused_since == 2
    for t in range(3, 13):  # quiet from t=3: 9 s at t=12
        d = g.update(sample(t, 0.1))
        assert not d.run
    assert d.reason == "other load 10% <= 25% for 9s of 10s"
    # one busy sample restarts the quiet period
    assert g.update(sample(13, 0.5)).reason == "other load 50% > 25% for 0s"
    for t in range(14, 24):
        assert not g.update(sample(t, 0.1)).run, t
    assert g.update(sample(24, 0.1)) == Decision(run=True)
    assert g.paused_since is None


def test_alternating_samples_while_paused_never_resume() -> None:
    g = gate(resume_after=2.0)
    for t in range(3):
        g.update(sample(t, 0.9))
    for t in range(3, 40):
        assert not g.update(sample(t, 0.9 if t % 2 else 0.1)).run, t


def test_resume_after_zero_resumes_on_first_quiet_sample() -> None:
    g = gate(pause_after=1, resume_after=0.0)
    assert not g.update(sample(0, 0.9)).run
    assert g.update(sample(1, 0.1)).run


def test_ignore_load_disables_only_the_load_rule() -> None:
    g = gate(ignore_load=True, pause_after=1, run_window="* 0-7 * * *")
    at_three = NOON.replace(hour=3)
    assert g.update(sample(0, 1.0), now_wall=at_three).run
    assert g.update(sample(1, 1.0, free=0.01), now_wall=at_three).reason == (
        "low memory: 1% free < 10%")
    g = gate(ignore_load=True, pause_after=1, run_window="* 0-7 * * *")
    assert g.update(sample(0, 1.0), now_wall=NOON).reason == "outside run window (next 00:00)"
    assert g.update(sample(1, 1.0), operator_paused_until=math.inf).reason == "paused by operator"


# --- IdleGate: memory, operator, window, priority ---------------------------------------------

def test_low_memory_pauses_at_once_and_resumes_after_quiet_period() -> None:
    g = gate()
    assert g.update(sample(0, free=0.10)).run  # at the limit is enough
    assert g.update(sample(1, free=0.04)) == Decision(run=False,
                                                     reason="low memory: 4% free < 10%")
    assert g.paused_since == 1
    assert g.update(sample(2, free=0.5)).reason == "low memory: 50% free >= 10% for 0s of 10s"
    assert not g.update(sample(11, free=0.5)).run
    assert g.update(sample(12, free=0.5)).run


def test_operator_pause_with_a_deadline() -> None:
    g = gate()
    until = (NOON + timedelta(hours=2)).timestamp()
    assert g.update(sample(0), operator_paused_until=until, now_wall=NOON) == Decision(
        run=False, reason="paused by operator until 14:00")
    assert g.update(sample(1), operator_paused_until=until,
                    now_wall=NOON + timedelta(hours=2)).run
    later = (NOON + timedelta(days=2)).timestamp()
    assert g.update(sample(2), operator_paused_until=later, now_wall=NOON).reason == (
        "paused by operator until 2024-01-05 12:00")


def test_operator_pause_until_resumed() -> None:
    g = gate()
    for t in range(3):
        assert g.update(sample(t), operator_paused_until=math.inf).reason == "paused by operator"
    assert g.paused_since == 0
    assert g.update(sample(3)).run


@pytest.mark.parametrize(("now", "run"), [
    (NOON.replace(hour=3), True),
    (NOON.replace(hour=0, minute=0), True),
    (NOON.replace(hour=7, minute=59, second=59), True),
    (NOON.replace(hour=8, minute=0), False),
    (NOON, False),
])
def test_run_window(now: datetime, run: bool) -> None:
    d = gate(run_window="* 0-7 * * *").update(sample(0), now_wall=now)
    assert d == (Decision(run=True) if run else
                 Decision(run=False, reason="outside run window (next 00:00)"))


def test_run_window_names_the_next_start_and_its_day() -> None:
    g = gate(run_window="30 22 * * *")
    assert g.update(sample(0), now_wall=NOON).reason == "outside run window (next 22:30)"
    assert g.update(sample(1), now_wall=NOON.replace(hour=22, minute=30, second=40)).run
    weekly = gate(run_window="0 9 * * sat")  # 2024-01-03 is a Wednesday
    assert weekly.update(sample(0), now_wall=NOON).reason == (
        "outside run window (next 2024-01-06 09:00)")


def test_naive_now_is_taken_as_local_time() -> None:
    g = IdleGate(run_window="* 0-7 * * *")  # local zone, naive datetimes
    assert g.update(sample(0), now_wall=datetime(2024, 1, 3, 3, 0)).run
    assert not g.update(sample(1), now_wall=datetime(2024, 1, 3, 12, 0)).run


@pytest.mark.parametrize("expr", ["61 * * * *", "* * *", "* 0-7 * * * *", "x * * * *",
                                  "0 0 30 2 *"])
def test_bad_run_window_is_a_settings_error(expr: str) -> None:
    with pytest.raises(SettingsError) as info:
        IdleGate(run_window=expr)
    message = str(info.value)
    assert "run_window" in message and repr(expr) in message and "\n" not in message


def test_reason_priority_operator_window_memory_load() -> None:
    g = gate(pause_after=1, run_window="* 0-7 * * *")
    bad = sample(0, load=0.9, free=0.01)
    assert g.update(bad, operator_paused_until=math.inf, now_wall=NOON).reason == (
        "paused by operator")
    assert g.update(bad, now_wall=NOON).reason == "outside run window (next 00:00)"
    night = NOON.replace(hour=3)
    assert g.update(bad, now_wall=night).reason == "low memory: 1% free < 10%"
    assert g.update(sample(0, load=0.9), now_wall=night).reason == (
        "low memory: 50% free >= 10% for 0s of 10s")
    g = gate(pause_after=1, resume_after=0.0)
    assert g.update(sample(0, load=0.9, free=0.5)).reason == "other load 90% > 25% for 0s"
    assert g.paused_since == 0


def test_load_rule_counts_samples_while_a_higher_rule_pauses() -> None:
    g = gate()
    for t in range(3):
        assert g.update(sample(t, 0.9), operator_paused_until=math.inf).reason == (
            "paused by operator")
    # the operator resumes, but the machine has been busy all along
    assert g.update(sample(3, 0.9)).reason == "other load 90% > 25% for 3s"
    assert g.paused_since == 0  # one pause, whatever its reasons


def test_from_settings_uses_the_settings() -> None:
    g = IdleGate.from_settings(Settings(max_load=0.5, pause_after=1, resume_after=0.0,
                                        min_free_memory=0.2, run_window="* 0-7 * * *"),
                               tz=UTC)
    night = NOON.replace(hour=3)
    assert g.update(sample(0, 0.45), now_wall=night).run
    assert g.update(sample(1, 0.55), now_wall=night).reason == "other load 55% > 50% for 0s"
    assert g.update(sample(2, 0.1, free=0.15), now_wall=night).reason == (
        "low memory: 15% free < 20%")
    assert not g.update(sample(3), now_wall=NOON).run
    with pytest.raises(SettingsError):
        IdleGate.from_settings(Settings(run_window="every night"))


# --- real processes ----------------------------------------------------------------------------

def busy_code(seconds: float, cpu_seconds: float = math.inf) -> str:
    """A Python busy loop that ends by itself after ``seconds`` or once it has used
    ``cpu_seconds`` of CPU, whichever comes first."""
    return (f"import time\nend = time.monotonic() + {seconds}\n"
            f"while time.monotonic() < end and time.process_time() < float('{cpu_seconds}'): pass")


def parent_code(*children: str) -> str:
    """A parent that starts ``children`` (Python code), reaps them as they exit, and kills
    them on SIGTERM (its handler only sets a flag, so it cannot deadlock inside Popen)."""
    # base64, so that the parent's own command line does not contain the children's code
    codes = [base64.b64encode(c.encode()).decode() for c in children]
    return textwrap.dedent(f"""
        import base64, signal, subprocess, sys, time
        kids = [subprocess.Popen([sys.executable, "-c", base64.b64decode(c).decode()])
                for c in {codes!r}]
        stopping = []
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
        end = time.monotonic() + 30
        while not stopping and time.monotonic() < end:
            for k in kids:
                k.poll()
            time.sleep(0.05)
        for k in kids:
            k.kill()
            k.wait()
    """)


@contextmanager
def spawn(code: str) -> Iterator[subprocess.Popen[bytes]]:
    """Run Python ``code``; on exit, resume, stop and reap it and whatever it started."""
    proc = subprocess.Popen([sys.executable, "-c", code])
    kids: list[psutil.Process] = []
    try:
        yield proc
    finally:
        with suppress(psutil.NoSuchProcess):
            kids = psutil.Process(proc.pid).children(recursive=True)
            for p in [psutil.Process(proc.pid), *kids]:
                with suppress(psutil.NoSuchProcess):
                    p.resume()
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        for p in kids:  # orphans (if any) belong to init now; wait for them to go
            with suppress(psutil.NoSuchProcess):
                p.kill()
        psutil.wait_procs(kids, timeout=5)


def children_of(pid: int, count: int) -> list[psutil.Process]:
    deadline = time.monotonic() + 10
    while len(kids := psutil.Process(pid).children(recursive=True)) < count:
        assert time.monotonic() < deadline, f"process {pid} did not start {count} children"
        time.sleep(0.05)
    return kids


def cpu(p: psutil.Process) -> float:
    t = p.cpu_times()
    return float(t.user + t.system)


def wait_cpu(p: psutil.Process, seconds: float) -> None:
    """Wait until ``p`` has used ``seconds`` of CPU, so it is really running."""
    deadline = time.monotonic() + 20
    while cpu(p) < seconds:
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_busy_process_outside_the_tree_is_other_load() -> None:
    with spawn("import time; time.sleep(30)") as sleeper, spawn(busy_code(10)) as busy:
        sampler = LoadSampler(own_root_pid=sleeper.pid)
        wait_cpu(psutil.Process(busy.pid), 0.1)
        first = sampler.sample()
        assert first.other_load == 0.0 and 0 < first.free_memory <= 1
        time.sleep(0.8)
        s = sampler.sample()
    assert s.at - first.at >= 0.8
    assert s.other_load >= ONE_BUSY


def own_vs_reference(own: LoadSampler, extra: list[int], busy: psutil.Process,
                     reference: LoadSampler) -> tuple[float, float, float]:
    """Sample ``own`` and ``reference`` over the same 0.8 s; return both other loads and the
    share of the machine ``busy`` used meanwhile. Comparing with a reference that sees the
    same machine keeps the tests honest when something else loads it too."""
    first = own.sample(extra)
    reference.sample()
    before = cpu(busy)
    time.sleep(0.8)
    s_own, s_ref = own.sample(extra), reference.sample()
    share = (cpu(busy) - before) / ((s_own.at - first.at) * NCPU)
    assert share >= 0.1 / NCPU, "the busy process hardly ran; nothing to measure"
    return s_own.other_load, s_ref.other_load, share


def test_busy_child_inside_the_tree_is_not_other_load() -> None:
    with spawn("import time; time.sleep(30)") as sleeper, spawn(busy_code(10)) as busy:
        child = psutil.Process(busy.pid)
        wait_cpu(child, 0.1)
        inside, outside, share = own_vs_reference(
            LoadSampler(), [], child, LoadSampler(own_root_pid=sleeper.pid))
    # The reference counts the child as other load; the test's own tree does not.
    assert outside >= 0.8 * share
    assert inside <= outside - 0.8 * share


def test_extra_pids_count_as_own() -> None:
    with spawn("import time; time.sleep(30)") as sleeper, spawn(busy_code(10)) as busy:
        proc = psutil.Process(busy.pid)
        wait_cpu(proc, 0.1)
        own, outside, share = own_vs_reference(
            LoadSampler(sleeper.pid), [busy.pid], proc, LoadSampler(sleeper.pid))
    assert outside >= 0.8 * share
    assert own <= outside - 0.8 * share


def test_reaped_child_is_not_counted_twice() -> None:
    # The child's whole lifetime lands in its parent's children_* times when it is reaped;
    # counting it again would hide the outside busy process for that sample.
    child_code = busy_code(30, cpu_seconds=2.0)
    with spawn(parent_code(child_code)) as parent, spawn(busy_code(15)) as outside:
        sampler = LoadSampler(own_root_pid=parent.pid)
        [child] = children_of(parent.pid, 1)
        wait_cpu(psutil.Process(outside.pid), 0.1)
        sampler.sample()
        wait_cpu(child, 1.4)
        sampler.sample()
        deadline = time.monotonic() + 10
        while psutil.Process(parent.pid).children():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.3)
        s = sampler.sample()
    assert s.other_load >= ONE_BUSY


def test_tree_is_listed_again_only_after_a_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    # Listing the tree reads every process on the machine: skip it while nothing was born.
    import searchd.supervisor.load as idle
    forks: list[int | None] = [5, 5, 5, 6, 6, None, None]
    listings = []
    real = idle._own_tree

    def counted(pid: int) -> list[psutil.Process]:
        listings.append(pid)
        return real(pid)
    monkeypatch.setattr(idle, "_forks_since_boot", lambda: forks.pop(0))
    monkeypatch.setattr(idle, "_own_tree", counted)
    sampler = LoadSampler()
    for _ in range(7):
        sampler.sample()
    assert len(listings) == 4  # the first sample, the fork, and each unknown count


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/stat is Linux's")
def test_fork_count_grows_with_each_new_process() -> None:
    from searchd.supervisor.load import _forks_since_boot
    before = _forks_since_boot()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    after = _forks_since_boot()
    assert before is not None and after is not None and after > before


def test_child_born_after_the_tree_was_listed_is_own() -> None:
    late = "import time\ntime.sleep(1.0)\n" + parent_code(busy_code(10))
    with spawn("import time; time.sleep(30)") as sleeper, spawn(late) as parent:
        own = LoadSampler(own_root_pid=parent.pid)
        own.sample()  # the tree, the parent alone, is listed and cached
        [child] = children_of(parent.pid, 1)
        proc = psutil.Process(child.pid)
        wait_cpu(proc, 0.1)
        inside, outside, share = own_vs_reference(own, [], proc,
                                                  LoadSampler(own_root_pid=sleeper.pid))
    assert outside >= 0.8 * share
    assert inside <= outside - 0.8 * share


def test_suspend_and_resume_tree() -> None:
    tracker = "import time  # from loky.backend.resource_tracker import main\ntime.sleep(30)"
    with spawn(parent_code(busy_code(30), tracker)) as parent:
        root = psutil.Process(parent.pid)
        deadline = time.monotonic() + 10
        while True:  # until the tracker has exec'd its own code
            kids = children_of(parent.pid, 2)
            marked = [k for k in kids if "resource_tracker" in " ".join(k.cmdline())]
            if len(marked) == 1:
                break
            assert time.monotonic() < deadline
            time.sleep(0.05)
        [kept] = marked
        [busy] = [k for k in kids if k.pid != kept.pid]
        wait_cpu(busy, 0.1)

        assert suspend_tree(parent.pid) == 2
        deadline = time.monotonic() + 5
        while {root.status(), busy.status()} != {psutil.STATUS_STOPPED}:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert kept.status() != psutil.STATUS_STOPPED
        before = cpu(busy)
        time.sleep(0.5)
        assert cpu(busy) == before

        assert resume_tree(parent.pid) == 3
        time.sleep(0.5)
        assert root.status() != psutil.STATUS_STOPPED
        assert busy.status() != psutil.STATUS_STOPPED
        assert cpu(busy) > before + 0.1


def test_tree_helpers_on_a_vanished_process() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=10)
    assert suspend_tree(proc.pid) == 0
    assert resume_tree(proc.pid) == 0


def test_sampler_defaults_to_its_own_process() -> None:
    assert LoadSampler().own_root_pid == os.getpid()
