"""The ``searchd`` command line."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from searchd.cli import completion, service
from searchd.cli.watch import positive_seconds
from searchd.errors import SearchdError, SettingsError
from searchd.settings import Settings, resolve_settings

log = logging.getLogger("searchd")


def _pct(text: str) -> float:
    """'25', '25%' or '0.25' → 0.25."""
    t = text.strip().rstrip("%")
    try:
        v = float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a percentage, got {text!r}") from None
    return v / 100 if text.strip().endswith("%") or v > 1 else v


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")


def parse_duration(text: str) -> float:
    """'90s', '30m', '2h', '1d', '1h30m' → seconds."""
    parts = _DURATION.findall(text.lower())
    if not parts or "".join(f"{n}{u}" for n, u in parts) != re.sub(r"\s", "", text.lower()):
        raise argparse.ArgumentTypeError(f"expected a duration like 90s, 30m, 2h or 1h30m, "
                                         f"got {text!r}")
    return sum(float(n) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[u] for n, u in parts)


def _common(default: Any) -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--state", type=Path, default=default,
                        help="state directory (default ./state or $SEARCHD_STATE)")
    common.add_argument("--jobs", type=Path, default=default,
                        help="jobs directory (default ./jobs or $SEARCHD_JOBS)")
    common.add_argument("--config", default=default,
                        help="daemon config file (TOML; or $SEARCHD_CONFIG)")
    return common


def build_parser() -> argparse.ArgumentParser:
    # the options work before and after the command; after it they win
    common = _common(argparse.SUPPRESS)
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print JSON")

    p = argparse.ArgumentParser(prog="searchd", parents=[_common(None)],
                                description="Grid searches on idle CPU, "
                                "with signed crash-safe checkpoints.")
    p.add_argument("--version", action="version", version=f"searchd {package_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("run", parents=[common], help="run the daemon")
    r.add_argument("--drain", action="store_true", help="exit once every job is done, "
                   "invalid or failed (non-zero if any failed)")
    r.add_argument("--n-jobs", type=int)
    r.add_argument("--max-load", type=_pct, help="pause above this other load (%% of all CPUs)")
    r.add_argument("--resume-after", type=float, help="seconds of quiet before resuming")
    r.add_argument("--sample-interval", type=float)
    r.add_argument("--pause-after", help="busy samples in a row before pausing, or a grace "
                   "period such as 10s")
    r.add_argument("--min-free-memory", type=_pct)
    r.add_argument("--max-suspend", type=float, help="seconds suspended before the worker "
                   "is stopped to free memory (0 = never)")
    r.add_argument("--run-window", help="crontab expression of when work may run")
    r.add_argument("--ignore-load", action="store_true", default=None)
    r.add_argument("--no-report", dest="report", action="store_false", default=None,
                   help="do not keep each job's report.html current")
    r.add_argument("--checkpoint-interval", type=float)
    r.add_argument("--max-candidates", type=int)
    r.add_argument("--dask", dest="dask_scheduler", metavar="ADDRESS")
    r.add_argument("--log-level")

    v = sub.add_parser("validate", parents=[common, as_json], help="check a job file")
    v.add_argument("file", type=Path)
    s = sub.add_parser("submit", parents=[common], help="validate a job file and add it to jobs/")
    s.add_argument("file", type=Path)
    st = sub.add_parser("status", parents=[common, as_json], help="one line per job")
    st.add_argument("--watch", nargs="?", const=2.0, type=positive_seconds, metavar="SECONDS",
                    help="refresh every SECONDS (default 2) until Ctrl-C")
    st.add_argument("--watch-count", type=int, help=argparse.SUPPRESS)  # tests: N refreshes
    sh = sub.add_parser("show", parents=[common, as_json], help="a job's results per model type")
    sh.add_argument("job")
    sh.add_argument("--top", type=int, default=5, help="candidates to list per model type")
    sh.add_argument("--history", type=int, metavar="N", help="the results archived as "
                    "history entry N (when an edit changed the evaluation context)")
    e = sub.add_parser("export", parents=[common], help="write the best fitted model to a file")
    e.add_argument("job")
    e.add_argument("--model", help="model type (default: the job's best)")
    e.add_argument("--format", choices=("pickle", "joblib", "skops"), default="pickle")
    e.add_argument("-o", "--output", type=Path, required=True)
    e.add_argument("--history", type=int, metavar="N", help="from history entry N")
    pa = sub.add_parser("pause", parents=[common], help="pause the daemon's work")
    pa.add_argument("--for", dest="duration", type=parse_duration,
                    help="e.g. 30m, 2h (default: until `searchd resume`)")
    sub.add_parser("resume", parents=[common], help="end an operator pause")
    c = sub.add_parser("cancel", parents=[common], help="stop a job; its results stay")
    c.add_argument("job")
    ve = sub.add_parser("verify", parents=[common, as_json], help="check every checkpoint")
    ve.add_argument("job", nargs="?")
    rp = sub.add_parser("report", parents=[common], help="write a job's HTML report")
    rp.add_argument("job")
    rp.add_argument("-o", "--output", type=Path, help="default: JOB-report.html here")
    service.add_parser(sub)
    completion.add_parser(sub)
    return p


def package_version() -> str:
    """The installed distribution's version; the source's when searchd is not installed."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("searchd")
    except PackageNotFoundError:
        from searchd import __version__
        return __version__


def settings_for(args: argparse.Namespace, **flags: Any) -> Settings:
    return resolve_settings(args.config, {"state_dir": args.state, "jobs_dir": args.jobs,
                                          **flags})


def setup_logging(level: str) -> str:
    """journald adds its own timestamps; a terminal gets ours."""
    under_systemd = bool(os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"))
    fmt = "%(levelname)s %(name)s: %(message)s" if under_systemd else \
        "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr)
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, logging.getLevelName(level)))
    return fmt


def cmd_run(args: argparse.Namespace) -> int:
    from searchd.supervisor.daemon import Daemon
    flags = {k: getattr(args, k) for k in (
        "n_jobs", "max_load", "resume_after", "sample_interval", "pause_after",
        "min_free_memory", "max_suspend", "run_window", "ignore_load", "checkpoint_interval",
        "max_candidates", "dask_scheduler", "log_level", "report")}
    settings = settings_for(args, **flags)
    fmt = setup_logging(settings.log_level)
    if not settings.jobs_dir.is_dir():
        raise SettingsError(f"{settings.jobs_dir}: jobs directory not found")
    return Daemon(settings, drain=args.drain, log_format=fmt,
                  reload=lambda: settings_for(args, **flags)).run()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"run": cmd_run, "service": service.cmd_service,
                "completion": completion.cmd_completion}
    try:
        if args.command in handlers:
            return handlers[args.command](args)
        if args.command in ("status", "show", "report", "export"):
            from searchd.cli import published  # a group member reads the published results
            routed = published.run(args, settings_for(args))
            if routed is not None:
                return routed
        if args.command == "report":
            from searchd.cli.report import cmd_report
            return cmd_report(args, settings_for(args))
        from searchd.cli import commands, operator, verify
        module = {"pause": operator, "resume": operator, "cancel": operator,
                  "verify": verify}.get(args.command, commands)
        return int(getattr(module, f"cmd_{args.command}")(args, settings_for(args)))
    except SearchdError as e:
        print(f"searchd: error: {one_line(str(e))}", file=sys.stderr)
        return e.exit_code
    except OSError as e:  # a read-only or full state folder, a missing parent, ...
        if isinstance(e, BrokenPipeError):  # e.g. `searchd status | head`
            return 0
        print(f"searchd: error: {one_line(os_error(e))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


#: an error line longer than this is cut (a 100 kB value in a job file stays out of the terminal)
ERROR_CHARS = 500


def one_line(message: str, limit: int = ERROR_CHARS) -> str:
    """A message as one line of at most ``limit`` characters."""
    text = " ".join(message.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def os_error(e: OSError) -> str:
    """``<file>: <reason>`` for an OSError, without Python's ``[Errno N]`` prefix."""
    reason = e.strerror or str(e)
    where = e.filename if e.filename is not None else None
    if where is None:
        return reason
    other = f" -> {e.filename2}" if e.filename2 is not None else ""
    return f"{where}{other}: {reason}"
