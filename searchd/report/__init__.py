"""A job's report: one self-contained HTML page with plots (``searchd report JOB``).

``gather`` reads the job through the public read API, ``page`` and ``sections`` make
the HTML, ``plots`` the inline SVG (matplotlib), ``stats`` the fold-paired comparison,
``timeline`` the fits-over-time record. Importing this package loads none of them:
the supervisor may import :mod:`searchd.report.timeline` without matplotlib or numpy.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["render_report", "write_report"]


def render_report(state_dir: Path, job_id: str) -> str:
    """The report of ``job_id`` as HTML; the same state always gives the same text."""
    from searchd.report.gather import gather
    from searchd.report.page import render

    return render(gather(Path(state_dir), job_id))


def write_report(state_dir: Path, job_id: str, out: Path) -> int:
    """Write the report of ``job_id`` to ``out`` atomically; returns its size in bytes."""
    from searchd.state.store import atomic_write

    data = render_report(state_dir, job_id).encode()
    out = Path(out)
    # inside the state folder it is private like everything there; elsewhere, the umask's
    private = out.resolve().is_relative_to(Path(state_dir).resolve())
    atomic_write(out, data, durable=False, mode=0o600 if private else 0o644)
    return len(data)
