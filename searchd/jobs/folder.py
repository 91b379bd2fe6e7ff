"""The user's ``jobs/`` folder and the frozen copies of accepted specs in ``state/``.

``jobs/`` belongs to the user: searchd only reads it. When a job is first
accepted its file is copied, byte for byte, to ``state/<id>/job.toml|json``;
the job runs that frozen spec until an edit of the file is accepted, which replaces the
copy (:mod:`searchd.supervisor.editing`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from searchd.errors import JobSpecError
from searchd.jobs.ids import SUFFIXES, job_id_of, job_id_problem
from searchd.jobs.limits import JobLimits
from searchd.jobs.load import parse_job
from searchd.jobs.reading import read_job_bytes
from searchd.jobs.spec import JobSpec
from searchd.state.files import atomic_write, make_private_dir

log = logging.getLogger(__name__)

FROZEN_NAMES = tuple(f"job{s}" for s in SUFFIXES)


@dataclass(frozen=True)
class JobFile:
    id: str
    path: Path
    #: sha256 of the bytes; for an unreadable file, of what was seen (reason, stat)
    digest: str
    mtime: float
    raw: bytes
    #: why the file cannot be read as a job (a symlink, too large, ...): it becomes
    #: ``invalid`` with this reason, which names the file
    error: str | None = None


def scan(jobs_dir: Path, state_dir: Path | None = None
         ) -> tuple[dict[str, JobFile], list[tuple[Path, str]]]:
    """Job files by id, and files that cannot be jobs (with the reason).

    A name that cannot be a job id (hidden, bad characters, a name the state folder
    uses for itself, an id used twice) is rejected, and so is one whose folder in
    ``state_dir`` is taken by something that is not a folder (a planted file): no
    record of it could be written. Rejected files never touch the state folder.
    A file with a good name that cannot be read as a job — a symbolic
    link (never followed: jobs/ may be shared with other users, and a link would
    make the daemon read any file it can), not a regular file, larger than
    MAX_JOB_BYTES, unreadable — is returned with its ``error``, so it shows as
    ``invalid`` with the reason. Nothing is read past MAX_JOB_BYTES.
    """
    found: dict[str, JobFile] = {}
    rejected: list[tuple[Path, str]] = []
    try:
        entries = sorted(jobs_dir.iterdir())
    except FileNotFoundError:
        return found, rejected
    for path in entries:
        if path.suffix not in SUFFIXES:
            continue
        if path.name.startswith("."):
            rejected.append((path, "ignored: a hidden file (its name starts with '.') is no job"))
            continue
        jid = job_id_of(path)
        problem = job_id_problem(jid)
        if problem:
            rejected.append((path, f"ignored: {problem}"))
            continue
        if jid in found:
            rejected.append((path, f"ignored: job id {jid!r} is already used by "
                                   f"{found[jid].path.name}"))
            continue
        if state_dir is not None:
            try:
                st = os.lstat(state_dir / jid)
            except FileNotFoundError:
                pass
            else:
                if not (stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode)):
                    rejected.append((path, f"ignored: {state_dir / jid} is not a folder, so "
                                           "the job has no place in the state folder"))
                    continue
        try:
            raw, st = read_job_bytes(path, follow_symlinks=False)
        except JobSpecError as e:
            try:
                st = path.lstat()
            except OSError:  # vanished between listing and reading: gone, not invalid
                continue
            seen = f"{e}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_size}".encode()
            found[jid] = JobFile(jid, path, hashlib.sha256(seen).hexdigest(), st.st_mtime,
                                 b"", error=str(e))
            continue
        found[jid] = JobFile(jid, path, hashlib.sha256(raw).hexdigest(), st.st_mtime, raw)
    return found, rejected


def frozen_path(job_dir: Path) -> Path | None:
    for name in FROZEN_NAMES:
        p = job_dir / name
        if os.path.lexists(p):  # a link is found here, and refused when read
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


def frozen_spec(job_dir: Path, jobs_dir: Path, job_id: str,
                limits: JobLimits | int) -> JobSpec:
    """The frozen spec of a job; errors name the user's file, data paths resolve in jobs/."""
    p = frozen_path(job_dir)
    if p is None:
        raise JobSpecError(f"{job_dir}: no accepted job file")
    shown = jobs_dir / f"{job_id}{p.suffix}"
    raw, _ = read_job_bytes(p, follow_symlinks=False)  # state/ is never read through a link
    return parse_job(raw, shown, limits, job_id=job_id, base_dir=jobs_dir)
