"""Job ids: a job file's name without its suffix, which also names the job's folder in
state/; the names the state folder keeps for itself are no ids."""

from __future__ import annotations

import re
from pathlib import Path

from searchd.jobs.messages import brief

#: a job id, matched whole (``re.fullmatch``: ``$`` would let a trailing newline through)
JOB_ID = re.compile(r"[A-Za-z0-9._-]+")
#: names the state folder uses for itself: a job folder state/<id> must never be one of them
RESERVED_IDS = ("pause.json", "quarantine", "published", "lost+found")
#: prefixes and suffixes of the state folder's own files (searchd.key, searchd.lock, ...)
RESERVED_PREFIXES = ("searchd.",)
RESERVED_SUFFIXES = (".lock", ".pid", ".key")
SUFFIXES = (".toml", ".json")


def job_id_of(path: Path) -> str:
    return path.name[: -len(path.suffix)] if path.suffix else path.name


def job_id_problem(jid: str) -> str | None:
    """Why ``jid`` cannot be a job id (it names a folder in state/), or None.

    The id is also the name of the job's folder in state/, beside the daemon's own
    files: an id equal to one of those (``pause.json``, ``searchd.key``, any ``*.lock``)
    would make the daemon create a folder in their place, so such ids are refused.
    """
    if not JOB_ID.fullmatch(jid):
        return f"job id {brief(jid)} may only use letters, digits, '.', '_', '-'"
    if jid[0] in ".-":  # '.', '..': the state folder or its parent; '-x': an option
        return f"job id {jid!r} may not start with {jid[0]!r}"
    low = jid.lower()  # a case-insensitive file system would make SEARCHD.KEY the key
    if (low in RESERVED_IDS or low.startswith(RESERVED_PREFIXES)
            or low.endswith(RESERVED_SUFFIXES)):
        return (f"job id {jid!r} is reserved: the state folder uses it for itself (no id may "
                f"be {', '.join(RESERVED_IDS)}, start with "
                f"{', '.join(RESERVED_PREFIXES)} or end in {', '.join(RESERVED_SUFFIXES)})")
    return None
