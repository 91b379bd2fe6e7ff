"""An edited job file, applied: the job continues on the new version.

The new version is validated as a new job would be. A version that does not validate is
refused: the job keeps its last good (frozen) spec and results, and the record says why
(``edit_error``) until the file changes again. A good one replaces the frozen copy; the
job, in whatever state, is queued to run it (a running worker is restarted at once: it
flushes first, so nothing computed is lost), and the worker reuses every result it can
(:mod:`searchd.worker.resume`). What changed is logged and kept in ``last_edit``.
"""

from __future__ import annotations

import logging

from searchd.errors import JobSpecError
from searchd.jobs.context import compare
from searchd.jobs.folder import JobFile, freeze, frozen_spec
from searchd.jobs.limits import JobLimits
from searchd.jobs.load import parse_job
from searchd.jobs.spec import JobSpec
from searchd.settings import Settings
from searchd.state.records import JobRecord, JobState
from searchd.worker.dask_runner import no_scheduler_message

log = logging.getLogger("searchd")

S = JobState
#: the stop reason of a worker restarted for an edit
EDITED = "edited"


def check_edit(settings: Settings, jf: JobFile) -> JobSpec:
    """The new version as a spec, or JobSpecError naming the file, key and value."""
    if jf.error is not None:
        raise JobSpecError(jf.error)
    spec = parse_job(jf.raw, jf.path, JobLimits.of(settings))
    if spec.search.backend == "dask" and not settings.dask_scheduler:
        raise JobSpecError(no_scheduler_message(jf.path))
    return spec


def describe(settings: Settings, rec: JobRecord, new: JobSpec) -> tuple[str, bool]:
    """What the edit changes, in a line, and whether the job starts over (the frozen spec
    is read as the job's; one that no longer reads says so)."""
    try:
        old = frozen_spec(settings.state_dir / rec.id, settings.jobs_dir, rec.id,
                          JobLimits.of(settings))
    except JobSpecError as e:
        return f"the frozen spec no longer reads ({e}); results found by candidate", False
    change = compare(old, new)
    return change.describe(), not change.continues


def apply_edit(settings: Settings, rec: JobRecord, jf: JobFile, running: bool,
               now: float) -> bool:
    """Apply (or refuse) the new version ``jf`` of ``rec``'s job file; True if its running
    worker must restart on it."""
    try:
        new = check_edit(settings, jf)
    except JobSpecError as e:
        rec.edit_error, rec.edit_digest = str(e), jf.digest
        log.error("%s: edit refused, the job keeps its last good spec: %s", rec.id, e)
        return False
    what, over = describe(settings, rec, new)
    try:
        freeze(settings.state_dir / rec.id, jf)
    except OSError as e:  # tried again at the next scan; the old copy still runs
        problem = f"cannot keep the edited job's copy: {e.strerror or e}"
        if rec.disk_error != problem:
            log.error("%s: %s; retrying at every scan", rec.id, problem)
        rec.disk_error = problem
        return False
    rec.source, rec.mtime, rec.spec_digest = str(jf.path), jf.mtime, jf.digest
    rec.priority, rec.fits_total = new.priority, new.fits_total
    rec.edit_error = rec.edit_digest = None
    rec.last_edit = {"at": now, "what": what, "starts_over": over}
    # removed types leave the view now; the worker reports the rest when it starts
    rec.models = {m.name: rec.models[m.name] for m in new.models if m.name in rec.models}
    log.info("%s: job file edited (%s); %s", rec.id, what,
             "restarting its worker on it" if running else
             "it runs at the job's next start" if rec.state in (S.QUEUED, S.RUNNING, S.PAUSED)
             else f"queueing the {rec.state.value} job again")
    if running:
        return True
    if rec.state in (S.DONE, S.FAILED, S.CANCELLED):
        rec.to(S.QUEUED)
        rec.deaths = 0
    return False


__all__ = ["EDITED", "apply_edit", "check_edit", "describe"]
