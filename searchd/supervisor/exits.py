"""The exit policy: what a worker's exit status means for its job.

Pure decisions on a record (no processes, no clock): the daemon passes the exit status, what
the worker said before it and why it was asked to stop, and gets back how long the job must
wait before it may run again (None: no wait).
"""

from __future__ import annotations

import logging

from searchd import protocol
from searchd.protocol import Exit, describe_exit
from searchd.settings import Settings
from searchd.state.records import JobRecord, JobState

log = logging.getLogger("searchd")

S = JobState
MAX_CLUSTER_WAIT = 120.0  # seconds between two tries to reach the Dask scheduler, at most
LOCKED_WAIT = 10.0  # seconds before retrying a job another process holds
#: the stop reason of a job that has run for max_job_seconds while another job waits
TIME_SLICE = "max_job_seconds"


class ExitPolicy:
    """Deaths in a row fail a job after ``max_worker_deaths``, each restart waiting twice as
    long (``restart_backoff``, doubled); an unreachable Dask cluster is not a death: the job
    waits, up to :data:`MAX_CLUSTER_WAIT` between tries, until it is reached again."""

    def __init__(self) -> None:
        self._cluster_waits: dict[str, int] = {}

    def connected(self, job_id: str) -> None:
        """The job reached its cluster: the next loss waits briefly again."""
        self._cluster_waits.pop(job_id, None)

    def on_exit(self, rec: JobRecord, code: int, events_seen: set[str],
                stop_reason: str | None, settings: Settings) -> float | None:
        """Move ``rec`` to its next state; return the seconds to wait before a restart."""
        rec.paused_reason = None
        rec.last_exit = describe_exit(code)
        rec.cluster_workers = None
        if code == Exit.DONE and protocol.Done.kind in events_seen:
            rec.deaths = 0
            rec.to(S.DONE)
            rec.finished_at = rec.done_at or rec.finished_at  # the worker's clock, not ours
            log.info("%s: done: %d fits (%d computed)", rec.id, rec.fits_total, rec.fits_computed)
        elif code == Exit.INVALID:
            rec.to(S.INVALID, rec.error or "invalid job (see the log)")
        elif code == Exit.STOPPED and stop_reason is not None:
            if stop_reason == "cancelled":
                rec.to(S.CANCELLED, "cancelled by the operator")
            elif stop_reason == TIME_SLICE:
                rec.to(S.QUEUED, f"ran for max_job_seconds ({settings.max_job_seconds:g} s) "
                       "while other jobs waited; requeued behind them, results kept")
            else:
                rec.to(S.QUEUED)
        elif code == Exit.LOCKED:
            log.warning("%s: another process holds the job; retrying later", rec.id)
            rec.to(S.QUEUED)
            return LOCKED_WAIT
        elif code == Exit.CLUSTER:  # not a death: the job waits for the cluster, results stay
            n = self._cluster_waits[rec.id] = self._cluster_waits.get(rec.id, 0) + 1
            delay = min(MAX_CLUSTER_WAIT, settings.restart_backoff * 2 ** (n - 1))
            log.warning("%s: waiting for the Dask cluster; retrying in %.0fs", rec.id, delay)
            rec.to(S.QUEUED, f"waiting for the Dask cluster: {rec.error or 'unreachable'}")
            return delay
        elif protocol.Failed.kind in events_seen and code == Exit.FAILED:
            rec.to(S.FAILED, rec.error)
        else:
            return self._death(rec, code, settings)
        return None

    def _death(self, rec: JobRecord, code: int, settings: Settings) -> float | None:
        rec.deaths += 1
        what = describe_exit(code)
        if rec.deaths >= settings.max_worker_deaths:
            rec.to(S.FAILED, f"worker died {rec.deaths} times in a row (last: {what})")
            return None
        delay = settings.restart_backoff * 2 ** (rec.deaths - 1)
        log.error("%s: worker died (%s); restarting from the checkpoint in %.0fs (%d/%d)",
                  rec.id, what, delay, rec.deaths, settings.max_worker_deaths)
        rec.to(S.QUEUED, f"worker died ({what})")
        return delay


__all__ = ["MAX_CLUSTER_WAIT", "TIME_SLICE", "ExitPolicy"]
