"""What the CLI says about edited jobs: the last edit in ``status``, the history in
``show``, and, in ``validate``, what an edit of an existing job would reuse and compute."""

from __future__ import annotations

import time
from typing import Any

from searchd.jobs.spec import JobSpec
from searchd.settings import Settings
from searchd.state.history import Archived


def edit_note(e: dict[str, Any]) -> str:
    """``edited 10:42: +24 candidates (120 fits), 96 fits reused`` (local time)."""
    when = time.strftime("%H:%M", time.localtime(e.get("at") or 0))
    borrowed = e.get("borrowed") or {}
    lead = f"edited {when}: " if e.get("what") else f"started {when}: "
    if e.get("archived") is not None:
        return (f"{lead}{e.get('why')}: started over (the earlier results are history "
                f"{e['archived']}: show --history {e['archived']})")
    if "reused" not in e:
        return f"{lead}{e.get('what')} (applied when its worker starts)"
    text = (f"{lead}+{e.get('new_candidates', 0):,} candidates ({e.get('new_fits', 0):,} "
            f"fits), {e['reused']:,} fits reused")
    if borrowed:
        text += " (" + ", ".join(f"{n:,} from job {j}" for j, n in borrowed.items()) + ")"
    return text


def print_history(past: list[Archived]) -> None:
    if not past:
        return
    print("\n  history (results archived when an edit changed the evaluation context; "
          "show --history N, export --history N):")
    for e in past:
        print(f"    {e.n}: {time.strftime('%Y-%m-%d %H:%M', time.localtime(e.when))}  "
              f"{e.fits:,} fits  {e.why}")


def edit_preview(spec: JobSpec, settings: Settings, templates: dict[str, Any],
                 data: Any) -> dict[str, Any] | None:
    """What running ``spec`` as job ``spec.id`` would reuse, from the job's own checkpoint
    (an edit) or, for a job without one, from other jobs in the same context; None when
    there is nothing to reuse (or no state folder to look in)."""
    from searchd.errors import CheckpointError
    from searchd.jobs.context import evaluation_context
    from searchd.state.checkpoint import read_results
    from searchd.state.signing import load_key
    from searchd.state.store import CheckpointStore
    from searchd.worker.plan import add_batch, empty_results
    from searchd.worker.resume import context_change, held_fits
    from searchd.worker.reuse import Pool, borrow
    from searchd.worker.strategy import strategy_for

    job_dir = settings.state_dir / spec.id
    try:
        key = load_key(settings.state_dir)
    except CheckpointError:
        return None
    context = evaluation_context(spec)
    old = None
    if job_dir.is_dir() and not job_dir.is_symlink():
        old, _ = read_results(CheckpointStore(job_dir, key, spec.id))
    pool = Pool()
    if old is not None:
        why = context_change(old, context, data.digest)
        if why is not None:
            return {"job": spec.id, "starts_over": True, "why": why,
                    "archived_fits": held_fits(old)}
        pool.add_snapshot(old)
    else:
        borrow(pool, settings.state_dir, spec.id, key, context, data.digest)
        if not pool.by_key:
            return None
    reused = new_candidates = new_fits = 0
    for m in spec.models:
        res = empty_results(spec, m, data.digest)
        pooled = pool.get(res.spec_key)
        batch = strategy_for(spec, m, templates[m.name], data.y_train, pooled).next_batch(res)
        add_batch(res, batch or [])
        if pooled is not None:
            res.adopt(pooled)
        reused += res.fits_done
        new_fits += res.fits_total - res.fits_done
        new_candidates += sum(int(not res.done[i].any()) for i in range(len(res.keys)))
    return {"job": spec.id, "starts_over": False, "reused": reused,
            "new_candidates": new_candidates, "new_fits": new_fits,
            "borrowed": sorted(pool.borrowed) if old is None else []}


def print_preview(job: str, p: dict[str, Any] | None) -> None:
    if p is None:
        return
    if p["starts_over"]:
        print(f"  as an edit of job {job!r}: {p['why']}: it would start over (its "
              f"{p['archived_fits']:,} fits archived in its history)")
        return
    source = f"jobs {', '.join(p['borrowed'])}" if p["borrowed"] else f"job {job!r}"
    what = "as a new job" if p["borrowed"] else f"as an edit of job {job!r}"
    print(f"  {what}: {p['reused']:,} fits reused (from {source}), "
          f"+{p['new_candidates']:,} candidates ({p['new_fits']:,} fits) to compute")
