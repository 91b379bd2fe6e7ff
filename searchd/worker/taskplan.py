"""A batch's pending (candidate, fold) pairs as the tasks its runner gets, longest first:
each halving round's subsample with its task, warm-start chains where the type's estimator
grows exactly (:mod:`searchd.worker.chains`), and the tasks sharing a fold's preprocessing
as one run (:mod:`searchd.worker.prefit`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from searchd.state.results import ModelResults
from searchd.worker import chains, prefit
from searchd.worker.dask_runner import DaskCluster
from searchd.worker.evaluate import Task, longest_first
from searchd.worker.halving import task_split
from searchd.worker.runner import job_n_jobs

if TYPE_CHECKING:
    from searchd.worker.job import JobRun

log = logging.getLogger("searchd.worker")


def tasks(run: JobRun, name: str, template: Any, res: ModelResults,
          pending: list[tuple[int, int]], built: dict[int, dict[str, Any]]) -> Iterator[Task]:
    """The pending tasks, longest first: warm-start chains (not in a halving search), runs
    of shared preprocessing (with a preprocessing cache), else one task per pair."""
    if run.spec.model(name).search.kind == "halving":
        return (Task(i, f, built[i], split=task_split(res, i, run.splits[f]))
                for i, f in longest_first(pending, task_seconds(run, res)))
    key = chains.growable(template)
    units = chains.plan(template, pending, built, res.params,
                        {s.name for s in run.spec.preprocess})
    n, fits = chains.count_chains(units)
    if n:
        log.info("%s: %s: runs as warm-start chains: %d fits as %d chains growing %s",
                 run.job_id, name, fits, n, key)
    if run.cache_mb > 0:  # the tasks sharing a fold's preprocessing: one process each
        units = prefit.runs(template, units, built, slots(run))
        shared = [u for u in units if isinstance(u, prefit.Run)]
        if shared:
            log.info("%s: %s: preprocessing shared: %d fits as %d runs", run.job_id,
                     name, sum(len(u) for u in shared), len(shared))
    return (chains.as_task(u, built, key)
            for u in chains.longest_first(units, task_seconds(run, res)))


def slots(run: JobRun) -> int:
    """The tasks' processes, or the cluster's threads (connecting to it first)."""
    if isinstance(run.runner, DaskCluster):
        run.runner.connect()
        return max(1, run.runner.threads)
    return job_n_jobs(run.spec, run.n_jobs)


def task_seconds(run: JobRun, res: ModelResults) -> Callable[[], np.ndarray]:
    """Each candidate's seconds per fit so far, read under the run's lock when the order
    is made."""
    def read() -> np.ndarray:
        with run.lock:
            return res.task_seconds()
    return read
