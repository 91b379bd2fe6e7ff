"""``searchd service install|uninstall`` and the user config lookup (issue 21, items 1 and 2).

Everything is installed under ``--root`` into temporary folders and checked the way systemd
reads it (``systemd-analyze verify``); nothing touches the machine's systemd.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from searchd.cli import service
from searchd.cli.main import main
from searchd.config_paths import find_user_config, user_config_path
from searchd.errors import ServiceError, SettingsError
from searchd.settings import Settings, load_config, resolve_settings, settings_from

REPO = Path(__file__).resolve().parent.parent
SHIPPED = ("searchd.service", "searchd-user.service", "searchd.sysusers", "searchd.tmpfiles",
           "searchd.toml")
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze not installed "
                                   "(apt-get install systemd; .ci/systemd-check does)")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private $HOME with the XDG defaults, and no searchd variables."""
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("HOME", str(h))
    for var in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "SEARCHD_STATE", "SEARCHD_JOBS",
                "SEARCHD_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    return h


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def in_root(root: Path, path: Path) -> Path:
    return root / path.relative_to("/")


# --- the package data ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", SHIPPED)
def test_packaged_files_are_the_systemd_folder(name: str) -> None:
    packaged = REPO / "searchd" / "service_files" / name
    assert packaged.read_bytes() == (REPO / "systemd" / name).read_bytes(), \
        f"systemd/{name} changed: cp systemd/{name} searchd/service_files/{name}"
    assert service.template(name) == packaged.read_text()


def test_package_data_is_declared() -> None:
    text = (REPO / "pyproject.toml").read_text()
    assert '"searchd.service_files"' in text


# --- user service --------------------------------------------------------------------------------

def test_install_user_writes_unit_config_and_folders(home: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    rc, out, err = cli(capsys, "service", "install", "--user", "--root", str(root))
    assert rc == 0, err
    program = service.find_program(None)
    config = home / ".config/searchd/searchd.toml"
    state, jobs = home / ".local/state/searchd", home / "searchd/jobs"
    unit = in_root(root, home / ".config/systemd/user/searchd.service")
    assert unit.read_text() == service.user_unit(program, config, state)
    text = unit.read_text()
    assert f"ExecStart={program} run --config {config}\n" in text
    assert f"ReadWritePaths={state}\n" in text and "%h/.local" not in text
    assert "Type=notify" in text and "WatchdogSec=60" in text and "NotifyAccess=main" in text
    # the config: the commented system one with the user's folders, loadable, private
    written = in_root(root, config)
    settings = settings_from(load_config(written), str(written))
    assert (settings.state_dir, settings.jobs_dir) == (state, jobs)
    assert dataclass_rest(settings) == dataclass_rest(Settings())
    assert "systemctl --user reload searchd" in written.read_text()
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    for folder in (state, jobs):
        assert stat.S_IMODE(in_root(root, folder).stat().st_mode) == 0o700
    # each step printed; with --root nothing is run
    for line in (f"wrote {unit}", f"wrote {written}", f"made  {in_root(root, state)}",
                 "skip  systemctl --user daemon-reload",
                 "skip  systemctl --user enable --now searchd.service",
                 "loginctl enable-linger"):
        assert line in out
    assert "  run   " not in out


def dataclass_rest(s: Settings) -> dict[str, object]:
    """Every setting but the two folders."""
    d = dict(vars(s))
    del d["state_dir"], d["jobs_dir"]
    return d


@needs_analyze
def test_installed_user_unit_verifies(home: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    assert cli(capsys, "service", "install", "--user", "--root", str(root))[0] == 0
    unit = in_root(root, home / ".config/systemd/user/searchd.service")
    out = verify_user(unit, home, tmp_path)
    assert out.returncode == 0 and out.stdout + out.stderr == ""


def verify_user(unit: Path, home: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    # --user verify needs a runtime folder, not a running user manager
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(runtime)}
    return subprocess.run([str(ANALYZE), "--user", "verify", str(unit)], capture_output=True,
                          text=True, env=env, timeout=60)


@needs_analyze
def test_shipped_user_unit_verifies_and_verify_catches_mistakes(home: Path,
                                                                tmp_path: Path) -> None:
    (home / ".local/bin").mkdir(parents=True)  # the unit's ExecStart must exist
    program = home / ".local/bin/searchd"
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o755)
    unit = tmp_path / "searchd.service"
    shutil.copy(REPO / "systemd/searchd-user.service", unit)
    out = verify_user(unit, home, tmp_path)
    assert out.returncode == 0 and out.stdout + out.stderr == ""
    unit.write_text(unit.read_text().replace("NoNewPrivileges=yes", "NoNewPrivilege=yes"))
    assert "Unknown key" in verify_user(unit, home, tmp_path).stderr  # the check has teeth


def test_install_user_with_chosen_folders_and_xdg(home: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "cfg"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / "st"))
    root = tmp_path / "root"
    rc, _, err = cli(capsys, "service", "install", "--user", "--root", str(root),
                     "--jobs", str(home / "work/jobs"))
    assert rc == 0, err
    config = in_root(root, home / "cfg/searchd/searchd.toml")
    settings = settings_from(load_config(config), str(config))
    assert settings.state_dir == home / "st/searchd"
    assert settings.jobs_dir == home / "work/jobs"
    unit = in_root(root, home / "cfg/systemd/user/searchd.service").read_text()
    assert f"ReadWritePaths={home}/st/searchd\n" in unit
    assert f"--config {home}/cfg/searchd/searchd.toml\n" in unit


def test_existing_config_is_never_overwritten(home: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    config = in_root(root, home / ".config/searchd/searchd.toml")
    config.parent.mkdir(parents=True)
    mine = f'# mine\nstate_dir = "{home}/results"\njobs_dir = "{home}/todo"\nmax_load = 0.5\n'
    config.write_text(mine)
    rc, out, err = cli(capsys, "service", "install", "--user", "--root", str(root))
    assert rc == 0, err
    assert config.read_text() == mine
    assert f"kept  {config} (exists; never overwritten)" in out
    # the unit writes where that config says, and its folders exist
    unit = in_root(root, home / ".config/systemd/user/searchd.service").read_text()
    assert f"ReadWritePaths={home}/results\n" in unit
    assert in_root(root, home / "todo").is_dir()
    # a --state that disagrees with it is refused, in one line, nothing changed
    rc, _, err = cli(capsys, "service", "install", "--user", "--root", str(root),
                     "--state", str(home / "other"))
    assert rc != 0 and err.count("\n") == 1 and "never overwritten" in err
    assert config.read_text() == mine


def test_system_config_is_never_overwritten(home: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    config = root / "etc/searchd/searchd.toml"
    config.parent.mkdir(parents=True)
    config.write_text("max_load = 0.5\n")
    assert cli(capsys, "service", "install", "--system", "--root", str(root))[0] == 0
    assert config.read_text() == "max_load = 0.5\n"


def test_unit_paths_that_need_escaping_are_refused(home: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = cli(capsys, "service", "install", "--user", "--root", str(tmp_path / "r"),
                     "--state", str(tmp_path / "my state"))
    assert rc != 0 and "without spaces" in err and err.count("\n") == 1


# --- system service ------------------------------------------------------------------------------

def test_install_system_writes_every_file(home: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    rc, out, err = cli(capsys, "service", "install", "--system", "--root", str(root),
                       "--exec", "/opt/searchd/bin/searchd")
    assert rc == 0, err
    unit = root / "etc/systemd/system/searchd.service"
    assert unit.read_text() == service.template("searchd.service")  # /opt/searchd: unchanged
    assert (root / "etc/sysusers.d/searchd.conf").read_text() == \
        service.template("searchd.sysusers")
    assert (root / "etc/tmpfiles.d/searchd.conf").read_text() == \
        service.template("searchd.tmpfiles")
    config = root / "etc/searchd/searchd.toml"
    assert config.read_text() == service.template("searchd.toml")
    for f in (unit, config):  # the daemon (user searchd) reads the config: not umask's business
        assert stat.S_IMODE(f.stat().st_mode) == 0o644
    for step in ("skip  systemd-sysusers /etc/sysusers.d/searchd.conf",
                 "skip  systemd-tmpfiles --create /etc/tmpfiles.d/searchd.conf",
                 "skip  systemctl daemon-reload", "skip  systemctl enable --now searchd.service"):
        assert step in out
    # another program path is written into ExecStart
    assert cli(capsys, "service", "install", "--system", "--root", str(tmp_path / "r2"),
               "--exec", "/usr/local/bin/searchd")[0] == 0
    text = (tmp_path / "r2/etc/systemd/system/searchd.service").read_text()
    assert "ExecStart=/usr/local/bin/searchd run --config /etc/searchd/searchd.toml\n" in text


@needs_analyze
def test_installed_system_unit_verifies_and_stays_safe(home: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    assert cli(capsys, "service", "install", "--system", "--root", str(root),
               "--exec", "/opt/searchd/bin/searchd")[0] == 0
    # as .ci/systemd-check: the distribution's units and the programs the unit names
    units = next(d for d in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))
                 if d.is_dir())
    shutil.copytree(units, root / "usr/lib/systemd/system", symlinks=True)
    for program in ("opt/searchd/bin/searchd", "bin/kill"):
        (root / program).parent.mkdir(parents=True, exist_ok=True)
        (root / program).write_text("#!/bin/sh\nexit 0\n")
        (root / program).chmod(0o755)
    out = subprocess.run([str(ANALYZE), "verify", f"--root={root}", "searchd.service"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout + out.stderr == ""
    unit = root / "etc/systemd/system/searchd.service"
    sec = subprocess.run([str(ANALYZE), "security", "--offline=yes", "--threshold=10",
                          str(unit)], capture_output=True, text=True, timeout=120)
    assert sec.returncode == 0, sec.stdout  # exposure <= 1.0
    if os.geteuid() == 0:  # the user and the jobs folder, as systemd would make them
        subprocess.run(["systemd-sysusers", f"--root={root}",
                        str(root / "etc/sysusers.d/searchd.conf")], check=True,
                       capture_output=True, timeout=60)
        subprocess.run(["systemd-tmpfiles", f"--root={root}", "--create",
                        str(root / "etc/tmpfiles.d/searchd.conf")], check=True,
                       capture_output=True, timeout=60)
        assert stat.S_IMODE((root / "srv/searchd/jobs").stat().st_mode) == 0o3770


def test_system_unit_cannot_run_a_program_in_home() -> None:
    with pytest.raises(ServiceError, match="ProtectHome"):
        service.system_unit(Path("/home/alice/venv/bin/searchd"))


def test_scope_checks(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                      capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:  # install needs --user or --system
        main(["service", "install"])
    assert e.value.code == 2
    capsys.readouterr()
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    rc, _, err = cli(capsys, "service", "install", "--system")
    assert rc != 0 and "needs root" in err and err.count("\n") == 1
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    rc, _, err = cli(capsys, "service", "install", "--user")
    assert rc != 0 and "as root" in err and err.count("\n") == 1
    rc, _, err = cli(capsys, "service", "install", "--system", "--root", str(tmp_path / "r"),
                     "--jobs", "/srv/jobs")
    assert rc != 0 and "--state/--jobs are for --user" in err


# --- running systemctl ---------------------------------------------------------------------------

class Recorder:
    def __init__(self, fail: str | None = None) -> None:
        self.commands: list[list[str]] = []
        self.fail = fail

    def __call__(self, cmd: Sequence[str]) -> int:
        self.commands.append(list(cmd))
        return 1 if self.fail and self.fail in cmd else 0


def test_user_install_and_uninstall_run_systemctl_in_order(home: Path) -> None:
    # no --root: the files go to the (temporary) home, the commands to the recorder
    program = Path(sys.executable)
    run = Recorder()
    lines: list[str] = []
    service.install(service.user_plan(program, None, None, None), None, run, lines.append)
    assert run.commands == [["systemctl", "--user", "daemon-reload"],
                            ["systemctl", "--user", "enable", "--now", "searchd.service"]]
    assert (home / ".config/systemd/user/searchd.service").is_file()
    assert "  run   systemctl --user enable --now searchd.service" in lines
    run = Recorder()
    service.uninstall("user", None, run, lines.append)
    assert run.commands == [["systemctl", "--user", "disable", "--now", "searchd.service"],
                            ["systemctl", "--user", "daemon-reload"]]


def test_system_plan_commands() -> None:
    plan = service.system_plan(Path("/opt/searchd/bin/searchd"))
    assert plan.commands == [["systemd-sysusers", "/etc/sysusers.d/searchd.conf"],
                             ["systemd-tmpfiles", "--create", "/etc/tmpfiles.d/searchd.conf"],
                             ["systemctl", "daemon-reload"],
                             ["systemctl", "enable", "--now", "searchd.service"]]


def test_a_failed_command_is_one_line(home: Path) -> None:
    with pytest.raises(ServiceError) as e:
        service.install(service.user_plan(Path(sys.executable), None, None, None), None,
                        Recorder(fail="enable"), lambda _: None)
    assert "systemctl --user enable --now searchd.service` failed (exit 1)" in str(e.value)
    assert "\n" not in str(e.value)


# --- uninstall -----------------------------------------------------------------------------------

def test_uninstall_removes_units_and_keeps_data(home: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    assert cli(capsys, "service", "install", "--user", "--root", str(root))[0] == 0
    assert cli(capsys, "service", "install", "--system", "--root", str(root))[0] == 0
    state = in_root(root, home / ".local/state/searchd")
    (state / "searchd.key").write_bytes(b"k")
    (in_root(root, home / "searchd/jobs") / "knn.toml").write_text("x")
    rc, _, err = cli(capsys, "service", "uninstall", "--root", str(root))
    assert rc != 0 and "say --user or --system" in err  # both installed: which one?

    rc, out, _ = cli(capsys, "service", "uninstall", "--user", "--root", str(root))
    assert rc == 0
    assert not in_root(root, home / ".config/systemd/user/searchd.service").exists()
    assert (state / "searchd.key").read_bytes() == b"k"
    assert (in_root(root, home / "searchd/jobs") / "knn.toml").read_text() == "x"
    assert in_root(root, home / ".config/searchd/searchd.toml").is_file()
    assert "kept" in out and "  run   " not in out

    rc, out, _ = cli(capsys, "service", "uninstall", "--root", str(root))  # the one left
    assert rc == 0 and "uninstall --system" in out
    for gone in ("etc/systemd/system/searchd.service", "etc/sysusers.d/searchd.conf",
                 "etc/tmpfiles.d/searchd.conf"):
        assert not (root / gone).exists()
    assert (root / "etc/searchd/searchd.toml").is_file()

    rc, out, _ = cli(capsys, "service", "uninstall", "--root", str(root))
    assert rc == 0 and "no searchd service is installed" in out


# --- the config lookup ---------------------------------------------------------------------------

def write_user_config(home: Path, text: str, base: str = ".config") -> Path:
    p = home / base / "searchd" / "searchd.toml"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def test_no_config_anywhere_keeps_the_defaults(home: Path) -> None:
    assert find_user_config() is None
    s = resolve_settings(None, {})
    assert (s.state_dir, s.jobs_dir) == (Path("state"), Path("jobs"))


def test_user_config_is_found_in_xdg_config_home(home: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    write_user_config(home, 'state_dir = "/u/state"\n')  # ~/.config by default
    assert resolve_settings(None, {}).state_dir == Path("/u/state")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "elsewhere"))
    assert resolve_settings(None, {}).state_dir == Path("state")  # not there
    write_user_config(home, 'state_dir = "/x/state"\n', "elsewhere")
    assert resolve_settings(None, {}).state_dir == Path("/x/state")
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/cfg")  # the spec: ignore relative paths
    assert user_config_path() == home / ".config/searchd/searchd.toml"
    assert resolve_settings(None, {}).state_dir == Path("/u/state")


def test_lookup_order(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_user_config(home, 'state_dir = "/user/state"\njobs_dir = "/user/jobs"\n'
                      "max_load = 0.5\n")
    named = tmp_path / "named.toml"
    named.write_text('state_dir = "/named/state"\n')
    # a named config replaces the user config entirely (its max_load does not leak in)
    s = resolve_settings(named, {})
    assert s.state_dir == Path("/named/state") and s.max_load == 0.25
    monkeypatch.setenv("SEARCHD_CONFIG", str(named))
    s = resolve_settings(None, {})
    assert s.state_dir == Path("/named/state") and s.jobs_dir == Path("jobs")
    monkeypatch.delenv("SEARCHD_CONFIG")
    # the found config sits below the environment and the flags
    monkeypatch.setenv("SEARCHD_STATE", "/env/state")
    s = resolve_settings(None, {})
    assert (s.state_dir, s.jobs_dir, s.max_load) == (Path("/env/state"), Path("/user/jobs"), 0.5)
    s = resolve_settings(None, {"state_dir": "/flag/state", "jobs_dir": None})
    assert (s.state_dir, s.jobs_dir) == (Path("/flag/state"), Path("/user/jobs"))


def test_a_bad_user_config_names_the_file(home: Path) -> None:
    path = write_user_config(home, "max_laod = 0.5\n")
    with pytest.raises(SettingsError, match=str(path)):
        resolve_settings(None, {})


def test_status_from_any_folder_finds_the_user_service(home: Path, tmp_path: Path) -> None:
    jobs = home / "searchd/jobs"
    jobs.mkdir(parents=True)
    write_user_config(home, f'state_dir = "{home}/state"\njobs_dir = "{jobs}"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = subprocess.run([sys.executable, "-m", "searchd", "status"], cwd=elsewhere,
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr
    assert f"no jobs (put job files in {jobs})" in out.stdout
    assert not (elsewhere / "state").exists()
