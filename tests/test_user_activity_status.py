"""Issue 20's leftover: ``searchd status`` says which source of keyboard and mouse activity
the "user at the keyboard" rule reads, or that none is available (and ``status --json``
has it as ``user_activity``). The daemon is stepped with fake sensors, in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_daemon_step import rig as stepped
from test_daemon_step import running

from searchd.cli.main import main
from searchd.state.daemon_status import STATUS_FILE, read_status

pytestmark = pytest.mark.timeout(30)


def status(state: Path, jobs: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    capsys.readouterr()
    assert main(["status", "--state", str(state), "--jobs", str(jobs), *extra]) == 0
    return capsys.readouterr().out


def test_status_names_the_source_then_none_then_nothing_when_the_rule_is_off(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    holder: dict[str, object] = {}
    with stepped(tmp_path, pause_while_user_active=300.0,
                 reload=lambda: holder["s"]) as r:
        running(r)
        # no source answers: status says so, the JSON has available false
        assert read_status(r.state)["user_activity"] == {
            "pause_while_user_active": 300.0, "sources": [], "available": False}
        out = status(r.state, r.jobs, capsys)
        assert ("user at the keyboard (pause_while_user_active 5m): no source of "
                "keyboard/mouse activity is available") in out
        # logind answers
        r.sensors.set(user_idle=400.0, idle_source="logind", idle_sources=("logind",))
        r.step()
        out = status(r.state, r.jobs, capsys)
        assert out.splitlines()[0] == ("user at the keyboard (pause_while_user_active 5m): "
                                       "activity read from logind")
        got = json.loads(status(r.state, r.jobs, capsys, "--json"))
        assert [j["user_activity"] for j in got] == [
            {"pause_while_user_active": 300.0, "sources": ["logind"], "available": True}]
        # two sources
        r.sensors.set(idle_sources=("logind", "/proc/interrupts (i8042)"))
        r.step()
        assert "activity read from logind, /proc/interrupts (i8042)" in status(
            r.state, r.jobs, capsys)
        # the file is written when the sources change, not at every sample
        before = (r.state / STATUS_FILE).stat().st_mtime_ns
        r.step(n=3)
        assert (r.state / STATUS_FILE).stat().st_mtime_ns == before
        # SIGHUP turns the rule off: no line, the file is gone, the field is null
        import dataclasses
        holder["s"] = dataclasses.replace(r.daemon.settings, pause_while_user_active=0.0)
        r.daemon.reload_requested = True
        r.step()
        assert not (r.state / STATUS_FILE).exists()
        assert "user at the keyboard" not in status(r.state, r.jobs, capsys)
        got = json.loads(status(r.state, r.jobs, capsys, "--json"))
        assert [j["user_activity"] for j in got] == [None]


def test_the_rule_off_writes_nothing(tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    with stepped(tmp_path) as r:
        running(r)
        r.step(n=2)
        assert not (r.state / STATUS_FILE).exists()
        assert "user at the keyboard" not in status(r.state, r.jobs, capsys)


def test_rule_on_in_the_config_before_the_daemon_said_anything(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "searchd.toml"
    cfg.write_text('pause_while_user_active = "2m"\n')
    (tmp_path / "jobs").mkdir()
    capsys.readouterr()
    assert main(["status", "--config", str(cfg), "--state", str(tmp_path / "state"),
                 "--jobs", str(tmp_path / "jobs")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == ("user at the keyboard (pause_while_user_active 2m): "
                                   "source not known yet (the daemon has not read one)")


def test_a_group_member_sees_the_line_through_the_published_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import stat

    from searchd.state import published
    with stepped(tmp_path, pause_while_user_active=60.0, publish=True) as r:
        running(r)
        r.sensors.set(user_idle=400.0, idle_source="logind", idle_sources=("logind",))
        r.step()
        copy = r.state / "published" / STATUS_FILE
        assert stat.S_IMODE(copy.stat().st_mode) == 0o640
        assert read_status(r.state / "published") == read_status(r.state)
        monkeypatch.setattr(published, "private_unreadable", lambda state_dir: True)
        capsys.readouterr()
        assert main(["status", "--state", str(r.state), "--jobs", str(r.jobs)]) == 0
        got = capsys.readouterr()
        assert "reading the published results in" in got.err
        assert got.out.splitlines()[0] == ("user at the keyboard (pause_while_user_active "
                                           "1m): activity read from logind")
        assert "j " in got.out
