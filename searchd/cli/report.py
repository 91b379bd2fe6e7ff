"""``searchd report JOB [-o FILE]``: write a job's self-contained HTML report."""

from __future__ import annotations

import argparse
from pathlib import Path

from searchd.settings import Settings


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    from searchd.report import write_report  # lazy: matplotlib loads only for this command

    out = Path(args.output) if args.output is not None else Path(f"{args.job}-report.html")
    size = write_report(settings.state_dir, args.job, out)
    print(f"wrote the report of {args.job} → {out} ({size:,} bytes)")
    return 0
