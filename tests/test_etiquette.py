"""Workstation etiquette (issue 20): battery, heat, exclusive programs, the user at the
keyboard and a grace period, decided by the idle gate from injected sensor readings and
stepped through the daemon with fakes (milliseconds, no sleeping); the sensors' cheap
readers on fake /proc files; one end-to-end run where a real program named in
``exclusive_apps`` suspends and resumes the worker tree with the scores unchanged."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import Env, fits_logged
from reference import assert_same_as_gridsearch
from test_daemon_step import rig as stepped
from test_daemon_step import running
from test_idle_daemon import all_stopped, none_stopped, status_of, stop_daemon, wait_until

import searchd
from searchd.errors import SettingsError
from searchd.settings import Settings, settings_from
from searchd.state.records import JobState
from searchd.supervisor import sensors as sensors_mod
from searchd.supervisor.gate import Decision, IdleGate
from searchd.supervisor.load import LoadSample
from searchd.supervisor.sensors import (
    AppWatch,
    InterruptWatch,
    LogindWatch,
    Sensed,
    SystemSensors,
    logind_idle,
    user_idle,
)

pytestmark = pytest.mark.timeout(30)
S = JobState


def gate(**kwargs: Any) -> IdleGate:
    params = {"max_load": 0.25, "pause_after": 2, "resume_after": 10.0,
              "min_free_memory": 0.10, "exclusive_apps": ("zoom", "steam"), **kwargs}
    return IdleGate(**params)


def quiet(at: float, load: float = 0.0) -> LoadSample:
    return LoadSample(at=at, other_load=load, free_memory=0.5)


def feed(g: IdleGate, at: float, load: float = 0.0, **sensed: Any) -> Decision:
    return g.update(quiet(at, load), sensed=Sensed(**sensed))


# --- power -----------------------------------------------------------------------------------

def test_battery_pauses_at_once_and_ac_resumes_at_once() -> None:
    g = gate()
    assert feed(g, 0).run
    assert feed(g, 1, on_battery=True) == Decision(run=False, reason="on battery")
    assert feed(g, 2, on_battery=True).reason == "on battery"
    assert feed(g, 3).run, "back on AC: no quiet period to wait for"


def test_on_battery_ignore_runs_on_battery() -> None:
    assert feed(gate(on_battery="ignore"), 0, on_battery=True).run


def test_no_battery_is_ac(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sensors_mod.psutil, "sensors_battery", lambda: None)
    assert sensors_mod.on_battery() is False

    class Batt:
        power_plugged: bool | None = None
    monkeypatch.setattr(sensors_mod.psutil, "sensors_battery", lambda: Batt())
    assert sensors_mod.on_battery() is False, "unknown plug state counts as AC"
    Batt.power_plugged = False
    assert sensors_mod.on_battery() is True


# --- heat ------------------------------------------------------------------------------------

def test_heat_pauses_after_pause_after_and_resumes_5_degrees_below_for_resume_after() -> None:
    g = gate(max_temperature=90.0)
    cpu = "coretemp Package id 0"
    assert feed(g, 0, temperatures={cpu: 92.0, "coretemp Core 0": 70.0}).run  # one sample
    d = feed(g, 1, temperatures={cpu: 93.0})
    assert d.reason == "hot: coretemp Package id 0 93°C > 90°C for 1s"
    # below the limit but not 5 °C below: still paused, and no count towards resuming
    assert feed(g, 2, temperatures={cpu: 88.0}).reason == \
        "cooling: coretemp Package id 0 88°C, resumes below 85°C"
    assert feed(g, 3, temperatures={cpu: 85.0}).reason == "cooling: 85°C <= 85°C for 0s of 10s"
    assert not feed(g, 12, temperatures={cpu: 84.0}).run
    assert str(feed(g, 12.5, temperatures={cpu: 86.0}).reason).startswith("cooling: coretemp")
    assert not feed(g, 22, temperatures={cpu: 80.0, "acpitz 0": 84.9}).run  # count restarted
    assert feed(g, 32.5, temperatures={cpu: 80.0, "acpitz 0": 84.9}).run


def test_heat_rule_off_by_default_and_a_single_spike_does_not_pause() -> None:
    assert feed(gate(), 0, temperatures={"k10temp Tctl": 99.0}).run
    assert feed(gate(), 1, temperatures={"k10temp Tctl": 99.0}).run
    g = gate(max_temperature=80.0)
    for t in range(10):  # hot, cool, hot, ...: never two hot samples in a row
        assert feed(g, t, temperatures={"k10temp Tctl": 95.0 if t % 2 else 60.0}).run


def test_cpu_temperatures_keep_the_cpu_chips(monkeypatch: pytest.MonkeyPatch) -> None:
    from collections import namedtuple
    T = namedtuple("T", "label current high critical")
    chips = {"coretemp": [T("Package id 0", 71.0, 80, 100), T("", 65.0, 80, 100)],
             "nvme": [T("Composite", 95.0, 80, 90)], "iwlwifi_1": [T("", 40.0, None, None)]}
    monkeypatch.setattr(sensors_mod.psutil, "sensors_temperatures", lambda: chips)
    assert sensors_mod.cpu_temperatures() == {"coretemp Package id 0": 71.0, "coretemp 1": 65.0}
    monkeypatch.setattr(sensors_mod.psutil, "sensors_temperatures",
                        lambda: {"acpitz": [T("", 55.0, None, None)], "nvme": chips["nvme"]})
    assert sensors_mod.cpu_temperatures() == {"acpitz 0": 55.0}, "no CPU chip: the ACPI zone"


# --- exclusive programs ----------------------------------------------------------------------

def test_exclusive_app_pauses_at_once_and_resumes_resume_after_after_it_exits() -> None:
    g = gate()
    assert feed(g, 0).run
    assert feed(g, 1, apps=frozenset({"zoom"})).reason == "exclusive app running: zoom"
    assert feed(g, 2, apps=frozenset({"zoom", "steam"})).reason == \
        "exclusive app running: steam, zoom"
    assert feed(g, 3).reason == "exclusive app steam, zoom exited for 0s of 10s"
    assert feed(g, 12).reason == "exclusive app steam, zoom exited for 9s of 10s"
    assert feed(g, 13).run
    assert feed(gate(exclusive_apps=()), 14, apps=frozenset({"zoom"})).run, "not listed"


# --- the user at the keyboard ----------------------------------------------------------------

def test_user_active_pauses_until_the_input_is_old_enough() -> None:
    g = gate(pause_while_user_active=300.0)
    assert feed(g, 0).run, "no source: nothing to go by"
    assert feed(g, 1, user_idle=12.4, idle_source="logind").reason == \
        "user active 12s ago < 5m (logind)"
    assert feed(g, 2, user_idle=299.0, idle_source="logind").reason is not None
    assert feed(g, 3, user_idle=300.0, idle_source="logind").run
    assert feed(gate(), 4, user_idle=0.0, idle_source="logind").run, "off by default"


def test_user_idle_takes_the_source_that_saw_input_last() -> None:
    class Src:
        def __init__(self, name: str, idle: float | None) -> None:
            self.name, self._idle = name, idle

        def idle(self, now: float) -> float | None:
            return self._idle
    got = user_idle([Src("logind", 400.0), Src("irq", 3.0), Src("none", None)], 0.0)
    assert (got.user_idle, got.idle_source, got.idle_sources) == (3.0, "irq", ("logind", "irq"))
    assert user_idle([Src("none", None)], 0.0) == Sensed()


def test_logind_idle_hint() -> None:
    wall = 1_800_000_100.0
    assert logind_idle("IdleHint=yes\nIdleSinceHint=1800000000000000\n", wall) == 100.0
    assert logind_idle("IdleHint=no\nIdleSinceHint=1800000000000000\n", wall) == 0.0
    assert logind_idle("IdleHint=no\nIdleSinceHint=0\n", wall) is None, "never reported"
    assert logind_idle("", wall) is None


def test_logind_is_asked_every_10s_and_falls_back_to_the_manager() -> None:
    asked: list[list[str]] = []

    def run(argv: list[str]) -> str | None:
        asked.append(argv)
        if argv[1] == "show-seat":
            return None  # no seat0 (a server)
        return "IdleHint=no\nIdleSinceHint=5\n"
    w = LogindWatch("/usr/bin/loginctl", run)
    assert w.idle(100.0) == 0.0
    assert w.idle(104.0) == 4.0, "between questions the answer ages"
    assert len(asked) == 2 and asked[1][1:] == ["show-session", "-p", "IdleHint", "-p",
                                                 "IdleSinceHint"]
    assert w.idle(110.0) == 0.0 and len(asked) == 4
    assert LogindWatch("/nonexistent/loginctl").idle(0.0) is None


def test_interrupts_of_ps2_input_devices(tmp_path: Path) -> None:
    f = tmp_path / "interrupts"
    head = "           CPU0       CPU1\n"
    line = "  {n}:  {a}  {b}  IO-APIC   1-edge      i8042\n"
    f.write_text(head + line.format(n=1, a=10, b=0) + " 8:  0  0  IO-APIC  8-edge  rtc0\n")
    w = InterruptWatch(f)
    assert w.idle(100.0) == 0.0, "until the counts move, input is taken to be now"
    assert w.idle(130.0) == 30.0
    f.write_text(head + line.format(n=1, a=10, b=4))
    assert w.idle(140.0) == 0.0
    assert w.idle(141.5) == 1.5
    f.write_text(head + " 8:  0  0  IO-APIC  8-edge  rtc0\n")
    assert InterruptWatch(f).idle(0.0) is None, "no PS/2 device: not a source"
    assert InterruptWatch(tmp_path / "missing").idle(0.0) is None


def test_system_sensors_read_this_machine_with_every_rule_on() -> None:
    s = Settings(max_temperature=90.0, exclusive_apps=("no-such-program-xyz",),
                 pause_while_user_active=60.0)
    got = SystemSensors().read(time.monotonic(), s)
    assert got.apps == frozenset() and isinstance(got.on_battery, bool)
    assert all(isinstance(v, float) for v in got.temperatures.values())
    assert (got.user_idle is None) == (got.idle_sources == ())


# --- AppWatch: cheap, on a fake /proc ----------------------------------------------------------

class FakeProc:
    def __init__(self, root: Path) -> None:
        self.root, self.forks = root, 100
        root.mkdir()

    def spawn(self, pid: int, comm: str, argv0: str | None = None) -> None:
        d = self.root / str(pid)
        d.mkdir()
        (d / "comm").write_text(comm[:15] + "\n")
        (d / "cmdline").write_bytes((argv0 or comm).encode() + b"\0--flag\0")
        self.forks += 1

    def execs(self, pid: int, comm: str) -> None:  # no fork: the count stays
        (self.root / str(pid) / "comm").write_text(comm[:15] + "\n")

    def exit(self, pid: int) -> None:
        shutil.rmtree(self.root / str(pid))


def test_app_watch_reads_only_new_pids_and_nothing_while_no_fork_happened(
        tmp_path: Path) -> None:
    proc = FakeProc(tmp_path / "proc")
    for pid in range(1, 201):
        proc.spawn(pid, f"daemon{pid}")
    w = AppWatch(["zoom"], proc.root, forks=lambda: proc.forks)
    assert w.running(0.0) == frozenset() and w.reads == 200  # the first, full listing
    w.running(10.0)
    w.running(11.0)
    assert w.reads == 200, "no fork, nothing young: not one process read"
    proc.spawn(300, "zoom")
    assert w.running(12.0) == frozenset({"zoom"})
    assert w.reads == 201, "only the new pid was read"
    w.running(20.0)  # the match is read again (has it exited?), nothing else
    assert w.reads == 202
    proc.exit(300)
    assert w.running(21.0) == frozenset()


def test_app_watch_sees_an_exec_after_the_fork(tmp_path: Path) -> None:
    proc = FakeProc(tmp_path / "proc")
    proc.spawn(1, "init")
    w = AppWatch(["steam"], proc.root, forks=lambda: proc.forks)
    w.running(0.0)
    proc.spawn(2, "bash")  # a launcher forks: the child still has its parent's name...
    assert w.running(1.0) == frozenset()
    proc.execs(2, "steam")  # ...then execs, which moves no counter
    assert w.running(2.0) == frozenset({"steam"})


def test_app_watch_long_names_by_command_line_and_a_full_rescan(tmp_path: Path) -> None:
    proc = FakeProc(tmp_path / "proc")
    proc.spawn(1, "init")
    name = "blender-softwaregl"  # 18 characters: the kernel keeps 15 of them
    w = AppWatch([name, "zoom"], proc.root, forks=lambda: proc.forks)
    proc.spawn(2, name, f"/opt/blender/{name}")
    proc.spawn(3, name[:15], "/usr/bin/blender-softwareX")  # same 15, another program
    assert w.running(0.0) == frozenset({name})
    # a pid reused between two listings, by a process that was never young when read
    proc.exit(3)
    proc.spawn(3, "zoom")
    proc.forks = 10**6
    w.running(1.0)  # listed: pid 3 is not new, so it is not read...
    w._young.clear()
    assert "zoom" not in w.running(2.0)
    assert "zoom" in w.running(61.0), "...until the full rescan a minute later"


def test_app_watch_finds_a_real_process(tmp_path: Path) -> None:
    fake = tmp_path / "fakezoom"
    shutil.copy("/bin/sleep", fake)
    w = AppWatch(["fakezoom"])
    assert w.running(time.monotonic()) == frozenset()
    p = subprocess.Popen([str(fake), "30"])
    try:
        assert wait_until(lambda: w.running(time.monotonic()) == {"fakezoom"}, 5.0)
    finally:
        p.kill()
        p.wait(timeout=10)
    assert w.running(time.monotonic()) == frozenset()


# --- grace period and ignore_load --------------------------------------------------------------

def test_pause_after_as_seconds_is_a_grace_period() -> None:
    g = gate(pause_after="10s")
    for t in range(5):  # a 5 s burst
        assert feed(g, t, load=0.9).run
    assert not g.confirming, "a grace period needs no early confirming samples"
    assert feed(g, 5).run
    for t in range(6, 16):
        assert feed(g, t, load=0.9).run, t
    assert feed(g, 16, load=0.9).reason == "other load 90% > 25% for 10s"


def test_every_etiquette_rule_applies_with_ignore_load() -> None:
    g = gate(ignore_load=True, max_temperature=80.0, pause_while_user_active=60.0,
             pause_after=1)
    assert feed(g, 0, load=1.0).run
    assert feed(g, 1, on_battery=True).reason == "on battery"
    assert feed(g, 2, apps=frozenset({"zoom"})).reason == "exclusive app running: zoom"
    g = gate(ignore_load=True, max_temperature=80.0, pause_while_user_active=60.0,
             pause_after=1)
    assert str(feed(g, 0, user_idle=5.0, idle_source="logind").reason).startswith("user active")
    assert str(feed(g, 1, temperatures={"cpu 0": 85.0}).reason).startswith("hot: cpu 0 85°C")


def test_reasons_in_priority_order() -> None:
    g = gate(max_temperature=80.0, pause_while_user_active=60.0, pause_after=1)
    everything: dict[str, Any] = dict(
        on_battery=True, apps=frozenset({"zoom"}), user_idle=1.0, idle_source="logind",
        temperatures={"cpu 0": 99.0})
    order = ["on battery", "exclusive app running", "user active", "hot:", "other load"]
    for expected in order:
        reason = feed(g, 0, load=0.9, **everything).reason
        assert reason is not None and reason.startswith(expected), (expected, reason)
        lift: dict[str, dict[str, Any]] = {
            "on battery": {"on_battery": False}, "exclusive app running": {"apps": frozenset()},
            "user active": {"user_idle": None}, "hot:": {"temperatures": {}}, "other load": {}}
        everything = {**everything, **lift[expected]}
        g = gate(max_temperature=80.0, pause_while_user_active=60.0, pause_after=1)


# --- settings --------------------------------------------------------------------------------

def test_settings_defaults_and_durations() -> None:
    s = Settings()
    assert (s.on_battery, s.max_temperature, s.exclusive_apps, s.pause_while_user_active,
            s.pause_after) == ("pause", 0.0, (), 0.0, 2)
    s = settings_from({"pause_after": "10s", "pause_while_user_active": "1m30s",
                       "exclusive_apps": ["zoom"], "max_temperature": 85}, "f")
    assert (s.pause_after, s.pause_while_user_active, s.exclusive_apps, s.max_temperature) \
        == ("10s", 90.0, ("zoom",), 85.0)
    assert settings_from({"pause_after": "3"}, "command line").pause_after == 3
    assert settings_from({"pause_while_user_active": 120}, "f").pause_while_user_active == 120.0


@pytest.mark.parametrize("values, message", [
    ({"on_battery": "yes"}, "on_battery: expected \"pause\" or \"ignore\", got 'yes'"),
    ({"max_temperature": 20}, "max_temperature: expected 0 (off) or °C in [30, 150], got 20"),
    ({"exclusive_apps": "zoom"}, "exclusive_apps: expected a list of program names, got 'zoom'"),
    ({"exclusive_apps": ["/usr/bin/zoom"]}, "exclusive_apps: expected a list of program names"),
    ({"pause_while_user_active": "soon"},
     "pause_while_user_active: expected a duration like \"5m\" or 0 (off), got 'soon'"),
    ({"pause_after": "ten"}, "pause_after: expected a number of samples or a duration"),
    ({"pause_after": 1.5}, "pause_after: expected a number of samples or a duration"),
])
def test_bad_etiquette_settings(values: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError) as e:
        settings_from(values, "f")
    assert str(e.value).startswith(f"f: {message}")


# --- stepped through the daemon ----------------------------------------------------------------

def test_exclusive_app_suspends_the_worker_and_says_so(tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "searchd")
    with stepped(tmp_path, exclusive_apps=("zoom",), ignore_load=True) as r:
        w = running(r)
        r.sensors.set(apps=frozenset({"zoom"}))
        r.step()
        assert r.calls == [("suspend", w.pid)]
        rec = r.rec()
        assert rec.state == S.PAUSED and rec.paused_reason == "exclusive app running: zoom"
        assert r.summary()["paused_reason"] == "exclusive app running: zoom"
        assert r.daemon.status_line() == "paused j: exclusive app running: zoom"
        r.sensors.set(apps=frozenset())
        r.step(n=4)
        assert r.calls == [("suspend", w.pid)], "resume_after (5 s) after it exits"
        assert r.rec().paused_reason == "exclusive app zoom exited for 3s of 5s"
        r.step(n=2)
        assert r.calls[-1] == ("resume", w.pid) and r.rec().state == S.RUNNING
    assert "pausing: exclusive app running: zoom" in caplog.text
    assert "resuming (was exclusive app zoom exited" in caplog.text


def test_on_battery_holds_back_the_next_job(tmp_path: Path) -> None:
    with stepped(tmp_path) as r:
        r.sensors.set(on_battery=True)
        r.write()
        r.scan_step()
        assert not r.launcher.started and r.rec().paused_reason == "on battery"
        assert r.daemon.status_line() == "paused: on battery"
        r.sensors.set(on_battery=False)
        r.step()
        assert r.launcher.started and r.rec().paused_reason is None


def test_heat_and_grace_through_the_daemon(tmp_path: Path) -> None:
    with stepped(tmp_path, max_temperature=90.0, pause_after="3s") as r:
        w = running(r)
        r.sensors.set(temperatures={"k10temp Tctl": 95.0})
        r.step(n=3)
        assert r.calls == [], "3 s of grace"
        r.step()
        assert r.calls == [("suspend", w.pid)]
        assert r.rec().paused_reason == "hot: k10temp Tctl 95°C > 90°C for 3s"
        r.sensors.set(temperatures={"k10temp Tctl": 86.0})
        r.step(n=10)
        assert r.calls == [("suspend", w.pid)], "not 5 °C below yet"
        r.sensors.set(temperatures={"k10temp Tctl": 84.0})
        r.step(n=6)
        assert r.calls[-1] == ("resume", w.pid)


def test_user_rule_names_its_source_or_says_there_is_none(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "searchd")
    with stepped(tmp_path, pause_while_user_active=300.0) as r:
        w = running(r)
        assert r.daemon.status_line() == "running j: starting (pause_while_user_active: no " \
                                         "source of keyboard/mouse activity)"
        r.step(n=3)
        assert caplog.text.count("no source of keyboard/mouse activity") == 1, "once"
        r.sensors.set(user_idle=20.0, idle_source="logind", idle_sources=("logind",))
        r.step()
        assert r.calls == [("suspend", w.pid)]
        assert r.rec().paused_reason == "user active 20s ago < 5m (logind)"
        assert "keyboard/mouse activity from logind" in caplog.text
        assert "(pause_while_user_active" not in r.daemon.status_line()
        r.sensors.set(user_idle=300.0)
        r.step()
        assert r.calls[-1] == ("resume", w.pid)


def test_reload_turns_a_rule_on(tmp_path: Path) -> None:
    holder: dict[str, Settings] = {}
    with stepped(tmp_path, reload=lambda: holder["s"]) as r:
        w = running(r)
        r.sensors.set(apps=frozenset({"steam"}))  # the fake sees it; the rule is off
        r.step()
        assert r.calls == []
        holder["s"] = Settings(**{**{f: getattr(r.daemon.settings, f) for f in (
            "state_dir", "jobs_dir", "max_load", "pause_after", "resume_after",
            "min_free_memory", "max_suspend", "restart_backoff", "max_worker_deaths")},
            "exclusive_apps": ("steam",)})
        r.daemon.reload_requested = True
        r.step()
        assert r.calls == [("suspend", w.pid)]


# --- end to end --------------------------------------------------------------------------------

# 90 k-NN fits on digits of ~0.06 CPU-seconds each: ~5 s of work, paused mid-search. Odd k
# and scaled pixels: raw pixels tie in distance, and ties are broken differently by
# differently chunked neighbour searches, which would compare the tie-breaking, not searchd.
E2E_JOB = """
[data]
source = "sklearn:digits"

[search]
cv = 3

[[preprocess]]
name = "scale"
estimator = "StandardScaler"

[models.knn]
estimator = "KNeighborsClassifier"
grid = { n_neighbors = { range = [1, 61, 2] } }
"""
E2E_FITS = 30 * 3


@pytest.mark.slow  # the rule's steps are tested above on the steppable daemon
@pytest.mark.timeout(120)
def test_a_real_exclusive_program_suspends_and_resumes_the_tree_with_scores_unchanged(
        env: Env) -> None:
    fake = env.root / "fakezoom"
    shutil.copy("/bin/sleep", fake)
    cfg = env.root / "searchd.toml"
    cfg.write_text('exclusive_apps = ["fakezoom"]\nresume_after = 1.0\nsample_interval = 0.5\n'
                   'min_free_memory = 0.0\nmax_suspend = 0.0\ncheckpoint_interval = 1.0\n')
    env.write_job("zoomed.toml", E2E_JOB)
    # --ignore-load (env.start's default): the etiquette rules apply without the load rule
    daemon = env.start("--config", str(cfg), "--n-jobs", "2")
    # generous waits: on a shared 2-core machine the worker's start can take a while
    env.wait_for(lambda: fits_logged(env, "zoomed") >= 5, 40, "the first fits")
    assert env.summary("zoomed").get("state") == "running"

    app = subprocess.Popen([str(fake), "60"], start_new_session=True)
    try:
        t0 = time.monotonic()
        stopped = wait_until(lambda: all_stopped(daemon.pid), 3.0)
        assert stopped is not None, f"not suspended 3 s after fakezoom started\n" \
                                    f"{env.log()[-2000:]}"
        print(f"suspended {stopped - t0:.2f}s after fakezoom started")
        env.wait_for(lambda: env.summary("zoomed").get("state") == "paused", 3, "paused")
        rec = status_of(env, "zoomed")
        assert rec["paused_reason"] == "exclusive app running: fakezoom"
        assert "paused: exclusive app running: fakezoom" in env.cli("status").stdout
        fits = fits_logged(env, "zoomed")
        assert fits < E2E_FITS, "paused mid-search"  # fits.log: a byte per fit
        time.sleep(1.0)
        assert fits_logged(env, "zoomed") == fits and all_stopped(daemon.pid)
    finally:
        app.kill()
        app.wait(timeout=10)
    t1 = time.monotonic()
    resumed = wait_until(lambda: none_stopped(daemon.pid), 5.0)
    assert resumed is not None, f"not resumed after fakezoom exited\n{env.log()[-2000:]}"
    assert resumed - t1 >= 0.5, "resumed before resume_after"
    env.wait_for(lambda: env.summary("zoomed").get("state") == "done", 40, "the job to finish")
    assert env.summary("zoomed")["paused_reason"] is None
    log = env.log()
    assert "pausing: exclusive app running: fakezoom" in log, log[-2000:]
    assert "resuming (was exclusive app fakezoom exited" in log, log[-2000:]
    assert stop_daemon(daemon) == 0
    results = searchd.load_results("zoomed", env.state)
    assert assert_same_as_gridsearch(results, env.state / "zoomed" / "job.toml") == E2E_FITS
    assert not os.path.exists(env.state / "pause.json")
