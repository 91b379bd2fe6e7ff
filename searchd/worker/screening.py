"""Screening a model type's tasks against the strikes of poison fits (see
:mod:`searchd.worker.poison`): a task whose process died twice is recorded as failed
without running, one whose process died once runs alone, the others go to the runner."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from searchd.jobs.messages import brief
from searchd.state.results import ModelResults
from searchd.worker import chains
from searchd.worker.evaluate import Outcome, Task
from searchd.worker.plan import Scoring
from searchd.worker.poison import MAX_FIT_DEATHS, task_tag

if TYPE_CHECKING:
    from searchd.worker.job import JobRun

log = logging.getLogger("searchd.worker")


def record_poison(run: JobRun, name: str, res: ModelResults, t: Task, error: str) -> None:
    """A task failed for its process's deaths: recorded, flushed and reported at once
    (progress resets the supervisor's count of deaths in a row)."""
    run.record(name, res, Outcome(t.i, t.fold, None, 0.0, 0.0, error))
    if run.prepared:
        run.flush()
        run.progress()


def screen(run: JobRun, name: str, res: ModelResults, tasks: Iterator[Task],
           suspects: list[Task], handed: dict[tuple[int, int], Task]) -> Iterator[Task]:
    """``tasks`` named for their fit records; a task whose process died twice is
    recorded as failed here, one whose process died once is kept for ``alone``."""
    strikes = run.guard.strikes
    for t in tasks:
        t = chains.named(t, lambda i, f: task_tag(name, res.keys[i], f))
        if t.links:  # a chain: its failed links recorded, the others go on as a chain
            failed = {u.tag: u for u in chains.unchain(t) if strikes.error(u.tag)}
            for u in failed.values():
                record_poison(run, name, res, u, strikes.error(u.tag) or "")
            # a link whose process died runs alone (as a plain task), the rest chained
            dead = {u.tag: u for u in chains.unchain(t)
                    if u.tag not in failed and strikes.deaths(u.tag)}
            suspects.extend(dead.values())
            t = chains.without(t, set(failed) | set(dead))
            if t is None:
                continue
        error = strikes.error(t.tag)
        if error is not None:
            record_poison(run, name, res, t, error)
        elif strikes.deaths(t.tag):
            suspects.append(t)
        else:
            handed[(t.i, t.fold)] = t
            yield t


def alone(run: JobRun, name: str, template: Any, scoring: Scoring, res: ModelResults,
          tasks: list[Task]) -> None:
    """Tasks whose process died with them in flight, each run by itself (so that its
    next death names it alone), until done or recorded as failed."""
    assert run.runner is not None
    for t in tasks:
        for _ in range(MAX_FIT_DEATHS + 1):
            if res.done[t.i, t.fold]:
                break
            error = run.guard.strikes.error(t.tag)
            if error is not None:
                record_poison(run, name, res, t, error)
                break
            log.info("%s: %s: fitting %s fold %d alone: a process died with it in "
                     "flight", run.job_id, name, brief(res.params[t.i]), t.fold)
            for o in run.runner.stream(template, [t], scoring, count=1):
                run.record(name, res, o)
