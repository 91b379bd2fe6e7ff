"""The CLI's commands other than ``run``: validate, submit, status, show, export, ..."""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from searchd.errors import JobSpecError, NotFoundError, SearchdError
from searchd.jobs.folder import scan
from searchd.jobs.ids import SUFFIXES
from searchd.jobs.limits import JobLimits, effective_priority
from searchd.jobs.load import load_job, parse_job
from searchd.jobs.spec import JobSpec
from searchd.settings import Settings
from searchd.state.files import atomic_write
from searchd.state.records import (
    JobRecord,
    JobState,
    all_summaries,
    finite,
    read_summary,
)


def print_json(value: Any) -> None:
    print(json.dumps(finite(value), indent=2, default=str))


def _fmt_score(v: float | None) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def _fmt_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def bar(done: int, total: int, width: int = 20) -> str:
    frac = done / total if total else 0.0
    full = int(frac * width)
    return "[" + "#" * full + "." * (width - full) + f"] {frac * 100:3.0f}%"


# --- validate / submit -----------------------------------------------------------------------

def check_job(path: Path, settings: Settings, raw: bytes | None = None
              ) -> tuple[JobSpec, dict[str, Any]]:
    """Everything the worker will check: schema, allow-list, parameters, data (``raw``: the
    job's bytes, checked as if they were the file ``path``)."""
    spec, info, _, _ = checked_job(path, settings, raw)
    return spec, info


def checked_job(path: Path, settings: Settings, raw: bytes | None = None
                ) -> tuple[JobSpec, dict[str, Any], dict[str, Any], Any]:
    """``check_job``'s spec and plan, with the estimator templates and the data."""
    from searchd.worker.data import load_dataset
    from searchd.worker.estimators import check_model, is_classification
    if path.suffix not in SUFFIXES:
        raise JobSpecError(f"{path}: a job file ends in .toml or .json")
    spec = load_job(path, JobLimits.of(settings)) if raw is None else \
        parse_job(raw, path, JobLimits.of(settings))
    templates = {m.name: check_model(spec, m, settings.allow_modules) for m in spec.models}
    data = load_dataset(spec, is_classification(spec, settings.allow_modules),
                        data_dirs=settings.data_dirs, state_dir=settings.state_dir,
                        max_bytes=settings.max_data_bytes)
    info: dict[str, Any] = {
        "train_samples": len(data.y_train),
        "test_samples": None if data.y_test is None else len(data.y_test),
        "features": int(data.X_train.shape[1]) if data.X_train.ndim > 1 else 1,
        "halving": search_plans(spec, templates, data.y_train)}
    return spec, info, templates, data


def search_plans(spec: JobSpec, templates: dict[str, Any], y: Any) -> dict[str, Any]:
    """Each halving type's rounds (and, for every sampled type, scipy's word on its
    distributions' arguments): what the worker would refuse, ``validate`` refuses."""
    from dataclasses import asdict

    from searchd.worker.halving import plan_for
    from searchd.worker.strategy import distributions
    plans: dict[str, Any] = {}
    for m in spec.models:
        if m.search.sampled:
            distributions(m, f"{spec.path}: models.{m.name}.grid")
        if m.search.kind == "halving":
            plans[m.name] = asdict(plan_for(spec, m, templates[m.name], y))
    return plans


def _model_plan(spec: JobSpec, m: Any, halving: dict[str, Any]) -> dict[str, Any]:
    folds = spec.search.folds
    entry: dict[str, Any] = {"name": m.name, "estimator": m.estimator, "search": m.search.kind,
                             "candidates": m.n_candidates, "fits": m.n_candidates * folds}
    plan = halving.get(m.name)
    if plan is not None:
        entry["candidates"] = plan["n_candidates_"][0]
        entry["fits"] = sum(plan["n_candidates_"]) * folds
        entry["resource"] = plan["resource"]
        entry["rounds"] = [{"iter": i, "candidates": n, "resources": r, "fits": n * folds}
                           for i, (n, r) in enumerate(zip(plan["n_candidates_"],
                                                          plan["n_resources_"], strict=True))]
    return entry


def cmd_validate(args: argparse.Namespace, settings: Settings) -> int:
    from searchd.cli.editing import edit_preview, print_preview
    spec, info, templates, data = checked_job(args.file, settings)
    preview = edit_preview(spec, settings, templates, data)
    halving = info.pop("halving")
    models = [_model_plan(spec, m, halving) for m in spec.models]
    from searchd.worker.chains import describe, model_plan
    from searchd.worker.runner import job_n_jobs
    processes = None if spec.search.backend == "dask" else job_n_jobs(spec, settings.n_jobs)
    for m, entry in zip(spec.models, models, strict=True):  # warm-start chains' share
        entry.update(model_plan(spec, m, templates[m.name], settings.allow_modules, processes))
        if not settings.preprocess_cache_mb or entry["preprocess_fits"] >= entry["fits"]:
            entry["preprocess_fits"] = 0  # not shared, or nothing saved
    plan = {"job": spec.id, "file": str(args.file), "data": spec.data.source, **info,
            "folds": spec.search.folds, "scoring": list(spec.search.scoring or ["score"]),
            "models": models, "candidates": sum(m["candidates"] for m in models),
            "fits": sum(m["fits"] for m in models), "edit": preview}
    if args.json:
        print_json(plan)
        return 0
    test = f", {info['test_samples']} held out" if info["test_samples"] else ""
    print(f"{args.file}: valid job {spec.id!r}")
    print(f"  data: {spec.data.source} ({info['train_samples']} training samples{test})")
    print(f"  cv: {spec.search.folds} folds; scoring: {', '.join(plan['scoring'])}")
    width = max(len(m.name) for m in spec.models)
    for m in plan["models"]:
        kind = "" if m["search"] == "grid" else f" ({m['search']})"
        how = describe(m["fits"], m["chains"], m["chained_fits"], m["preprocess_fits"],
                       m["preprocess_exact"])
        print(f"  {m['name']:<{width}}  {m['estimator'] + kind:<32} {m['candidates']:>7,} "
              f"candidates {m['fits']:>9,} fits{how}")
        for r in m.get("rounds", []):
            print(f"  {'':<{width}}    round {r['iter'] + 1}/{len(m['rounds'])}: "
                  f"{r['candidates']:,} candidates × {r['resources']:,} {m['resource']}, "
                  f"{r['fits']:,} fits")
    print(f"  total: {plan['candidates']:,} candidates, {plan['fits']:,} fits")
    print_preview(spec.id, preview)
    return 0


def cmd_submit(args: argparse.Namespace, settings: Settings) -> int:
    spec, _ = check_job(args.file, settings)
    spec, dest = submit_job(args.file.read_bytes(), args.file, settings, spec)
    print(f"submitted {spec.id} → {dest} ({spec.fits_total:,} fits)")
    return 0


def submit_job(raw: bytes, file: Path, settings: Settings, spec: JobSpec | None = None
               ) -> tuple[JobSpec, Path]:
    """Validate the job ``raw`` (as the file ``file``; ``spec``: already validated), then
    write it atomically into the jobs folder; ``submit`` and :func:`searchd.submit`."""
    if spec is None:
        spec, _ = check_job(file, settings, raw)
    dest = settings.jobs_dir / f"{spec.id}{file.suffix}"
    for other in settings.jobs_dir.glob(f"{spec.id}.*"):
        if other.suffix in SUFFIXES and other != dest:
            raise SearchdError(f"{dest}: job {spec.id!r} already exists as {other}")
    if dest.exists() and dest.resolve() != file.resolve() and dest.read_bytes() != raw:
        raise SearchdError(f"{dest}: a different job {spec.id!r} is already submitted; "
                           "remove it first or rename yours")
    if not settings.jobs_dir.is_dir():
        raise NotFoundError(f"{settings.jobs_dir}: jobs directory not found")
    try:
        # the user's umask decides (a shared jobs/ needs the daemon's group to read it)
        atomic_write(dest, raw, mode=0o666)
        dest.touch()  # re-queues a failed or cancelled job with the same content
    except OSError as e:
        raise SearchdError(f"{dest}: cannot write: {e.strerror or e}") from None
    return spec, dest


# --- status / show ---------------------------------------------------------------------------

def job_records(settings: Settings) -> list[JobRecord]:
    """Summaries in state/, plus job files the daemon has not picked up yet."""
    recs = {r.id: r for r in all_summaries(settings.state_dir)}
    files, _ = scan(settings.jobs_dir)
    for jid, jf in files.items():
        if jid not in recs:
            recs[jid] = JobRecord(id=jid, source=str(jf.path), error="not picked up yet")
    return sorted(recs.values(), key=lambda r: r.id)


def status_json(rec: JobRecord) -> dict[str, Any]:
    return {
        "id": rec.id, "state": rec.state.value, "fits_done": rec.fits_done,
        "fits_total": rec.fits_total, "fits_computed": rec.fits_computed,
        "error": rec.error if rec.state in (JobState.INVALID, JobState.FAILED) else None,
        "paused_reason": rec.paused_reason, "disk_error": rec.disk_error,
        "eta_seconds": rec.eta_seconds, "file_changed": rec.file_changed,
        "edit_error": rec.edit_error, "last_edit": rec.last_edit,
        "file_removed": rec.file_removed, "backend": rec.backend,
        "cluster_workers": rec.cluster_workers, "processes": rec.processes,
        "models": {n: {k: m.get(k) for k in ("state", "fits_done", "fits_total", "best_score",
                                             "best_params", "test_score", "halving")
                       if k != "halving" or k in m}
                   for n, m in rec.models.items()},
    }


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    if getattr(args, "watch", None) is not None:
        from searchd.cli.watch import watch
        args.watch, interval = None, args.watch  # each refresh is one plain status
        return watch(lambda: cmd_status(args, settings), interval,
                     f"searchd status --state {settings.state_dir}", count=args.watch_count)
    from searchd.cli.activity import user_activity_line, user_activity_of
    recs = job_records(settings)
    activity = user_activity_of(settings)  # the daemon-wide rule, repeated in each job
    if args.json:
        print_json([{**status_json(r), "user_activity": activity} for r in recs])
        return 0
    if activity is not None:
        print(user_activity_line(activity))
    if not recs:
        print(f"no jobs (put job files in {settings.jobs_dir})")
    for r in recs:
        line = f"{r.id:<16} {r.state.value:<9} {bar(r.fits_done, r.fits_total)} " \
               f"{r.fits_done:,}/{r.fits_total:,} fits"
        if r.state in (JobState.RUNNING, JobState.PAUSED, JobState.QUEUED) and r.eta_seconds:
            line += f"  ETA {_fmt_seconds(r.eta_seconds)}"
        print(line)
        notes = []
        if r.backend == "dask" and r.state not in (JobState.DONE, JobState.INVALID):
            workers = "not connected" if r.cluster_workers is None else \
                f"{r.cluster_workers} cluster worker(s)"
            notes.append(f"backend: dask, {workers}")
        if r.paused_reason:
            notes.append(f"paused: {r.paused_reason}")
        if r.disk_error:
            notes.append(f"waiting for disk: {r.disk_error}")
        if r.error and r.state in (JobState.INVALID, JobState.FAILED, JobState.QUEUED):
            notes.append(r.error)
        if r.edit_error:
            notes.append(f"edit refused, the job runs its last good spec: {r.edit_error}")
        elif r.file_changed:
            notes.append("the job file changed; the edit applies at the daemon's next scan")
        if r.last_edit:
            from searchd.cli.editing import edit_note
            notes.append(edit_note(r.last_edit))
        if r.file_removed:
            notes.append("the job file was removed; its results stay")
        runs_at = effective_priority(r.priority, settings.max_priority)
        if runs_at != r.priority and r.state in (JobState.QUEUED, JobState.RUNNING,
                                                 JobState.PAUSED):
            notes.append(f"priority {r.priority} runs as {runs_at} (max_priority)")
        for n in notes:
            print(f"    {n}")
        for name, m in r.models.items():
            h = m.get("halving")
            rounds = "" if not h else \
                f"  round {h['round']}/{h['rounds']}, {h['candidates']} candidates"
            print(f"    {name:<12} {m.get('state', '?'):<8} {m.get('fits_done', 0):>7,}/"
                  f"{m.get('fits_total', 0):<7,} best {_fmt_score(m.get('best_score'))}"
                  f"{rounds}")
    return 0


def require_record(settings: Settings, job: str) -> JobRecord:
    rec = read_summary(settings.state_dir, job)
    if rec is None:
        raise NotFoundError(f"no job {job!r} in {settings.state_dir}")
    return rec


def cmd_show(args: argparse.Namespace, settings: Settings,
             read: Callable[..., Any] | None = None) -> int:
    """``read``: where the results come from (default ``load_results``; the published
    folder's reader for a member of the daemon's group, see ``cli/published.py``)."""
    from searchd.cli.editing import print_history
    from searchd.state.history import entries
    from searchd.state.read import load_results
    rec = require_record(settings, args.job)
    past = entries(settings.state_dir / args.job)
    old = getattr(args, "history", None)
    try:
        results = (read or load_results)(args.job, settings.state_dir,
                                         with_estimators=False, history=old)
        models = results.models
    except NotFoundError:
        if old is not None:
            raise
        models = {}
    out: dict[str, Any] = {**status_json(rec), "models": {},
                           "history": [e.as_json() for e in past]}
    summaries = {} if old is not None else rec.models  # an archive's come from its results
    if old is not None:
        out["shown_history"] = next(e.as_json() for e in past if e.n == old)
    for name, summ in summaries.items() or {n: {} for n in models}.items():
        entry: dict[str, Any] = dict(summ)
        m = models.get(name)
        if m is not None:
            cv = m.cv_results_
            entry.update(state=m.state, fits_done=m.fits_done, fits_total=m.fits_total,
                         best_params=m.best_params_ if m.best_index_ is not None
                         else summ.get("best_params"),
                         best_score=m.best_score_ if m.best_index_ is not None
                         else summ.get("best_score"),
                         test_score=m.test_score_, errors=len(m.errors),
                         cv_results={k: (v.tolist() if hasattr(v, "tolist") else v)
                                     for k, v in cv.items()})
        out["models"][name] = entry
    if args.json:
        print_json(out)
        return 0
    if old is not None:
        h = out["shown_history"]
        print(f"{rec.id}: history {old}: archived "
              f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(h['when']))} ({h['why']}), "
              f"{h['fits']:,} fits")
    else:
        print(f"{rec.id}: {rec.state.value}, {rec.fits_done:,}/{rec.fits_total:,} fits "
              f"({rec.fits_computed:,} computed)")
    if rec.error and old is None:
        print(f"  {rec.error}")
    for name, e in out["models"].items():
        print(f"\n  {name}: {e.get('state')}, {e.get('fits_done', 0):,}/{e.get('fits_total', 0):,}"
              f" fits")
        print(f"    best CV score: {_fmt_score(e.get('best_score'))}  params: "
              f"{json.dumps(e.get('best_params'))}")
        if e.get("test_score"):
            ts = ", ".join(f"{k} {_fmt_score(v)}" for k, v in e["test_score"].items())
            print(f"    hold-out: {ts}")
        if e.get("errors"):
            print(f"    {e['errors']} fit(s) failed (scored nan)")
        cv = e.get("cv_results")
        if cv:
            suffix = next(k for k in cv if k.startswith("rank_test_"))[len("rank_test_"):]
            order = sorted(range(len(cv["params"])), key=lambda i: cv[f"rank_test_{suffix}"][i])
            for i in order[:args.top]:
                print(f"    #{cv[f'rank_test_{suffix}'][i]:<4} "
                      f"{_fmt_score(cv[f'mean_test_{suffix}'][i])} ± "
                      f"{_fmt_score(cv[f'std_test_{suffix}'][i])}  {json.dumps(cv['params'][i])}")
    if old is None:
        print_history(past)
    return 0


# --- export / verify -------------------------------------------------------------------------

def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    from searchd.cli.export import export_model
    old = getattr(args, "history", None)
    name, size = export_model(settings.state_dir, args.job, args.model, args.format,
                              args.output, old)
    where = args.job if old is None else f"{args.job} (history {old})"
    print(f"exported {where}/{name} ({args.format}) → {args.output} ({size:,} bytes)")
    return 0
