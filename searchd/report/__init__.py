"""A job's report: one self-contained HTML page with plots (``searchd report JOB``).

``gather`` reads the job through the public read API (``axes`` turns the searched
parameters into plot axes and edge-of-grid advice), ``stats`` makes the fold-paired
comparison, ``page`` and ``sections`` the HTML (``fmt`` its small helpers), ``plots`` the
plots and ``svg`` their matplotlib-to-inline-SVG machinery; ``timeline`` reads and
appends the fits-over-time record. Importing this package loads none of them:
the supervisor may import :mod:`searchd.report.timeline` without matplotlib or numpy.
"""

from __future__ import annotations

import logging
from pathlib import Path

from searchd.errors import SearchdError

__all__ = ["REPORT", "refresh_report", "render_report", "write_report"]

log = logging.getLogger(__name__)

#: the report the daemon keeps in each job's folder
REPORT = "report.html"


def render_report(state_dir: Path, job_id: str) -> str:
    """The report of ``job_id`` as HTML; the same state always gives the same text."""
    from searchd.report.gather import gather
    from searchd.report.page import render

    return render(gather(Path(state_dir), job_id))


def write_report(state_dir: Path, job_id: str, out: Path) -> int:
    """Write the report of ``job_id`` to ``out`` atomically; returns its size in bytes."""
    from searchd.state.files import atomic_write

    data = render_report(state_dir, job_id).encode()
    out = Path(out)
    # inside the state folder it is private like everything there; elsewhere, the umask's
    private = out.resolve().is_relative_to(Path(state_dir).resolve())
    atomic_write(out, data, durable=False, mode=0o600 if private else 0o644)
    return len(data)


def refresh_report(state_dir: Path, job_id: str) -> bool:
    """Rewrite ``state/<job>/report.html``; False, and a log line, if that failed.

    For the worker, after a results flush (outside the checkpoint lock): a report that
    cannot be made or written must never stop the job.
    """
    out = Path(state_dir) / job_id / REPORT
    try:
        size = write_report(state_dir, job_id, out)
    except (SearchdError, OSError, ValueError) as e:  # no results yet, a full disk, bad data
        log.warning("%s: report not written (%s)", job_id, e)
        return False
    log.debug("%s: report written (%d bytes)", job_id, size)
    return True
