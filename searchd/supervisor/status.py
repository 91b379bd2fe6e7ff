"""The daemon's one-line status, for systemd (``STATUS=``)."""

from __future__ import annotations

from collections.abc import Iterable

from searchd.state.records import ACTIVE, JobRecord


def status_line(running: JobRecord | None, records: Iterable[JobRecord],
                pause_reason: str | None, note: str | None = None) -> str:
    """The line; ``note`` (e.g. a pause rule with no sensor to read) is appended to it."""
    line = _line(running, records, pause_reason)
    return f"{line} ({note})" if note else line


def _line(running: JobRecord | None, records: Iterable[JobRecord],
          pause_reason: str | None) -> str:
    if running is not None:
        if pause_reason:
            return f"paused {running.id}: {pause_reason}"
        fits = [f"{n} {m['fits_done']}/{m['fits_total']} fits"
                for n, m in running.models.items() if m.get("state") == "running"]
        return f"running {running.id}: {fits[0] if fits else 'starting'}"
    queued = [r for r in records if r.state in ACTIVE]
    if pause_reason and queued:
        return f"paused: {pause_reason}"
    return "idle: no jobs" if not queued else f"waiting: {len(queued)} job(s) queued"


__all__ = ["status_line"]
