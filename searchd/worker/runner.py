"""The seam between the job loop and where its tasks run: this machine or a Dask cluster.

A runner takes a stream of tasks and yields their outcomes as each finishes, in any order;
the job loop records them by (candidate, fold). :class:`LocalRunner` and
:class:`~searchd.worker.dask_runner.DaskCluster` both satisfy :class:`Runner`; a new backend
only has to as well.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from joblib import effective_n_jobs

from searchd.jobs.spec import JobSpec
from searchd.worker.dask_runner import DaskCluster
from searchd.worker.evaluate import Outcome, Task
from searchd.worker.local_runner import LocalRunner
from searchd.worker.plan import Scoring, Split
from searchd.worker.poison import FitGuard


class Runner(Protocol):
    """Evaluates tasks on the job's data, which it was given when it was made."""

    #: the ``backend`` of the worker's progress events: "local" or "dask"
    backend: str

    @property
    def processes(self) -> int | None:
        """Local processes fitting now (None on a cluster)."""

    @property
    def workers(self) -> int | None:
        """The cluster's workers as last reported (None when local, or not yet connected)."""

    def stream(self, template: Any, tasks: Iterable[Task], scoring: Scoring,
               count: int | None = None) -> Iterator[Outcome]:
        """Evaluate ``tasks`` (``count`` of them, if known), yielding each as it finishes."""

    def close(self) -> None:
        """Once the job's last task is in: release what the runner holds. Idempotent."""


def job_n_jobs(spec: JobSpec, daemon_n_jobs: int) -> int:
    """The processes a job's search gets: its own ``n_jobs``, capped by the daemon's and the
    machine's (a job cannot ask for 10,000 processes); a negative count, the job's or the
    daemon's, is resolved as joblib resolves it (-1, the default: every core) before it is
    compared, so a job's -1 cannot pass a daemon's 1."""
    daemon = int(effective_n_jobs(daemon_n_jobs))
    own = int(effective_n_jobs(spec.search.n_jobs)) if spec.search.n_jobs else daemon
    return min(own, daemon, os.cpu_count() or 1)


def make_runner(spec: JobSpec, job_id: str, daemon_n_jobs: int, address: str | None,
                X: np.ndarray, y: np.ndarray, splits: list[Split], scratch: Path,
                guard: FitGuard | None = None, cache_mb: float = 0.0) -> Runner:
    """The job's runner: on the Dask scheduler at ``address`` (see
    :func:`~searchd.worker.dask_runner.cluster_address`), else on this machine.

    Nothing starts here: the pool starts once the fits show it is worth it, the cluster
    connects on the first stream. ``cache_mb``: the shared preprocessing each local process
    keeps (:mod:`searchd.worker.prefit`), or each chain's or run's task on a cluster.
    """
    if address:
        return DaskCluster(address, job_id, X, y, splits, cache_mb)
    return LocalRunner(job_n_jobs(spec, daemon_n_jobs), X, y, splits, scratch, guard,
                       cache_mb)
