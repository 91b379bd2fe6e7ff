"""``searchd verify [JOB]``: every checkpoint of a job (and of its history) checked against
its signature, none of them loaded."""

from __future__ import annotations

import argparse

from searchd.cli.commands import print_json
from searchd.errors import NotFoundError
from searchd.jobs.ids import job_id_problem
from searchd.settings import Settings
from searchd.state.signing import load_key
from searchd.state.store import CheckpointStore


def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    key = load_key(settings.state_dir)
    if args.job and job_id_problem(args.job):
        raise NotFoundError(f"no job {args.job!r} in {settings.state_dir}: "
                            f"{job_id_problem(args.job)}")
    # job folders only: not the daemon's own (quarantine, published), never through a link
    jobs = [args.job] if args.job else sorted(
        d.name for d in settings.state_dir.iterdir()
        if job_id_problem(d.name) is None and d.is_dir() and not d.is_symlink())
    bad = 0
    report = []
    for jid in jobs:
        d = settings.state_dir / jid
        if not d.is_dir() or d.is_symlink():
            raise NotFoundError(f"no job {jid!r} in {settings.state_dir}")
        from searchd.state.history import entries, history_dir
        stores = [CheckpointStore(d, key, jid)] + [
            CheckpointStore(history_dir(d, e.n), key, jid) for e in entries(d)]
        for path, reason in (v for st in stores for v in st.verify_all()):
            bad += reason is not None
            report.append({"file": str(path), "ok": reason is None, "reason": reason})
    if args.json:
        print_json(report)
    else:
        for r in report:
            print(f"{'ok ' if r['ok'] else 'BAD'} {r['file']}" +
                  ("" if r["ok"] else f": {r['reason']}"))
        print(f"{len(report)} checkpoint(s), {bad} bad")
    return 1 if bad else 0
