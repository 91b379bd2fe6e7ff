"""The user's ``jobs/`` folder and the frozen copies of accepted specs in ``state/``.

``jobs/`` belongs to the user: searchd only reads it. When a job is first
accepted its file is copied, byte for byte, to ``state/<id>/job.toml|json``;
the job then runs that frozen spec even if the user edits the file.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from .errors import JobSpecError
from .spec import JOB_ID, SUFFIXES, JobSpec, job_id_of, parse_job
from .store import atomic_write, make_private_dir

log = logging.getLogger(__name__)

FROZEN_NAMES = tuple(f"job{s}" for s in SUFFIXES)


@dataclass(frozen=True)
class JobFile:
    id: str
    path: Path
    digest: str
    mtime: float
    raw: bytes


def scan(jobs_dir: Path) -> tuple[dict[str, JobFile], list[tuple[Path, str]]]:
    """Job files by id, and files that cannot be jobs (with the reason)."""
    found: dict[str, JobFile] = {}
    rejected: list[tuple[Path, str]] = []
    try:
        entries = sorted(jobs_dir.iterdir())
    except FileNotFoundError:
        return found, rejected
    for path in entries:
        if path.name.startswith(".") or path.suffix not in SUFFIXES or not path.is_file():
            continue
        jid = job_id_of(path)
        if not JOB_ID.match(jid):
            rejected.append((path, f"job id {jid!r} may only use letters, digits, '.', '_', "
                                   "'-'"))
            continue
        if jid in found:
            rejected.append((path, f"job id {jid!r} is already used by {found[jid].path.name}"))
            continue
        try:
            raw = path.read_bytes()
            mtime = path.stat().st_mtime
        except OSError as e:  # vanished or unreadable between listing and reading
            rejected.append((path, f"cannot read: {e.strerror}"))
            continue
        found[jid] = JobFile(jid, path, hashlib.sha256(raw).hexdigest(), mtime, raw)
    return found, rejected


def frozen_path(job_dir: Path) -> Path | None:
    for name in FROZEN_NAMES:
        p = job_dir / name
        if p.exists():
            return p
    return None


def freeze(job_dir: Path, jf: JobFile) -> Path:
    """Copy an accepted job file into the state folder (atomically)."""
    make_private_dir(job_dir)
    for name in FROZEN_NAMES:  # an invalid earlier version may have had the other suffix
        (job_dir / name).unlink(missing_ok=True)
    dest = job_dir / f"job{jf.path.suffix}"
    atomic_write(dest, jf.raw)
    return dest


def frozen_spec(job_dir: Path, jobs_dir: Path, job_id: str, max_candidates: int) -> JobSpec:
    """The frozen spec of a job; errors name the user's file, data paths resolve in jobs/."""
    p = frozen_path(job_dir)
    if p is None:
        raise JobSpecError(f"{job_dir}: no accepted job file")
    shown = jobs_dir / f"{job_id}{p.suffix}"
    return parse_job(p.read_bytes(), shown, max_candidates, job_id=job_id, base_dir=jobs_dir)
