"""Habits (issue 21, item 5): ``--version``, ``status --watch``, ``completion bash|zsh|fish``."""

from __future__ import annotations

import importlib.metadata
import io
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import searchd
from searchd.cli import completion
from searchd.cli.main import build_parser, main, package_version
from searchd.cli.watch import CLEAR, watch

REPO = Path(__file__).resolve().parent.parent


# --- --version -----------------------------------------------------------------------------------

def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out == f"searchd {importlib.metadata.version('searchd')}\n"


def test_version_without_an_installed_distribution(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)
    monkeypatch.setattr(importlib.metadata, "version", missing)
    assert package_version() == searchd.__version__


# --- status --watch ------------------------------------------------------------------------------

def test_status_watch_refreshes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "jobs").mkdir()
    rc = main(["status", "--watch", "0.01", "--watch-count", "3", "--state",
               str(tmp_path / "state"), "--jobs", str(tmp_path / "jobs")])
    out = capsys.readouterr().out
    assert rc == 0
    assert out.count("Every 0.01s: searchd status") == 3
    assert out.count("no jobs (put job files in") == 3
    assert "\x1b" not in out  # not a terminal: no escape codes


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_watch_redraws_in_place_on_a_terminal() -> None:
    out = Tty()
    calls: list[float] = []
    rc = watch(lambda: print("line") or 0, 5, "t", count=2, out=out, sleep=calls.append)
    text = out.getvalue()
    assert rc == 0 and calls == [5]
    assert text.count(CLEAR) == 2 and text.startswith(CLEAR)
    assert text.count("line\n") == 2


def test_watch_ends_with_0_on_ctrl_c() -> None:
    def interrupted(_: float) -> None:
        raise KeyboardInterrupt
    assert watch(lambda: 0, 1, "t", out=Tty(), sleep=interrupted) == 0


@pytest.mark.timeout(60)
def test_status_watch_ctrl_c_exits_0(tmp_path: Path) -> None:
    (tmp_path / "jobs").mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "searchd", "status", "--watch", "0.2",
                             "--state", str(tmp_path / "state"), "--jobs",
                             str(tmp_path / "jobs")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)},
                            # Ctrl-C as a terminal gives it: a disposition of SIG_IGN that
                            # another test left in this process would be inherited
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert proc.stdout is not None
        assert "Every 0.2s" in proc.stdout.readline()  # it is running
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "Traceback" not in err


@pytest.mark.parametrize("value", ["0", "-1", "abc", "inf"])
def test_status_watch_needs_a_positive_interval(value: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["status", "--watch", value])
    assert e.value.code == 2
    assert "expected a positive number of seconds" in capsys.readouterr().err


# --- completion ----------------------------------------------------------------------------------

def every_command() -> list[completion.Command]:
    return completion.describe(build_parser()).walk()[1:]


def script(shell: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["completion", shell]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("shell", completion.SHELLS)
def test_completion_mentions_every_sub_command_and_option(
        shell: str, capsys: pytest.CaptureFixture[str]) -> None:
    text = script(shell, capsys)
    commands = every_command()
    names = {c.path[-1] for c in commands}
    assert {"run", "status", "show", "service", "install", "uninstall", "completion"} <= names
    for c in commands:
        assert c.path[-1] in text, f"{shell}: {' '.join(c.path)}"
        for o in c.options:
            for flag in o.flags:
                # fish spells --state as "-l state", -o as "-s o"
                spelled = (f"-l {flag[2:]}" if flag.startswith("--") else f"-s {flag[1:]}") \
                    if shell == "fish" else flag
                assert spelled in text, f"{shell}: {' '.join(c.path)} {flag}"
    assert "--watch-count" not in text  # hidden options stay hidden


def test_completion_choices_and_kinds() -> None:
    tree = completion.describe(build_parser())
    export = next(c for c in tree.walk() if c.path == ("export",))
    fmt = next(o for o in export.options if "--format" in o.flags)
    assert fmt.kind == "choices" and fmt.choices == ("pickle", "joblib", "skops")
    state = next(o for o in export.options if "--state" in o.flags)
    assert state.kind == "dir"
    validate = next(c for c in tree.walk() if c.path == ("validate",))
    assert validate.positionals[0].kind == "file"


def test_bash_script_parses_and_completes(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "searchd.bash"
    path.write_text(script("bash", capsys))
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True,
                          timeout=30).returncode == 0
    probe = f"""
source {path}
t() {{ COMP_WORDS=("$@"); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); COMPREPLY=(); _searchd;
       echo "${{COMPREPLY[*]}}"; }}
t searchd ""
t searchd service ""
t searchd --state /tmp st
t searchd export job --format ""
t searchd service install --r
t searchd completion ""
"""
    out = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert set(lines[0].split()) == {c.path[0] for c in every_command() if len(c.path) == 1}
    assert lines[1:] == ["install uninstall", "status", "pickle joblib skops", "--root",
                         "bash zsh fish"]


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh not installed")
def test_zsh_script_parses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "_searchd"
    path.write_text(script("zsh", capsys))
    out = subprocess.run(["zsh", "-n", str(path)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    loaded = subprocess.run(["zsh", "-f", "-c", f"autoload -U compinit; compinit -u -D; "
                             f"source {path}; print $_comps[searchd]"],
                            capture_output=True, text=True, timeout=60)
    assert loaded.stdout.strip() == "_searchd", loaded.stderr


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish not installed")
def test_fish_script_parses_and_completes(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "searchd.fish"
    path.write_text(script("fish", capsys))
    assert subprocess.run(["fish", "-n", str(path)], timeout=30).returncode == 0
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    out = subprocess.run(["fish", "--no-config", "-c",
                          f"source {path}; complete -C 'searchd service '"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert [line.split("\t")[0] for line in out.stdout.splitlines()] == ["install", "uninstall"]
