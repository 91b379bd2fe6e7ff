"""A worker's events folded into its job's record (progress, ETA, errors)."""

from __future__ import annotations

from searchd import protocol
from searchd.state.records import JobRecord


class EventFold:
    """Applies events to records; remembers where this worker's session began, for the ETA
    (fits per run second since the worker started, not since the job did)."""

    def __init__(self) -> None:
        self._session: dict[str, tuple[int, float]] = {}

    def new_session(self, job_id: str) -> None:
        self._session.pop(job_id, None)

    def apply(self, rec: JobRecord, ev: protocol.Event) -> None:
        if isinstance(ev, protocol.Progress):
            rec.models = ev.models
            done = sum(m["fits_done"] for m in rec.models.values())
            if done > rec.fits_done and rec.deaths:
                rec.deaths = 0  # progress again: deaths count "in a row"
            rec.fits_done = done
            rec.fits_total = sum(m["fits_total"] for m in rec.models.values())
            start = self._session.setdefault(rec.id, (done, rec.run_seconds))
            rate_fits, rate_time = done - start[0], rec.run_seconds - start[1]
            rec.eta_seconds = ((rec.fits_total - done) * rate_time / rate_fits
                               if rate_fits > 0 and rate_time > 0 else None)
            rec.backend = ev.backend
            rec.cluster_workers = ev.cluster_workers
            rec.processes = ev.processes
        elif isinstance(ev, protocol.Dispatching):
            rec.first_task_at = rec.first_task_at or ev.at
        elif isinstance(ev, protocol.Done):
            rec.done_at = ev.at
        elif isinstance(ev, protocol.Invalid | protocol.Failed | protocol.Cluster):
            rec.error = ev.error
        elif isinstance(ev, protocol.Disk):
            rec.disk_error = ev.error
        elif isinstance(ev, protocol.Reuse):  # the worker's figures for the last edit
            rec.last_edit = {**(rec.last_edit or {"at": ev.at}), "reused": ev.reused,
                             "new_candidates": ev.new_candidates, "new_fits": ev.new_fits,
                             "borrowed": ev.borrowed, "archived": ev.archived, "why": ev.why}


__all__ = ["EventFold"]
