"""The daemon stepped in-process: ``Daemon.step(now)`` with a fake clock, a scripted fake
worker, fake process control and a fake load sampler. No processes, no sleeping; each test
runs in milliseconds. The real end-to-end behaviour (kill -9, real load, systemd, Dask) is in
test_faults, test_idle_daemon, test_orphans, test_service and test_dask."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from searchd import protocol
from searchd.errors import SettingsError
from searchd.protocol import Exit
from searchd.settings import Settings
from searchd.state import control
from searchd.state.records import JobState
from searchd.supervisor.daemon import Daemon
from searchd.supervisor.exits import LOCKED_WAIT, MAX_CLUSTER_WAIT
from searchd.supervisor.load import LoadSample
from searchd.supervisor.notify import Notifier
from searchd.supervisor.sensors import Sensed
from searchd.supervisor.stopping import KILL_WAIT_SECONDS, WARM_STOP_SECONDS

pytestmark = pytest.mark.timeout(30)

S = JobState
JOB = """
[data]
source = "sklearn:iris"

[search]
cv = 2

[models.knn]
estimator = "KNeighborsClassifier"
grid = { n_neighbors = [1, 3] }
"""
EPOCH = 1_800_000_000.0


# --- fakes -----------------------------------------------------------------------------------

class FakeClock:
    def __init__(self) -> None:
        self.mono, self.wall = 1000.0, EPOCH

    def monotonic(self) -> float:
        return self.mono

    def time(self) -> float:
        return self.wall

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds


class FakeWorker:
    """Says what the test queues, exits when told to; SIGTERM makes it exit ``on_term``
    (None: it ignores the signal) at the next poll."""

    def __init__(self, job_id: str, pid: int) -> None:
        self.job_id, self._pid = job_id, pid
        self.events_seen: set[str] = set()
        self.stop_reason: str | None = None
        self.queued: list[protocol.Event] = []
        self.code: int | None = None
        self.on_term: int | None = Exit.STOPPED
        self.closed = False
        self.terms: list[str] = []

    @property
    def pid(self) -> int:
        return self._pid

    def say(self, *events: protocol.Event) -> FakeWorker:
        self.queued.extend(events)
        return self

    def exit(self, code: int, *events: protocol.Event) -> None:
        self.say(*events)
        self.code = code

    def progress(self, done: int, total: int = 4, **kw: Any) -> FakeWorker:
        return self.say(protocol.Progress(models={"knn": {
            "fits_done": done, "fits_total": total, "state": "running"}}, **kw))

    def events(self) -> list[protocol.Event]:
        out, self.queued = self.queued, []
        self.events_seen.update(e.kind for e in out)
        return out

    def poll(self) -> int | None:
        return self.code

    def terminate(self, reason: str) -> None:
        self.stop_reason = self.stop_reason or reason
        self.terms.append(reason)
        if self.code is None and self.on_term is not None:
            self.say(protocol.Stopped())
            self.code = self.on_term

    def close(self) -> None:
        self.closed = True


class FakeLauncher:
    def __init__(self) -> None:
        self.started: list[FakeWorker] = []

    def __call__(self, settings: Settings, job_id: str, log_format: str) -> FakeWorker:
        w = FakeWorker(job_id, 4000 + len(self.started))
        self.started.append(w)
        return w

    @property
    def last(self) -> FakeWorker:
        return self.started[-1]


class FakeControl:
    def __init__(self, log: list[tuple[str, int]]) -> None:
        self.calls = log
        self.killed_exit: FakeLauncher | None = None

    def suspend(self, root_pid: int) -> int:
        self.calls.append(("suspend", root_pid))
        return 1

    def resume(self, root_pid: int) -> int:
        self.calls.append(("resume", root_pid))
        return 1

    def kill(self, root_pid: int) -> int:
        self.calls.append(("kill", root_pid))
        return 1

    def end_leftovers(self, state_dir: Path) -> int:
        return 0

    def lifeline(self, state_dir: Path) -> contextlib.AbstractContextManager[object]:
        return contextlib.nullcontext()


class FakeSampler:
    def __init__(self) -> None:
        self.load, self.free = 0.0, 0.5

    def sample(self, own_pids_extra: Iterable[int] = ()) -> LoadSample:
        return LoadSample(at=0.0, other_load=self.load, free_memory=self.free)


class FakeSensors:
    """What the etiquette rules see: set ``sensed`` (on AC, nothing hot, no app, by default)."""

    def __init__(self) -> None:
        self.sensed = Sensed()
        self.reads = 0

    def read(self, now: float, settings: Settings) -> Sensed:
        self.reads += 1
        return self.sensed

    def set(self, **changes: Any) -> None:
        self.sensed = dataclasses.replace(self.sensed, **changes)


@dataclasses.dataclass
class Rig:
    daemon: Daemon
    clock: FakeClock
    launcher: FakeLauncher
    calls: list[tuple[str, int]]
    sampler: FakeSampler
    jobs: Path
    state: Path
    sensors: FakeSensors

    def step(self, seconds: float = 1.0, n: int = 1) -> None:
        for _ in range(n):
            self.clock.advance(seconds)
            self.daemon.step()

    def scan_step(self, seconds: float = 1.0) -> None:
        self.clock.advance(seconds)
        self.daemon.scan()
        self.daemon.step()

    def rec(self, job: str = "j") -> Any:
        return self.daemon.records[job]

    def write(self, name: str = "j.toml", text: str = JOB, mtime: float | None = None) -> Path:
        p = self.jobs / name
        p.write_text(text)
        if mtime is not None:
            os.utime(p, (mtime, mtime))
        return p

    def summary(self, job: str = "j") -> dict[str, Any]:
        return json.loads((self.state / job / "summary.json").read_text())

    @property
    def worker(self) -> FakeWorker | None:
        w = self.daemon.worker
        assert w is None or isinstance(w, FakeWorker)
        return w


SETTINGS = dict(max_load=0.25, pause_after=2, resume_after=5.0, min_free_memory=0.1,
                max_suspend=0.0, restart_backoff=1.0, max_worker_deaths=3)


@contextlib.contextmanager
def rig(tmp_path: Path, *, drain: bool = False, reload: Any = None,
        **settings: Any) -> Iterator[Rig]:
    jobs, state = tmp_path / "jobs", tmp_path / "state"
    jobs.mkdir()
    s = Settings(state_dir=state, jobs_dir=jobs, **{**SETTINGS, **settings})
    clock, launcher, sampler = FakeClock(), FakeLauncher(), FakeSampler()
    sensors = FakeSensors()
    calls: list[tuple[str, int]] = []
    d = Daemon(s, drain=drain, sampler=sampler, reload=reload, clock=clock, launcher=launcher,
               control=FakeControl(calls), notifier=Notifier(None), sensors=sensors)
    with d.started():
        yield Rig(d, clock, launcher, calls, sampler, jobs, state, sensors)


@pytest.fixture(autouse=True)
def _no_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)


def running(r: Rig, job: str = "j") -> FakeWorker:
    """Write the job, scan, step: its worker runs."""
    r.write(f"{job}.toml")
    r.scan_step()
    w = r.worker
    assert w is not None and w.job_id == job
    return w


# --- intake ----------------------------------------------------------------------------------

def test_new_job_is_accepted_frozen_and_started(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        w = running(r)
        rec = r.rec()
        assert rec.state == S.RUNNING and rec.fits_total == 4 and rec.started_at == EPOCH + 1
        assert (r.state / "j" / "job.toml").read_text() == JOB
        assert r.summary()["state"] == "running"
        w.progress(1)
        r.step()
        assert r.rec().fits_done == 1 and r.summary()["fits_done"] == 1
        assert len(r.launcher.started) == 1


def test_invalid_job_file_is_invalid_with_its_reason_until_fixed(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        r.write(text=JOB.replace("[1, 3]", "5"))
        r.scan_step()
        rec = r.rec()
        assert rec.state == S.INVALID
        assert "models.knn.grid.n_neighbors: expected a list" in (rec.error or "")
        assert not r.launcher.started and r.summary()["state"] == "invalid"
        r.scan_step()  # an unchanged bad file is not tried again
        assert r.rec().state == S.INVALID
        r.write()  # fixed
        r.scan_step()
        assert r.rec().state == S.RUNNING and r.rec().error is None


def test_changed_file_restarts_the_worker_on_the_edit(tmp_path: Path) -> None:
    # more in test_edit_daemon.py
    with rig(tmp_path) as r:
        w = running(r)
        r.write(text=JOB.replace("[1, 3]", "[1, 3, 5]"))
        r.scan_step()
        assert w.terms == ["edited"] and r.worker is r.launcher.last and r.worker is not w
        assert not r.rec().file_changed and r.summary()["file_changed"] is False


def test_removed_file_stops_the_job_and_putting_it_back_resumes_it(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        w = running(r)
        (r.jobs / "j.toml").unlink()
        r.scan_step()
        assert w.terms == ["removed"] and w.closed and r.worker is None
        assert r.rec().state == S.QUEUED and r.rec().file_removed
        r.step(n=3)
        assert len(r.launcher.started) == 1, "a removed job must not start"
        r.write()
        r.scan_step()
        assert len(r.launcher.started) == 2 and r.rec().state == S.RUNNING


@pytest.mark.parametrize("end", ["failed", "cancelled"])
def test_touched_failed_or_cancelled_file_is_queued_again(tmp_path: Path, end: str) -> None:
    with rig(tmp_path) as r:
        w = running(r)
        if end == "failed":
            w.exit(Exit.FAILED, protocol.Failed(error="boom"))
        else:
            control.request_cancel(r.state / "j")
            r.daemon.scan()
        r.step()
        assert r.rec().state == S(end)
        r.scan_step(); r.step(n=2)  # noqa: E702 - nothing happens until the file is touched
        assert len(r.launcher.started) == 1
        r.write(mtime=r.rec().mtime + 10)
        r.scan_step()
        assert r.rec().state == S.RUNNING and r.rec().deaths == 0
        assert len(r.launcher.started) == 2


# --- the exit policy ---------------------------------------------------------------------------

def test_done(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        w = running(r)
        w.progress(4).exit(Exit.DONE, protocol.Done(at=EPOCH + 5))
        r.step()
        rec = r.rec()
        assert rec.state == S.DONE and rec.finished_at == EPOCH + 5 and rec.fits_done == 4
        assert rec.last_exit == "exit status 0" and w.closed
        r.step(n=3)
        assert len(r.launcher.started) == 1


def test_exit_0_without_done_is_a_death(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        running(r).exit(Exit.DONE)
        r.step()
        assert r.rec().state == S.QUEUED and r.rec().deaths == 1


def test_invalid_in_the_worker(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        running(r).exit(Exit.INVALID, protocol.Invalid(error="j.toml: data: no such file"))
        r.step()
        assert (r.rec().state, r.rec().error) == (S.INVALID, "j.toml: data: no such file")


def test_failed_needs_its_event_else_it_is_a_death(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        running(r).exit(Exit.FAILED)
        r.step()
        assert r.rec().state == S.QUEUED and r.rec().deaths == 1


def test_stopped_only_counts_when_it_was_asked_to(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        running(r).exit(Exit.STOPPED)  # nobody asked: a death
        r.step()
        assert r.rec().state == S.QUEUED and r.rec().deaths == 1


def test_locked_waits_ten_seconds(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        running(r).exit(Exit.LOCKED)
        r.step()
        assert r.rec().state == S.QUEUED and r.rec().deaths == 0
        r.step(LOCKED_WAIT - 2.0)
        assert len(r.launcher.started) == 1
        r.step(2.0)
        assert len(r.launcher.started) == 2


def test_cluster_waits_double_up_to_the_cap_and_reset_once_connected(tmp_path: Path) -> None:
    with rig(tmp_path, restart_backoff=10.0) as r:
        waits = []
        running(r)
        for _ in range(6):
            r.worker.exit(Exit.CLUSTER, protocol.Cluster(error="tcp://x:8786 unreachable"))  # type: ignore[union-attr]
            r.step(0.0)
            assert r.summary()["error"] == \
                "waiting for the Dask cluster: tcp://x:8786 unreachable"
            n = len(r.launcher.started)
            waited = 0.0
            while len(r.launcher.started) == n:
                r.step(1.0)
                waited += 1.0
            waits.append(waited)
            assert r.rec().deaths == 0
        assert waits == [10, 20, 40, 80, MAX_CLUSTER_WAIT, MAX_CLUSTER_WAIT]
        r.worker.progress(1, cluster_workers=2)  # type: ignore[union-attr]
        r.step()
        r.worker.exit(Exit.CLUSTER, protocol.Cluster(error="lost"))  # type: ignore[union-attr]
        r.step(0.0)
        r.step(9.0)
        assert len(r.launcher.started) == 7
        r.step(1.0)
        assert len(r.launcher.started) == 8, "connected: the next loss waits briefly again"


def test_deaths_in_a_row_back_off_then_fail_and_progress_resets_them(tmp_path: Path) -> None:
    with rig(tmp_path, restart_backoff=2.0) as r:
        running(r).exit(-signal.SIGSEGV)
        r.step(0.0)
        assert (r.rec().deaths, r.rec().error) == (1, "worker died (killed by SIGSEGV)")
        r.step(1.9)
        assert len(r.launcher.started) == 1
        r.step(0.1)  # backoff 2 s
        r.worker.progress(1).exit(-signal.SIGKILL)  # type: ignore[union-attr]
        r.step(0.0)
        assert r.rec().deaths == 1, "progress again: deaths count in a row"
        r.step(2.0)
        r.worker.exit(-signal.SIGKILL)  # type: ignore[union-attr]
        r.step(0.0)
        assert r.rec().deaths == 2
        r.step(3.9)
        assert len(r.launcher.started) == 3
        r.step(0.1)  # backoff 4 s
        r.worker.exit(-signal.SIGSEGV)  # type: ignore[union-attr]
        r.step(0.0)
        rec = r.rec()
        assert rec.state == S.FAILED
        assert rec.error == "worker died 3 times in a row (last: killed by SIGSEGV)"
        r.step(100.0)
        assert len(r.launcher.started) == 4


# --- the idle gate, the operator pause, max_suspend ----------------------------------------------

def test_other_load_suspends_after_pause_after_samples_and_resumes_after_quiet(
        tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        w = running(r)
        r.sampler.load = 0.9
        r.step()
        assert r.calls == [] and r.daemon.pausing.gate.confirming  # one busy sample: not yet
        r.step()
        assert r.calls == [("suspend", w.pid)]
        rec = r.rec()
        assert rec.state == S.PAUSED and rec.paused_reason.startswith("other load 90% > 25%")
        assert r.summary()["state"] == "paused"
        assert r.daemon.status_line().startswith("paused j: other load")
        run_before = rec.run_seconds
        r.sampler.load = 0.0
        r.step(n=5)
        assert r.calls == [("suspend", w.pid)], "resumes only after resume_after of quiet"
        assert rec.run_seconds == run_before, "suspended time is not run time"
        r.step()
        assert r.calls[-1] == ("resume", w.pid) and r.rec().state == S.RUNNING
        assert r.rec().paused_reason is None


def test_low_memory_holds_back_the_next_job_and_says_so(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        r.sampler.free = 0.01
        r.write()
        r.scan_step()
        assert not r.launcher.started
        assert r.rec().state == S.QUEUED
        assert r.rec().paused_reason.startswith("low memory: 1% free < 10%")
        assert r.summary()["state"] == "queued"
        r.sampler.free = 0.5
        r.step(n=5)
        assert not r.launcher.started
        r.step()
        assert r.launcher.started and r.rec().paused_reason is None


def test_outside_the_run_window_nothing_starts(tmp_path: Path) -> None:
    with rig(tmp_path, run_window="0 3 * * *") as r:  # 03:00-03:01 only
        r.write()
        r.scan_step()
        assert not r.launcher.started
        assert r.rec().paused_reason == "outside run window (next 03:00)"
        assert r.summary()["paused_reason"] == "outside run window (next 03:00)"
        assert r.daemon.status_line() == "paused: outside run window (next 03:00)"
        r.daemon.stop_signals = 1
        r.step()
        assert r.summary()["paused_reason"] is None, "no daemon, no pause"


def test_operator_pause_until_resumed(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        w = running(r)
        control.request_pause(r.state, None)
        r.step()
        assert r.calls == [("suspend", w.pid)]
        assert r.rec().paused_reason == "paused by operator"
        r.step(100.0)
        assert r.calls == [("suspend", w.pid)]
        control.clear_pause(r.state)
        r.step()
        assert r.calls[-1] == ("resume", w.pid), "the operator's resume has no quiet period"


def test_timed_operator_pause_lifts_by_the_clock_and_its_file_goes(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        w = running(r)
        control.request_pause(r.state, EPOCH + 30)
        r.step()
        assert r.calls == [("suspend", w.pid)]
        assert r.rec().paused_reason.startswith("paused by operator until ")
        r.step(27.0)
        assert len(r.calls) == 1
        r.step(3.0)
        assert r.calls[-1] == ("resume", w.pid)
        assert not (r.state / control.PAUSE_FILE).exists()


def test_operator_pause_before_a_start_holds_the_job_back(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        control.request_pause(r.state, None)
        r.write()
        r.scan_step()
        assert not r.launcher.started and r.rec().paused_reason == "paused by operator"
        control.clear_pause(r.state)
        r.step()
        assert r.launcher.started


def test_long_pause_resumes_then_stops_the_worker_and_never_suspends_it_again(
        tmp_path: Path) -> None:
    with rig(tmp_path, max_suspend=10.0) as r:
        w = running(r)
        w.on_term = None  # it takes a while to flush
        control.request_pause(r.state, None)
        r.step()
        r.step(10.0)
        assert r.calls == [("suspend", w.pid)]
        r.step(1.0)
        assert r.calls == [("suspend", w.pid), ("resume", w.pid)] and w.terms == ["long pause"]
        r.step(n=3)
        assert r.calls[-1] == ("resume", w.pid), "a stopping worker is not suspended again"
        w.exit(Exit.STOPPED)
        r.step()
        rec = r.rec()
        assert rec.state == S.QUEUED and rec.paused_reason == "paused by operator"
        assert len(r.launcher.started) == 1
        control.clear_pause(r.state)  # `searchd resume`: the job runs again
        r.step()
        assert len(r.launcher.started) == 2 and r.rec().state == S.RUNNING


def test_reasons_follow_the_job_they_hold_back_and_go_when_the_daemon_stops(
        tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        control.request_pause(r.state, None)
        r.write()
        r.scan_step()
        assert r.summary()["paused_reason"] == "paused by operator"
        r.daemon.stop_signals += 1
        r.step()
        assert r.daemon.finished and r.summary()["paused_reason"] is None


# --- cancel ------------------------------------------------------------------------------------

def test_cancel_the_running_job(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        w = running(r)
        control.request_cancel(r.state / "j")
        r.scan_step()
        assert w.terms == ["cancelled"]
        assert (r.rec().state, r.rec().error) == (S.CANCELLED, "cancelled by the operator")
        assert not control.cancel_requested(r.state / "j")
        r.step(n=3)
        assert len(r.launcher.started) == 1


def test_cancel_a_suspended_job_resumes_it_first(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        w = running(r)
        control.request_pause(r.state, None)
        r.step()
        control.request_cancel(r.state / "j")
        r.daemon.scan()
        assert r.calls == [("suspend", w.pid), ("resume", w.pid)] and w.terms == ["cancelled"]


def test_cancel_a_queued_job_and_a_finished_one(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        running(r, "a")
        r.write("b.toml")
        r.scan_step()
        control.request_cancel(r.state / "b")
        r.scan_step()
        assert r.rec("b").state == S.CANCELLED and r.worker.job_id == "a"  # type: ignore[union-attr]
        r.worker.exit(Exit.DONE, protocol.Done())  # type: ignore[union-attr]
        r.step()
        control.request_cancel(r.state / "a")
        r.scan_step()
        assert r.rec("a").state == S.DONE, "a done job stays done"


def test_priority_then_mtime_decides_the_order(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        r.write("old.toml", mtime=EPOCH - 100)
        r.write("new.toml", mtime=EPOCH - 50)
        r.write("urgent.toml", "priority = 5\n" + JOB, mtime=EPOCH)
        r.scan_step()
        order = []
        for _ in range(3):
            order.append(r.worker.job_id)  # type: ignore[union-attr]
            r.worker.exit(Exit.DONE, protocol.Done())  # type: ignore[union-attr]
            r.step()
        assert order == ["urgent", "old", "new"]


# --- SIGHUP ------------------------------------------------------------------------------------

def test_sighup_sets_a_flag_and_the_next_step_reloads(tmp_path: Path) -> None:
    calls = []

    def read() -> Settings:
        calls.append(1)
        return dataclasses.replace(r.daemon.settings, max_load=0.95, n_jobs=1,
                                   state_dir=tmp_path / "elsewhere")

    with rig(tmp_path, reload=read) as r:
        w = running(r)
        r.daemon._on_hup(signal.SIGHUP, None)
        assert not calls, "the handler only sets a flag"
        r.sampler.load = 0.9
        r.step(n=3)
        assert calls == [1] and r.daemon.settings.max_load == 0.95
        assert r.daemon.settings.n_jobs == 1
        assert r.daemon.settings.state_dir == r.state, "the state folder needs a restart"
        assert r.calls == [] and r.worker is w, "the new max_load applies at once"


def test_sighup_with_a_bad_config_keeps_the_running_one(tmp_path: Path) -> None:
    def read() -> Settings:
        raise SettingsError("max_load: expected a number, got 'lots'")

    with rig(tmp_path, reload=read) as r:
        before = r.daemon.settings
        r.daemon.reload_requested = True
        r.step()
        assert r.daemon.settings is before and not r.daemon.reload_requested


# --- drain and stop ----------------------------------------------------------------------------

def test_drain_exits_0_once_everything_is_done_or_invalid(tmp_path: Path) -> None:
    with rig(tmp_path, drain=True) as r:
        r.write("bad.toml", "x = ")
        r.write("bad2.toml", JOB.replace("KNeighborsClassifier", "Nope"), mtime=EPOCH - 10)
        r.write(mtime=EPOCH)
        r.scan_step()
        r.worker.exit(Exit.INVALID, protocol.Invalid(error="Nope: not allowed"))  # type: ignore[union-attr]
        r.step()
        assert not r.daemon.finished
        r.worker.exit(Exit.DONE, protocol.Done())  # type: ignore[union-attr]
        r.step()
        assert {k: v.state for k, v in r.daemon.records.items()} == {
            "bad": S.INVALID, "bad2": S.INVALID, "j": S.DONE}
        assert r.daemon.finished and r.daemon.exit_code == 0


def test_drain_exits_1_when_a_job_failed(tmp_path: Path) -> None:
    with rig(tmp_path, drain=True, max_worker_deaths=1) as r:
        running(r).exit(-signal.SIGKILL)
        r.step()
        assert r.daemon.finished and r.daemon.exit_code == 1


def test_drain_waits_through_a_backoff(tmp_path: Path) -> None:
    with rig(tmp_path, drain=True) as r:
        running(r).exit(-signal.SIGKILL)
        r.step(0.0)
        assert not r.daemon.finished, "a job waiting to restart is not drained"


def test_warm_stop_resumes_a_suspended_worker_then_waits_for_its_flush(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        w = running(r)
        w.on_term = None
        control.request_pause(r.state, None)
        r.step()
        r.daemon._on_stop(signal.SIGTERM, None)
        assert w.terms == [], "the handler only sets a flag"
        r.step(0.0)
        assert r.calls == [("suspend", w.pid), ("resume", w.pid)]
        assert w.terms == ["daemon stopping"] and not r.daemon.finished
        r.step(WARM_STOP_SECONDS - 1.0)
        assert not r.daemon.finished and ("kill", w.pid) not in r.calls
        w.exit(Exit.STOPPED, protocol.Stopped())
        r.step(0.05)
        assert r.daemon.finished and r.daemon.exit_code == 0 and w.closed
        assert r.rec().state == S.QUEUED and r.summary()["paused_reason"] is None


def test_warm_stop_kills_a_worker_that_does_not_flush_in_time(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        w = running(r)
        w.on_term = None
        r.daemon.stop_signals = 1
        r.step(0.0)
        r.step(WARM_STOP_SECONDS)
        assert r.calls == [("kill", w.pid)] and not r.daemon.finished
        w.exit(-signal.SIGKILL)
        r.step(0.05)
        assert r.daemon.finished and r.daemon.exit_code == 0
        assert r.rec().last_exit == "killed by SIGKILL"


def test_second_signal_is_a_cold_stop(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        w = running(r)
        w.on_term = None
        r.daemon.stop_signals = 1
        r.step(0.0)
        r.daemon.stop_signals = 2
        r.step(0.05)
        assert r.calls == [("kill", w.pid)]


def test_a_worker_that_survives_sigkill_does_not_hang_the_stop(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        w = running(r)
        w.on_term = None
        r.daemon.stop_signals = 2
        r.step(0.0)
        r.step(WARM_STOP_SECONDS)
        r.step(KILL_WAIT_SECONDS)
        assert r.daemon.finished and r.worker is None


def test_stop_without_a_worker_is_immediate(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        r.daemon.stop_signals = 1
        r.step(0.0)
        assert r.daemon.finished and r.daemon.exit_code == 0
        r.write()
        r.scan_step()
        assert not r.launcher.started, "a finished daemon starts nothing"


def test_a_restart_requeues_what_was_running(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        running(r).progress(2)
        r.step()
        assert r.summary()["state"] == "running"
    (tmp_path / "jobs").rename(tmp_path / "jobs-old")
    with rig(tmp_path) as r2:
        assert r2.rec().state == S.QUEUED and r2.rec().fits_done == 2


# --- the report's timeline -------------------------------------------------------------------

def test_timeline_points_every_few_seconds_and_at_every_pause_and_end(tmp_path: Path) -> None:
    from searchd.report.timeline import read_timeline
    from searchd.supervisor.timeline import TIMELINE_SECONDS
    with rig(tmp_path) as r:
        w = running(r)
        for done in range(1, 4):
            w.progress(done)
            r.step(TIMELINE_SECONDS)
        r.sampler.load = 0.9
        r.step(n=2)  # paused: a point at once, with its reason
        r.sampler.load = 0.0
        r.step(n=6)  # resumed after resume_after: a point at once
        w.exit(Exit.DONE, protocol.Done())
        r.step()
        points = read_timeline(r.state / "j")
        assert [p.at for p in points] == sorted(p.at for p in points)
        paused = [p.paused for p in points]
        assert any(p and p.startswith("other load") for p in paused)
        first_pause = next(i for i, p in enumerate(paused) if p)
        assert paused[first_pause - 1] is None and paused[-1] is None  # resumed, then done
        assert points[-1].fits_done == 3 and points[0].fits_done <= 1
        assert len(points) <= 8  # not one per step


# --- on_job_end ------------------------------------------------------------------------------

class FakeHooks:
    """Records what the daemon asks to run; runs nothing."""

    def __init__(self) -> None:
        self.started: list[tuple[str, tuple[str, ...], dict[str, str], float]] = []
        self.polls = 0

    def start(self, job_id: str, argv: Any, env: dict[str, str], timeout: float,
              now: float) -> None:
        self.started.append((job_id, tuple(argv), env, timeout))

    def poll(self, now: float) -> None:
        self.polls += 1

    def finish(self, wait: float, interrupted: Any, tick: Any) -> None:
        pass

    def envs(self) -> list[dict[str, str]]:
        return [e for _j, _a, e, _t in self.started]


HOOK = ("/usr/bin/notify", "searchd")


@contextlib.contextmanager
def hook_rig(tmp_path: Path, **settings: Any) -> Iterator[tuple[Rig, FakeHooks]]:
    """The rig with on_job_end set and its runner recording calls."""
    with rig(tmp_path, on_job_end=HOOK, on_job_end_timeout=7.0, **settings) as r:
        hooks = FakeHooks()
        r.daemon.hooks = hooks
        yield r, hooks


def test_on_job_end_fires_once_when_a_job_is_done(tmp_path: Path) -> None:
    with hook_rig(tmp_path) as (r, hooks):
        w = running(r)
        w.say(protocol.Progress(models={
            "knn": {"fits_done": 4, "fits_total": 4, "state": "done", "best_score": 0.96},
            "svc": {"fits_done": 4, "fits_total": 4, "state": "done", "best_score": 0.98},
            "lr": {"fits_done": 1, "fits_total": 4, "state": "running", "best_score": 0.99}}))
        r.step()
        assert hooks.started == [], "nothing fires while the job runs"
        w.exit(Exit.DONE, protocol.Done())
        r.step()
        [(job, argv, env, timeout)] = hooks.started
        assert (job, argv, timeout) == ("j", HOOK, 7.0)
        assert {k: env[k] for k in ("SEARCHD_JOB", "SEARCHD_JOB_STATE", "SEARCHD_BEST_MODEL",
                                    "SEARCHD_BEST_SCORE")} == {
            "SEARCHD_JOB": "j", "SEARCHD_JOB_STATE": "done", "SEARCHD_BEST_MODEL": "svc",
            "SEARCHD_BEST_SCORE": "0.98"}
        assert "SEARCHD_ERROR" not in env
        # the folders, so that `searchd show "$SEARCHD_JOB"` works in the command
        assert env["SEARCHD_STATE"] == str(r.state.absolute())
        assert env["SEARCHD_JOBS"] == str(r.jobs.absolute())
        assert r.summary()["state"] == "done", "the summary is written before it runs"
        r.scan_step(); r.step(n=3)  # noqa: E702
        assert len(hooks.started) == 1 and hooks.polls > 3


def test_on_job_end_fires_for_a_failed_job_with_its_error(tmp_path: Path) -> None:
    with hook_rig(tmp_path, max_worker_deaths=2) as (r, hooks):
        running(r).exit(-signal.SIGKILL)
        r.step()
        assert r.rec().state == S.QUEUED and hooks.started == [], "a death is not an end"
        r.step(2.0)
        r.worker.exit(-signal.SIGKILL)  # type: ignore[union-attr]
        r.step()
        [env] = hooks.envs()
        assert env["SEARCHD_JOB_STATE"] == "failed"
        assert env["SEARCHD_ERROR"] == "worker died 2 times in a row (last: killed by SIGKILL)"
        assert (env["SEARCHD_BEST_MODEL"], env["SEARCHD_BEST_SCORE"]) == ("", "")
        r.step(n=2)
        assert len(hooks.started) == 1


def test_on_job_end_fires_for_an_invalid_file_and_again_for_a_new_invalid_one(
        tmp_path: Path) -> None:
    with hook_rig(tmp_path) as (r, hooks):
        r.write(text=JOB.replace("[1, 3]", "5"))
        r.scan_step()
        [env] = hooks.envs()
        assert env["SEARCHD_JOB_STATE"] == "invalid" and env["SEARCHD_JOB"] == "j"
        assert "models.knn.grid.n_neighbors: expected a list" in env["SEARCHD_ERROR"]
        r.scan_step(); r.scan_step()  # noqa: E702 - the same file: no new end
        assert len(hooks.started) == 1
        r.write(text=JOB.replace("[1, 3]", "7"))  # rewritten, still invalid: a new end
        r.scan_step()
        assert len(hooks.started) == 2


def test_on_job_end_fires_for_a_job_the_worker_finds_invalid(tmp_path: Path) -> None:
    with hook_rig(tmp_path) as (r, hooks):
        running(r).exit(Exit.INVALID, protocol.Invalid(error="j.toml: data: no such file"))
        r.step()
        [env] = hooks.envs()
        assert (env["SEARCHD_JOB_STATE"], env["SEARCHD_ERROR"]) == (
            "invalid", "j.toml: data: no such file")


def test_on_job_end_not_for_cancelled_or_requeued_jobs_nor_when_unset(tmp_path: Path) -> None:
    with hook_rig(tmp_path) as (r, hooks):
        w = running(r)
        control.request_cancel(r.state / "j")
        r.daemon.scan()
        r.step()
        assert r.rec().state == S.CANCELLED and hooks.started == [] and w.closed
    (tmp_path / "jobs").rename(tmp_path / "jobs-1")
    (tmp_path / "state").rename(tmp_path / "state-1")
    with rig(tmp_path) as r:  # on_job_end unset: the runner is never asked
        hooks = FakeHooks()
        r.daemon.hooks = hooks
        running(r).exit(Exit.DONE, protocol.Done())
        r.step()
        assert r.rec().state == S.DONE and hooks.started == []


def test_on_job_end_does_not_fire_again_at_a_restart(tmp_path: Path) -> None:
    with hook_rig(tmp_path) as (r, hooks):
        r.write("bad.toml", "x = ")
        running(r).exit(Exit.DONE, protocol.Done())
        r.step()
        assert sorted(j for j, *_ in hooks.started) == ["bad", "j"]
    (tmp_path / "jobs").rename(tmp_path / "jobs-old")
    with hook_rig(tmp_path) as (r2, hooks2):
        r2.write()
        r2.write("bad.toml", "x = ")  # the same files as before
        r2.scan_step(); r2.step(n=3)  # noqa: E702
        assert r2.rec().state == S.DONE and r2.rec("bad").state == S.INVALID
        assert hooks2.started == [], "already announced by the daemon before"
        r2.write(text=JOB.replace("[1, 3]", "[1, 3, 5]"), mtime=EPOCH + 100)
        r2.write("bad.toml", "y = ")
        r2.scan_step()  # bad.toml changed and is invalid again: a new end
        assert [j for j, *_ in hooks2.started] == ["bad"]
