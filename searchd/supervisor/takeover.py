"""Taking over the state directory at the daemon's start: private folders, the lock that
keeps a second daemon out, the key, and what a killed daemon left behind (its processes, its
temp files, jobs it was running), under a lifeline that ends this daemon's processes if it
dies."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from searchd.settings import Settings
from searchd.state.files import clean_temp_files, exclusive, secure_state_dir
from searchd.state.published import publishes_inside
from searchd.state.records import JobRecord, JobState, all_summaries
from searchd.state.signing import load_key
from searchd.supervisor.proctree import ProcessControl

log = logging.getLogger("searchd")


@contextlib.contextmanager
def taken_over(settings: Settings, control: ProcessControl) -> Iterator[list[JobRecord]]:
    """Hold the state directory while the daemon runs; yields the jobs' records, a job
    that was running when the last daemon died queued again."""
    state = settings.state_dir
    # private folders, no links followed (0710 when the group reads state/published)
    secure_state_dir(state, publishes_inside(settings))
    with exclusive(state / "searchd.lock", f"state directory {state}", state / "searchd.pid"):
        load_key(state, create=True)
        n = control.end_leftovers(state)
        if n:
            log.warning("ended %d leftover process(es) of a previous daemon", n)
        records = []
        for rec in all_summaries(state):
            clean_temp_files(state / rec.id)
            if rec.state in (JobState.RUNNING, JobState.PAUSED):
                rec.to(JobState.QUEUED)  # it was running when the last daemon died
                rec.paused_reason = None
            records.append(rec)
        clean_temp_files(state)
        with control.lifeline(state):
            yield records
