"""The operator's hand on the daemon: ``pause [--for]``, ``resume`` and ``cancel JOB``,
through the control files in ``state/`` (:mod:`searchd.state.control`)."""

from __future__ import annotations

import argparse
import time

from searchd.cli.commands import require_record
from searchd.errors import NotFoundError, SearchdError
from searchd.settings import Settings
from searchd.state import control
from searchd.state.records import JobState, write_summary


def cmd_pause(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.state_dir.is_dir():
        raise NotFoundError(f"{settings.state_dir}: state directory not found")
    until = None if args.duration is None else time.time() + args.duration
    control.request_pause(settings.state_dir, until)
    print("paused" + ("" if until is None else
                      f" until {time.strftime('%Y-%m-%d %H:%M', time.localtime(until))}"))
    return 0


def cmd_resume(args: argparse.Namespace, settings: Settings) -> int:
    control.clear_pause(settings.state_dir)
    print("resumed")
    return 0


def cmd_cancel(args: argparse.Namespace, settings: Settings) -> int:
    from filelock import FileLock, Timeout
    rec = require_record(settings, args.job)
    if rec.state not in (JobState.QUEUED, JobState.RUNNING, JobState.PAUSED, JobState.FAILED):
        raise SearchdError(f"job {args.job} is {rec.state.value}; nothing to cancel")
    control.request_cancel(settings.state_dir / args.job)
    lock = FileLock(str(settings.state_dir / "searchd.lock"), timeout=0, mode=0o600)
    try:
        with lock:  # no daemon running: apply it ourselves
            control.clear_cancel(settings.state_dir / args.job)
            rec.to(JobState.CANCELLED, "cancelled by the operator")
            write_summary(settings.state_dir, rec)
            print(f"cancelled {args.job}")
    except Timeout:
        print(f"cancel requested; the daemon stops {args.job} within seconds")
    return 0
