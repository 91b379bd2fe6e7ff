"""``state/searchd.status.json``: what the daemon says about itself besides the jobs'
summaries, for ``searchd status``. Today: which source of keyboard and mouse activity the
``pause_while_user_active`` rule reads (or that none is available).

The supervisor writes it when that changes (not every sample), and removes it when the rule
is off; with ``publish`` on, a copy goes beside the published job folders, so that the
daemon's group sees it too. The name starts with ``searchd.``, which no job id may.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any

from searchd.settings import Settings
from searchd.state.files import atomic_write, read_private

log = logging.getLogger(__name__)

STATUS_FILE = "searchd.status.json"


def user_activity(rule_seconds: float, sources: tuple[str, ...]) -> dict[str, Any]:
    """The ``user_activity`` entry: the rule's time and the sources that answered."""
    return {"pause_while_user_active": rule_seconds, "sources": list(sources),
            "available": bool(sources)}


def write_status(settings: Settings, doc: dict[str, Any] | None) -> None:
    """Write ``doc`` (None: remove the file); a failure is logged, never raised."""
    from searchd.state import published

    places = [(settings.state_dir, False)]
    if settings.publish:
        places.append((settings.publish_root(), True))
    for folder, shared in places:
        path = folder / STATUS_FILE
        try:
            if doc is None:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                continue
            data = (json.dumps(doc, indent=2) + "\n").encode()
            if shared:
                published.publish_file(published.root_folder(folder), STATUS_FILE, data,
                                       durable=False, root=True)
            else:
                atomic_write(path, data, durable=False)
        except OSError as e:
            log.error("%s: cannot write: %s", path, e.strerror or e)


def read_status(folder: Path) -> dict[str, Any]:
    """What the daemon last wrote in ``folder`` (the state or the published one); {} if
    nothing (or nothing readable) is there."""
    try:
        doc = json.loads(read_private(folder / STATUS_FILE).decode())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


__all__ = ["STATUS_FILE", "read_status", "user_activity", "write_status"]
