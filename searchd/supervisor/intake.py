"""Intake: the jobs folder turned into job records.

New files are validated against the daemon's limits and frozen (or marked ``invalid`` with
the reason), an edited file is applied (:mod:`searchd.supervisor.editing`), removed files
are noticed, a touched ``failed``/``cancelled`` file is queued again, and the operator's
cancel requests are applied. A job whose frozen copy could not be written (a full disk)
stays ``queued`` with the reason in ``disk_error`` and is accepted again at every scan
until the copy is written. The running worker is never
touched here: what should happen to it comes back as stop reasons, and the daemon acts on
them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from pathlib import Path

from searchd.errors import JobSpecError
from searchd.jobs.folder import JobFile, freeze, frozen_path, scan
from searchd.jobs.limits import JobLimits, effective_priority
from searchd.jobs.load import parse_job
from searchd.jobs.messages import clip
from searchd.settings import Settings
from searchd.state import control
from searchd.state.records import ACTIVE, JobRecord, JobState
from searchd.supervisor.editing import EDITED, apply_edit
from searchd.worker.dask_runner import NO_SCHEDULER, no_scheduler_message

log = logging.getLogger("searchd")

S = JobState


class Intake:
    """Scans ``jobs/`` into ``records``; marks what it changed in ``dirty``."""

    def __init__(self, records: dict[str, JobRecord], dirty: set[str]) -> None:
        self.records = records
        self.dirty = dirty
        self.files: dict[str, JobFile] = {}
        self._rejected: set[tuple[Path, str]] = set()

    def scan(self, settings: Settings, running: str | None, now: float | None = None
             ) -> list[str]:
        """One pass over the jobs folder and the cancel requests; returns the reasons, in
        order, to stop the ``running`` job's worker (none if it may go on). ``now`` is the
        wall clock an applied edit is stamped with."""
        stops: list[str] = []
        files, rejected = scan(settings.jobs_dir, settings.state_dir)
        for path, reason in rejected:
            if (path, reason) not in self._rejected:  # once, not at every scan
                log.warning("%s: %s", clip(str(path), 300), reason)
        self._rejected = set(rejected)
        for jid, jf in files.items():
            if self._seen(settings, jid, jf, running, time.time() if now is None else now):
                stops.append(EDITED)
        for jid, rec in self.records.items():
            if jid not in files and not rec.file_removed and rec.state != S.INVALID:
                rec.file_removed = True
                self.dirty.add(jid)
                if running == jid:
                    log.info("%s: job file removed; stopping the job (results stay)", jid)
                    stops.append("removed")
            if control.cancel_requested(settings.state_dir / jid) and self._cancel(
                    settings, rec, running):
                stops.append("cancelled")
        self.files = files
        return stops

    def _seen(self, settings: Settings, jid: str, jf: JobFile, running: str | None,
              now: float) -> bool:
        """Take in one job file; True if the running worker must restart for an edit."""
        restart = False
        rec = self.records.get(jid)
        if rec is None:
            rec = self.records[jid] = JobRecord(id=jid)
            self.accept(settings, rec, jf)
        elif rec.state == S.INVALID and (jf.digest != rec.spec_digest or (
                settings.dask_scheduler and NO_SCHEDULER in (rec.error or ""))):
            rec.to(S.QUEUED)
            self.accept(settings, rec, jf)
        elif rec.state == S.QUEUED and self.unfrozen(settings, rec):
            self.accept(settings, rec, jf)  # its copy was never written (a full disk)
        elif rec.spec_digest is not None and jf.digest not in (rec.spec_digest,
                                                                rec.edit_digest):
            restart = apply_edit(settings, rec, jf, running == jid, now)
            self.dirty.add(jid)
        elif rec.state in (S.FAILED, S.CANCELLED) and jf.mtime > rec.mtime + 1e-6:
            log.info("%s: job file touched; queueing it again", jid)
            rec.to(S.QUEUED)
            rec.deaths, rec.mtime = 0, jf.mtime
            self.dirty.add(jid)
        changed = rec.spec_digest is not None and jf.digest != rec.spec_digest
        if not changed and rec.edit_error is not None:  # the refused edit was undone
            rec.edit_error = rec.edit_digest = None
            self.dirty.add(jid)
        if rec.file_changed != changed or rec.file_removed:
            rec.file_changed, rec.file_removed = changed, False
            self.dirty.add(jid)
        return restart

    @staticmethod
    def unfrozen(settings: Settings, rec: JobRecord) -> bool:
        """A queued job without its frozen copy: accepting it failed on the disk (or the
        copy is gone); it must be accepted again, never left queued for ever."""
        return rec.state == S.QUEUED and frozen_path(settings.state_dir / rec.id) is None

    def accept(self, settings: Settings, rec: JobRecord, jf: JobFile) -> None:
        """Validate ``jf`` and freeze it into the state folder, or mark the job invalid.

        A write that fails (ENOSPC, EIO, ...) leaves the job queued with ``disk_error``
        set; :meth:`scan` tries again each time until it works."""
        rec.source, rec.mtime, rec.spec_digest = str(jf.path), jf.mtime, jf.digest
        self.dirty.add(rec.id)
        try:
            if jf.error is not None:  # a symlink, not a regular file, too large, unreadable
                raise JobSpecError(jf.error)
            spec = parse_job(jf.raw, jf.path, JobLimits.of(settings))
        except JobSpecError as e:
            rec.to(S.INVALID, str(e))
            rec.disk_error = None
            log.error("%s: invalid: %s", rec.id, e)
            return
        job_dir = settings.state_dir / rec.id
        try:
            freeze(job_dir, jf)
        except OSError as e:
            problem = f"cannot keep the job's copy in {job_dir}: {e.strerror or e}"
            if rec.disk_error != problem:  # once per problem, not at every scan
                log.error("%s: %s; retrying at every scan", rec.id, problem)
            rec.disk_error, rec.fits_total = problem, spec.fits_total
            rec.priority = spec.priority
            return
        if rec.disk_error is not None:
            log.info("%s: the job's copy is written; the disk works again", rec.id)
            rec.disk_error = None
        rec.priority, rec.fits_total = spec.priority, spec.fits_total
        runs_at = effective_priority(spec.priority, settings.max_priority)
        if runs_at != spec.priority:
            log.warning("%s: priority %d clipped to %d (max_priority)", rec.id,
                        spec.priority, runs_at)
        # with a scheduler, every job runs on the cluster; without, asking for one is an error
        rec.backend = "dask" if settings.dask_scheduler else spec.search.backend
        if spec.search.backend == "dask" and not settings.dask_scheduler:
            rec.to(S.INVALID, no_scheduler_message(jf.path))
            log.error("%s: invalid: %s", rec.id, rec.error)
            return
        log.info("%s: accepted %s: %d model type(s), %d fits", rec.id, jf.path,
                 len(spec.models), spec.fits_total)

    def _cancel(self, settings: Settings, rec: JobRecord, running: str | None) -> bool:
        """Apply a cancel request; True if the running worker must stop for it."""
        control.clear_cancel(settings.state_dir / rec.id)
        if rec.state not in ACTIVE and rec.state != S.FAILED:
            return False
        if running == rec.id:
            return True
        rec.to(S.CANCELLED, "cancelled by the operator")
        self.dirty.add(rec.id)
        return False


__all__ = ["EDITED", "Intake", "run_order"]


def run_order(records: Iterable[JobRecord], settings: Settings, not_before: dict[str, float],
              now: float, ignore_backoff: bool = False, first: str | None = None
              ) -> list[JobRecord]:
    """The jobs that may start now, first in line first: ``first`` (a job whose worker
    was just stopped for an edit: it goes on at once), then fewer turns
    (max_job_seconds), then higher priority (clipped to max_priority), then the older
    file."""
    recs = [r for r in records
            if r.state in ACTIVE and not r.file_removed
            and frozen_path(settings.state_dir / r.id) is not None
            and (ignore_backoff or not_before.get(r.id, 0) <= now)]
    top = settings.max_priority
    return sorted(recs, key=lambda r: (r.id != first, r.turn,
                                       -effective_priority(r.priority, top),
                                       r.mtime, r.id))
