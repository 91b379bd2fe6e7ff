"""The points of a job's timeline (fits done, pause reason) that its report draws.

The supervisor knows when a job is paused and why; the worker does not (it is stopped).
So the supervisor appends the points, a few seconds apart while a job runs and at once when
a pause starts or ends or its state changes, to ``state/<job>/timeline.jsonl``
(:func:`searchd.report.timeline.append_timeline`: standard library only, never raises).
"""

from __future__ import annotations

from pathlib import Path

from searchd.report.timeline import append_timeline
from searchd.state.records import ACTIVE, JobRecord, JobState

#: seconds between two points of a running job
TIMELINE_SECONDS = 5.0


class Timeline:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._last: dict[str, tuple[float, tuple[JobState, bool]]] = {}

    def note(self, rec: JobRecord, now: float, wall: float) -> bool:
        """Append a point for ``rec`` if one is due (monotonic ``now``, epoch ``wall``)."""
        if rec.started_at is None:
            return False
        # reasons carry running figures ("for 4s"): a point when a pause starts or ends
        mark = (rec.state, rec.paused_reason is None)
        last = self._last.get(rec.id)
        if last is not None and last[1] == mark and now - last[0] < TIMELINE_SECONDS:
            return False
        if last is None and rec.state not in ACTIVE:
            return False  # a finished job found at start: its timeline is complete
        self._last[rec.id] = (now, mark)
        return append_timeline(self.state_dir / rec.id, wall, rec.fits_done, rec.paused_reason)
