"""SIGHUP: the configuration read again, merged with what only a restart may change."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from searchd.errors import SearchdError
from searchd.settings import Settings

log = logging.getLogger("searchd")

#: settings that only a restart changes (publishing sets the state folder's mode at the start)
RESTART_ONLY = ("state_dir", "jobs_dir", "publish", "publish_dir")


def reloaded(old: Settings, read: Callable[[], Settings]
             ) -> tuple[Settings, frozenset[str]] | None:
    """The new settings and the names that changed, or None (logged) if they cannot be read.

    Idle settings apply at once; n_jobs, checkpoint_interval, allow_modules and
    max_candidates apply from the next worker start; the directories need a restart.
    """
    try:
        new = read()
    except SearchdError as e:
        log.error("SIGHUP: keeping the running configuration: %s", e)
        return None
    for name in RESTART_ONLY:
        if getattr(new, name) != getattr(old, name):
            log.warning("SIGHUP: %s changes only at a restart (keeping %s)", name,
                        getattr(old, name))
    new = dataclasses.replace(new, **{n: getattr(old, n) for n in RESTART_ONLY})
    changed = [f.name for f in dataclasses.fields(Settings)
               if getattr(new, f.name) != getattr(old, f.name)]
    log.info("SIGHUP: configuration reloaded; changed: %s",
             ", ".join(f"{n}={getattr(new, n)!r}" for n in changed) or "nothing")
    return new, frozenset(changed)


__all__ = ["reloaded"]
