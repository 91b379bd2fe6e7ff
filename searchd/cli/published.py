"""A member of the daemon's group reads the published results (issue 21).

The system service keeps its state private (the key, the checkpoints: user ``searchd``
only) and publishes per job what people need (:mod:`searchd.state.published`). When the
private state is not readable to the user running ``status``, ``show``, ``report`` or
``export``, these commands read the published folder instead, and say so in one line on
stderr (stdout stays what ``--json`` promises).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from searchd.errors import NotFoundError, SearchdError
from searchd.jobs.ids import job_id_problem
from searchd.settings import Settings
from searchd.state import published as pub
from searchd.state.files import read_private

if TYPE_CHECKING:
    from searchd.state.read import JobResults

#: the commands that can read the published folder
READERS = ("status", "show", "report", "export")


def published_view(settings: Settings) -> Settings | None:
    """Settings that read the published folder, when this user cannot read the private
    state (else None: the commands read the state as always)."""
    if not pub.private_unreadable(settings.state_dir):
        return None
    root = settings.publish_root()
    try:
        found = root.is_dir()
    except PermissionError:
        raise SearchdError(f"{settings.state_dir}: the private state is not readable by you, "
                           f"nor are the published results in {root} (they are for the "
                           "daemon's group)") from None
    if not found:
        raise NotFoundError(f"{settings.state_dir}: the private state is not readable by "
                            f"you, and no results are published in {root} (the daemon "
                            "publishes them with publish = true in its config)")
    print(f"searchd: reading the published results in {root}: the private state is not "
          "readable by you", file=sys.stderr)
    return dataclasses.replace(settings, state_dir=root)


def run(args: argparse.Namespace, settings: Settings) -> int | None:
    """Run ``args.command`` on the published folder; None when the private state is
    readable (then the command runs as usual)."""
    view = published_view(settings)
    if view is None:
        return None
    from searchd.cli import commands
    if getattr(args, "history", None) is not None:
        raise SearchdError(f"job {args.job}: --history is not published; only the current "
                           "results are")
    if args.command == "status":
        return commands.cmd_status(args, view)
    if args.command == "show":
        return commands.cmd_show(args, view, read=published_results)
    if args.command == "report":
        return _report(args, view.state_dir)
    return _export(args, view.state_dir)


def _folder(root: Path, job_id: str) -> Path:
    problem = job_id_problem(job_id)
    if problem:
        raise NotFoundError(f"no job {job_id!r} in {root}: {problem}")
    folder = root / job_id
    if not folder.is_dir():
        raise NotFoundError(f"no job {job_id!r} in {root}")
    return folder


def _json(path: Path) -> Any:
    try:
        return json.loads(read_private(path).decode())
    except FileNotFoundError:
        raise NotFoundError(f"{path}: not published yet") from None
    except ValueError as e:
        raise SearchdError(f"{path}: not valid JSON: {e}") from None


def published_results(job_id: str, root: Path, with_estimators: bool = False,
                      history: int | None = None) -> JobResults:
    """The job's results as ``load_results`` gives them, from ``results.json`` and each
    type's ``cv_results`` JSON (no estimators: those are the skops files)."""
    from searchd.state.read import JobResults, ModelSearch  # numpy: only for show, export

    folder = _folder(Path(root), job_id)
    doc = _json(folder / pub.RESULTS)
    models: dict[str, ModelSearch] = {}
    for name, m in (doc.get("models") or {}).items():
        cv = _json(folder / pub.cv_files(name)[0])
        models[name] = ModelSearch(
            name=name, state=m.get("state", "?"), cv_results_=cv,
            best_index_=m.get("best_index"), best_params_=m.get("best_params"),
            best_score_=m.get("best_score"), best_estimator_=None,
            test_score_=m.get("test_score"), refit_time_=m.get("refit_time"),
            fits_done=m.get("fits_done", 0), fits_total=m.get("fits_total", 0),
            errors={(int(c), int(f)): str(msg) for c, f, msg in m.get("errors") or []},
            refit_error=m.get("refit_error"), n_candidates_=m.get("n_candidates_"),
            n_resources_=m.get("n_resources_"), n_iterations_=m.get("n_iterations_"),
            halving=m.get("halving"))
    return JobResults(job_id=job_id, models=models, splits=[], best_name=doc.get("best"))


def _report(args: argparse.Namespace, root: Path) -> int:
    from searchd.cli.export import write_output

    source = _folder(root, args.job) / pub.REPORT
    try:
        data = read_private(source)
    except FileNotFoundError:
        raise NotFoundError(f"job {args.job}: no report published yet in {source.parent}") \
            from None
    out = Path(args.output) if args.output is not None else Path(f"{args.job}-report.html")
    write_output(out, data)
    print(f"wrote the report of {args.job} → {out} ({len(data):,} bytes)")
    return 0


def _export(args: argparse.Namespace, root: Path) -> int:
    from searchd.cli.export import write_output

    if args.format != "skops":
        raise SearchdError(f"export --format {args.format}: only skops models are published "
                           f"for the daemon's group (in {root}); use --format skops")
    results = published_results(args.job, root)
    name = args.model or results.best_name
    if name is None:
        raise NotFoundError(f"job {args.job}: no model type has finished yet")
    if name not in results.models:
        raise NotFoundError(f"job {args.job} has no model type {name!r} "
                            f"(it has {', '.join(results.models)})")
    source = _folder(root, args.job) / pub.model_file(name)
    try:
        data = read_private(source)
    except FileNotFoundError:
        m = results.models[name]
        why = (f"it has not finished yet ({m.fits_done}/{m.fits_total} fits)"
               if m.state != "done" else m.refit_error or "the daemon has no skops installed")
        raise NotFoundError(f"job {args.job}: no published model of type {name!r}: {why}") \
            from None
    write_output(Path(args.output), data)
    print(f"exported {args.job}/{name} (skops) → {args.output} ({len(data):,} bytes)")
    return 0


__all__ = ["READERS", "published_results", "published_view", "run"]
