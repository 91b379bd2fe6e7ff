"""``state/<job>/timeline.jsonl``: fits done over time, with pauses, for the report.

One JSON object per line: ``{"at": <epoch seconds>, "fits_done": <int>, "paused":
<reason or null>}``. Appending is cheap (one ``write`` on an ``O_APPEND`` file, no fsync:
a lost line costs a point on a plot, not a result) and never raises on a full or read-only
disk: it logs and the job goes on. Stdlib only, so the supervisor may call it too.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

TIMELINE = "timeline.jsonl"
#: a reader keeps at most this many points (evenly spaced, every pause change kept)
MAX_POINTS = 2000
#: a line longer than this is damage, not a point
_MAX_LINE = 1000


@dataclass(frozen=True)
class TimelinePoint:
    at: float
    fits_done: int
    #: why the job was paused at that instant (None: it was running)
    paused: str | None


def append_timeline(job_dir: Path, at: float, fits_done: int, paused: str | None) -> bool:
    """Append one point to ``job_dir/timeline.jsonl``; False (and a log line) if it failed."""
    line = json.dumps({"at": round(float(at), 3), "fits_done": int(fits_done),
                       "paused": None if paused is None else str(paused)[:200]},
                      separators=(",", ":")) + "\n"
    path = Path(job_dir) / TIMELINE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
    except OSError as e:  # full disk, read-only state, a link planted in its place, ...
        log.warning("%s: timeline point not written (%s)", path, e.strerror or e)
        return False
    return True


def read_timeline(job_dir: Path, max_points: int = MAX_POINTS) -> list[TimelinePoint]:
    """The job's timeline in time order ([] if none was recorded); damaged lines skipped."""
    path = Path(job_dir) / TIMELINE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return []
    except OSError as e:
        log.warning("%s: timeline unreadable (%s); the report shows none", path,
                    e.strerror or e)
        return []
    lines = [ln for ln in raw.splitlines() if ln.strip()]
    try:  # fast path: one parse for the whole file (a day at one point per 5 s: 17,280 lines)
        rows: list[object] = json.loads(b"[" + b",".join(lines) + b"]")
        found = [_valid(d) for d in rows]
    except ValueError:  # a line cut short by a crash, or other damage: line by line
        found = [_point(ln) for ln in lines]
    points = [p for p in found if p is not None]
    skipped = len(found) - len(points)
    if skipped:
        log.warning("%s: %d damaged line(s) skipped", path, skipped)
    points.sort(key=lambda p: p.at)
    return thin(points, max_points)


def _point(line: bytes) -> TimelinePoint | None:
    if not line.strip() or len(line) > _MAX_LINE:
        return None
    try:
        d = json.loads(line)
    except ValueError:  # a line cut short by a crash
        return None
    return _valid(d)


def _valid(d: object) -> TimelinePoint | None:
    if not isinstance(d, dict):
        return None
    at, fits, paused = d.get("at"), d.get("fits_done"), d.get("paused")
    if isinstance(at, bool) or not isinstance(at, (int, float)) or not math.isfinite(at):
        return None
    if isinstance(fits, bool) or not isinstance(fits, int) or fits < 0:
        return None
    if paused is not None and not isinstance(paused, str):
        return None
    return TimelinePoint(float(at), fits, paused)


def thin(points: list[TimelinePoint], max_points: int) -> list[TimelinePoint]:
    """At most about ``max_points`` points: evenly spaced ones, plus every point where the
    paused state changes (so that no pause disappears from the plot)."""
    if len(points) <= max_points:
        return points
    step = len(points) / max_points
    keep = {min(len(points) - 1, int(i * step)) for i in range(max_points)}
    keep.add(len(points) - 1)
    for i in range(1, len(points)):
        if points[i].paused != points[i - 1].paused:
            keep.update((i - 1, i))
    return [points[i] for i in sorted(keep)]
