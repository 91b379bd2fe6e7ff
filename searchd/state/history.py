"""A job's archived results: ``state/<job>/history/<n>/``.

When an edit changes a job's evaluation context (its data, hold-out, CV, scoring or
preprocessing), or its data changes under it, the results computed so far cannot be
reused, but they are never deleted: every checkpoint file of the job (results, deltas,
splits, fitted models) and its report move, as they are, into the next numbered folder of
``history/``, with ``about.json`` saying when, why and how many fits it holds. The files
stay signed for the job (a signature names the job and the checkpoint, not the folder), so
``show --history N``, ``export --history N`` and ``load_results(..., history=N)`` verify
and read them as they read the job's current results.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from searchd.errors import NotFoundError
from searchd.state.files import SUFFIX, atomic_write, fsync_dir, make_private_dir, read_private
from searchd.state.store import CheckpointStore

log = logging.getLogger(__name__)

HISTORY = "history"
ABOUT = "about.json"
#: what moves into an archive: every checkpoint (its previous generation, and a complete next
#: one a crash left as ``.<name>.next``, which a read would take) and the report
ARCHIVED = re.compile(rf"^(results|splits-|model-).*{re.escape(SUFFIX)}$"
                      r"|^\.(results|model-).*\.next$|^report\.html$")


@dataclass(frozen=True)
class Archived:
    """One entry of a job's history."""

    n: int
    #: wall-clock time of the archiving (epoch seconds)
    when: float
    why: str
    #: (candidate, fold) results it holds
    fits: int

    def as_json(self) -> dict[str, Any]:
        return {"n": self.n, "when": self.when, "why": self.why, "fits": self.fits}


def history_dir(job_dir: Path, n: int | None = None) -> Path:
    base = job_dir / HISTORY
    return base if n is None else base / str(n)


def entries(job_dir: Path) -> list[Archived]:
    """The job's archives, oldest first (folders without a readable note are skipped)."""
    out: list[Archived] = []
    base = history_dir(job_dir)
    try:
        names = [p.name for p in base.iterdir() if p.name.isdigit() and not p.is_symlink()]
    except OSError:
        return out
    for name in sorted(names, key=int):
        try:
            doc = json.loads(read_private(base / name / ABOUT).decode())
            out.append(Archived(int(name), float(doc["when"]), str(doc["why"]),
                                int(doc["fits"])))
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("%s: unreadable %s: %s", base / name, ABOUT, e)
    return out


def archive(store: CheckpointStore, why: str, fits: int,
            extra: dict[str, Any] | None = None) -> Archived | None:
    """Move the job's results into a new ``history/<n>/``; None when there was nothing
    to move. The caller holds the job (its worker lock); readers see the files in one
    place or the other, never half (the store's lock is held while they move)."""
    job_dir = store.dir
    names = sorted(p.name for p in job_dir.iterdir() if ARCHIVED.match(p.name)
                   and p.is_file() and not p.is_symlink())
    if not any(n.endswith((SUFFIX, ".next")) for n in names):
        return None
    base = history_dir(job_dir)
    make_private_dir(base)
    taken = [int(p.name) for p in base.iterdir() if p.name.isdigit()]
    n = max(taken, default=0) + 1
    dest = base / str(n)
    make_private_dir(dest)
    entry = Archived(n, time.time(), why, fits)
    # the note first: a crash mid-move leaves a described archive, never an anonymous one
    atomic_write(dest / ABOUT, (json.dumps({**entry.as_json(), **(extra or {})}, indent=2)
                                + "\n").encode())
    with store.lock:
        for name in names:
            os.replace(job_dir / name, dest / name)
        fsync_dir(dest)
        fsync_dir(job_dir)
    log.warning("%s: archived %d fits in %s: %s", store.job_id, fits, dest, why)
    return entry


def history_store(state_dir: Path, job_id: str, n: int, key: bytes) -> CheckpointStore:
    """The store of archive ``n`` of a job (NotFoundError if it has none such)."""
    d = history_dir(Path(state_dir) / job_id, n)
    if not d.is_dir() or d.is_symlink():
        have = ", ".join(str(e.n) for e in entries(Path(state_dir) / job_id)) or "none"
        raise NotFoundError(f"job {job_id}: no history entry {n} (it has: {have})")
    return CheckpointStore(d, key, job_id)


__all__ = ["ABOUT", "HISTORY", "Archived", "archive", "entries", "history_dir",
           "history_store"]
