"""``searchd service install|uninstall``: the systemd unit, users, folders and config.

The files come from the package (``searchd/service_files``, copies of ``systemd/``), with
the paths of this installation written in: the program the unit runs and, for the user
service, its config, state and jobs folders. ``--root DIR`` writes under a prefix and runs
nothing (packagers, images, tests). An existing config is never overwritten, and uninstall
removes only what systemd loads: the units, users' data and config stay.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from searchd import config_paths
from searchd.errors import ServiceError, SettingsError
from searchd.settings import load_config, settings_from
from searchd.state.files import atomic_write

UNIT = "searchd.service"
SYSTEM_UNIT = Path("/etc/systemd/system") / UNIT
SYSUSERS = Path("/etc/sysusers.d/searchd.conf")
TMPFILES = Path("/etc/tmpfiles.d/searchd.conf")

#: runs one command, returns its exit status (injectable: tests record instead)
Runner = Callable[[Sequence[str]], int]

#: characters a unit file would need escaped (specifiers, variables, quoting, word breaks)
_UNSAFE = re.compile(r"[\s\"'\\$%;]")


def template(name: str) -> str:
    """One of the shipped systemd files, as text."""
    return resources.files("searchd.service_files").joinpath(name).read_text(encoding="utf-8")


def _substitute(text: str, old: str, new: str, name: str) -> str:
    if old not in text:  # the shipped file changed under us: a bug, caught by the tests
        raise ServiceError(f"{name}: expected {old!r} in the shipped file")
    return text.replace(old, new)


def unit_path(path: Path) -> str:
    """``path`` as it may appear in a unit file; refuses what would need escaping."""
    text = str(path)
    if not path.is_absolute() or _UNSAFE.search(text):
        raise ServiceError(f"{text}: a unit file needs an absolute path without spaces, "
                           "quotes, $, % or backslashes here")
    return text


def find_program(given: Path | None) -> Path:
    """The searchd the unit runs: ``--exec``, else the one next to this Python, else $PATH."""
    if given is not None:
        return given
    beside = Path(sys.executable).parent / "searchd"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("searchd")
    if found is None:
        raise ServiceError("cannot find the searchd program (not next to "
                           f"{sys.executable}, not on $PATH): pass --exec PATH")
    return Path(found).absolute()


def system_unit(program: Path) -> str:
    text = template("searchd.service")
    hidden = ("/home/", "/root/", "/run/user/")
    if str(program).startswith(hidden):
        raise ServiceError(f"{program}: the system service cannot run a program under /home, "
                           "/root or /run/user (ProtectHome=yes); install searchd elsewhere "
                           "(e.g. a virtualenv in /opt/searchd) or pass --exec PATH")
    return _substitute(text, "ExecStart=/opt/searchd/bin/searchd ",
                       f"ExecStart={unit_path(program)} ", UNIT)


def user_unit(program: Path, config: Path, state_dir: Path) -> str:
    text = template("searchd-user.service")
    name = "searchd-user.service"
    text = _substitute(text, "%h/.local/bin/searchd", unit_path(program), name)
    text = _substitute(text, "%E/searchd/searchd.toml", unit_path(config), name)
    return _substitute(text, "%h/.local/state/searchd", unit_path(state_dir), name)


def user_config(state_dir: Path, jobs_dir: Path) -> str:
    """The system config's settings and comments, with the user service's header and paths."""
    text = template("searchd.toml")
    marker = "\n# --- Work "
    if marker not in text:
        raise ServiceError(f"searchd.toml: expected {marker.strip()!r} in the shipped file")
    rest = text[text.index(marker) + 1:]
    rest = rest.replace("`journalctl -u searchd`", "`journalctl --user -u searchd`")
    rest = rest.replace("installed in /opt/searchd", "installed next to searchd")
    head = f"""\
# searchd daemon configuration of the user service (`systemctl --user`), written by
# `searchd service install --user`. The unit runs `searchd run --config <this file>`, and
# every searchd command you run reads this file when neither --config nor $SEARCHD_CONFIG
# is given (below $SEARCHD_STATE/$SEARCHD_JOBS and flags), so `searchd status` works from
# any folder. Every setting is shown with its built-in default, except the two paths.
# Unknown keys are errors. After a change: `systemctl --user reload searchd` (SIGHUP:
# re-read without interrupting the running job; state_dir and jobs_dir need a restart).

# --- Where things are --------------------------------------------------------------------
# Checkpoints, summaries, locks and the HMAC key (mode 0700). The unit makes this folder,
# and only this one, writable: if you move it, move ReadWritePaths= and ExecStartPre= too
# (`systemctl --user edit searchd`).
state_dir = {_toml_string(state_dir)}
# Where you put job files (`searchd submit FILE` copies them here). The daemon only reads it.
jobs_dir = {_toml_string(jobs_dir)}

"""
    return head + rest


def _toml_string(path: Path) -> str:
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- plans: what to write and run ------------------------------------------------------------

@dataclass(frozen=True)
class File:
    path: Path  #: on the target system (the prefix is added when writing)
    text: str
    mode: int = 0o644
    #: a config: written only when absent, never overwritten
    keep: bool = False


@dataclass
class Plan:
    scope: str  #: "user" or "system"
    files: list[File] = field(default_factory=list)
    #: folders to create (path, mode), before the files
    dirs: list[tuple[Path, int]] = field(default_factory=list)
    commands: list[list[str]] = field(default_factory=list)
    #: printed at the end
    notes: list[str] = field(default_factory=list)


def system_plan(program: Path) -> Plan:
    config = config_paths.SYSTEM_CONFIG
    return Plan(
        "system",
        dirs=[(SYSTEM_UNIT.parent, 0o755), (SYSUSERS.parent, 0o755), (TMPFILES.parent, 0o755),
              (config.parent, 0o755)],
        files=[File(SYSUSERS, template("searchd.sysusers")),
               File(TMPFILES, template("searchd.tmpfiles")),
               File(config, template("searchd.toml"), keep=True),
               File(SYSTEM_UNIT, system_unit(program))],
        commands=[["systemd-sysusers", str(SYSUSERS)],
                  ["systemd-tmpfiles", "--create", str(TMPFILES)],
                  ["systemctl", "daemon-reload"],
                  ["systemctl", "enable", "--now", UNIT]],
        notes=["status: systemctl status searchd; log: journalctl -u searchd",
               f"job files go to /srv/searchd/jobs (group searchd); settings: {config}"])


def _existing_paths(config: Path, state: Path | None, jobs: Path | None
                    ) -> tuple[Path, Path]:
    """The folders an existing user config names; refuses --state/--jobs that disagree."""
    try:
        settings = settings_from(load_config(config), str(config))
    except SettingsError as e:
        raise ServiceError(f"{e}; fix it or move it away to install afresh") from None
    for name, have, asked in (("state_dir", settings.state_dir, state),
                              ("jobs_dir", settings.jobs_dir, jobs)):
        if not have.is_absolute():
            raise ServiceError(f"{config}: {name} = {str(have)!r} must be an absolute path for "
                               "the service")
        if asked is not None and asked.absolute() != have:
            raise ServiceError(f"{config} exists with {name} = {str(have)!r}: edit it (it is "
                               f"never overwritten) to use {str(asked.absolute())!r}")
    return settings.state_dir, settings.jobs_dir


def user_plan(program: Path, state: Path | None, jobs: Path | None, root: Path | None) -> Plan:
    config = config_paths.user_config_path()
    target = under(root, config)
    if target.is_file():
        state_dir, jobs_dir = _existing_paths(target, state, jobs)
    else:
        state_dir = (state or config_paths.user_state_dir()).absolute()
        jobs_dir = (jobs or config_paths.user_jobs_dir()).absolute()
    unit = config_paths.user_unit_dir() / UNIT
    return Plan(
        "user",
        dirs=[(state_dir, 0o700), (jobs_dir, 0o700), (unit.parent, 0o755),
              (config.parent, 0o700)],
        files=[File(config, user_config(state_dir, jobs_dir), mode=0o600, keep=True),
               File(unit, user_unit(program, config, state_dir))],
        commands=[["systemctl", "--user", "daemon-reload"],
                  ["systemctl", "--user", "enable", "--now", UNIT]],
        notes=[f"job files go to {jobs_dir}; `searchd status` works from any folder",
               "status: systemctl --user status searchd; log: journalctl --user -u searchd",
               "to keep it running while you are logged out: loginctl enable-linger $USER"])


# --- doing it --------------------------------------------------------------------------------

def under(root: Path | None, path: Path) -> Path:
    """``path`` inside the prefix ``root`` (or itself without one)."""
    return path if root is None else root / path.relative_to(path.anchor)


def run_command(cmd: Sequence[str]) -> int:
    try:
        return subprocess.run(list(cmd), check=False).returncode
    except FileNotFoundError:
        raise ServiceError(f"{cmd[0]}: not found; is this a systemd machine? (--root DIR writes "
                           "the files without running anything)") from None


def install(plan: Plan, root: Path | None, runner: Runner = run_command,
            say: Callable[[str], None] = print) -> None:
    """Write the plan's folders and files (under ``root``), then run its commands (without)."""
    for d, mode in plan.dirs:
        path = under(root, d)
        if not path.is_dir():
            path.mkdir(parents=True, mode=mode)
            os.chmod(path, mode)  # mkdir's mode passes through the umask
            say(f"  made  {path}")
    for f in plan.files:
        path = under(root, f.path)
        if f.keep and path.exists():
            say(f"  kept  {path} (exists; never overwritten)")
            continue
        atomic_write(path, f.text.encode(), mode=f.mode)
        os.chmod(path, f.mode)  # the daemon reads the config: not the umask's business
        say(f"  wrote {path}")
    for cmd in plan.commands:
        if root is not None:
            say(f"  skip  {' '.join(cmd)} (--root: run it on the target)")
            continue
        say(f"  run   {' '.join(cmd)}")
        status = runner(cmd)
        if status != 0:
            raise ServiceError(f"`{' '.join(cmd)}` failed (exit {status}); the files are "
                               "written, fix the cause and run the command again")
    for note in plan.notes:
        say(note)


def uninstall(scope: str, root: Path | None, runner: Runner = run_command,
              say: Callable[[str], None] = print) -> None:
    """Stop and disable the service, remove its units; the config and the data stay."""
    flag = ["--user"] if scope == "user" else []
    if scope == "user":
        unit = config_paths.user_unit_dir() / UNIT
        files = [unit]
        kept = [config_paths.user_config_path(), config_paths.user_state_dir(),
                config_paths.user_jobs_dir()]
    else:
        unit = SYSTEM_UNIT
        files = [unit, SYSUSERS, TMPFILES]
        kept = [config_paths.SYSTEM_CONFIG, Path("/var/lib/searchd"), Path("/srv/searchd"),
                Path(f"{unit}.d")]
    if not under(root, unit).exists():
        say(f"  no {under(root, unit)}: the {scope} service is not installed")
        return
    if root is None:
        cmd = ["systemctl", *flag, "disable", "--now", UNIT]
        say(f"  run   {' '.join(cmd)}")
        status = runner(cmd)
        if status != 0:  # e.g. never loaded: removing the files is still what was asked
            say(f"  (exit {status}; removing the files anyway)")
    for f in files:
        path = under(root, f)
        if path.exists():
            path.unlink()
            say(f"  removed {path}")
    if root is None:
        cmd = ["systemctl", *flag, "daemon-reload"]
        say(f"  run   {' '.join(cmd)}")
        if runner(cmd) != 0:
            raise ServiceError(f"`{' '.join(cmd)}` failed; the unit files are removed")
    for path in kept:
        if under(root, path).exists():
            say(f"  kept  {under(root, path)}")
    if scope == "system":
        say("the user searchd stays (userdel searchd removes it once its files are gone)")


# --- the command line ------------------------------------------------------------------------

def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``searchd service install|uninstall`` (called by ``build_parser``)."""
    sv = sub.add_parser("service", help="install or remove the systemd service")
    actions = sv.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, text in (("install", "write the unit, users, folders and config; enable it"),
                       ("uninstall", "disable the service, remove its units; keep data and "
                        "config")):
        a = actions.add_parser(name, help=text)
        scope = a.add_mutually_exclusive_group(required=name == "install")
        scope.add_argument("--user", dest="scope", action="store_const", const="user",
                           help="the user service (systemctl --user), in your home folder")
        scope.add_argument("--system", dest="scope", action="store_const", const="system",
                           help="the system service (user searchd, /var/lib/searchd)")
        a.add_argument("--root", type=Path, metavar="DIR",
                       help="write under this prefix and run no systemctl (packagers)")
        if name == "install":
            a.add_argument("--exec", dest="program", type=Path, metavar="PATH",
                           help="the searchd program the unit runs (default: this one)")
            # dest state/jobs: the same meaning as the top-level --state/--jobs
            a.add_argument("--state", type=Path, default=argparse.SUPPRESS, metavar="DIR",
                           help="--user: the state folder (default ~/.local/state/searchd)")
            a.add_argument("--jobs", type=Path, default=argparse.SUPPRESS, metavar="DIR",
                           help="--user: the jobs folder (default ~/searchd/jobs)")


def cmd_service(args: argparse.Namespace) -> int:
    root: Path | None = args.root.absolute() if args.root else None
    scope: str | None = args.scope
    if args.action == "uninstall" and scope is None:
        installed = [s for s, unit in (("user", config_paths.user_unit_dir() / UNIT),
                                       ("system", SYSTEM_UNIT)) if under(root, unit).exists()]
        if len(installed) > 1:
            raise ServiceError("both the user and the system service are installed: "
                               "say --user or --system")
        if not installed:
            print("no searchd service is installed")
            return 0
        scope = installed[0]
    root_user = os.geteuid() == 0
    if root is None and scope == "system" and not root_user:
        raise ServiceError(f"{args.action} --system needs root (sudo), or --root DIR")
    if root is None and scope == "user" and root_user:
        raise ServiceError(f"as root, {args.action} --user would be root's own service: run it "
                           "as the user who runs the searches (or pass --root DIR)")
    if args.action == "uninstall":
        print(f"searchd service uninstall --{scope}")
        uninstall(str(scope), root)
        return 0
    program = find_program(args.program)
    if scope == "system":
        if args.state is not None or args.jobs is not None:
            raise ServiceError("--state/--jobs are for --user; the system service's folders "
                               f"are in {config_paths.SYSTEM_CONFIG} and the unit")
        plan = system_plan(program)
    else:
        plan = user_plan(program, args.state, args.jobs, root)
    print(f"searchd service install --{scope}" + (f" --root {root}" if root else ""))
    install(plan, root)
    return 0


__all__ = ["Plan", "add_parser", "cmd_service", "install", "system_plan", "uninstall",
           "user_plan"]
