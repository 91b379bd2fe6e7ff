"""The operator's control files in the state folder: pause (``searchd pause``) and cancel.

The CLI writes them, the daemon reads and removes them; this module is the one place that
knows their names and contents, so that a daemon that is not running loses no request.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

from searchd.state.files import atomic_write, read_private

log = logging.getLogger(__name__)

PAUSE_FILE = "pause.json"
CANCEL_FILE = "cancel.request"


def request_pause(state_dir: Path, until: float | None) -> None:
    """Pause the daemon until ``until`` (epoch seconds), or until resumed when None."""
    atomic_write(state_dir / PAUSE_FILE, json.dumps({"until": until}).encode())


def clear_pause(state_dir: Path) -> None:
    (state_dir / PAUSE_FILE).unlink(missing_ok=True)


def read_operator_pause(state_dir: Path, now: float | None = None) -> float | None:
    """The operator pause deadline (epoch seconds, inf = until resumed), or None.

    An expired pause file is removed, so that it cannot come back when the clock is set back.
    """
    path = state_dir / PAUSE_FILE
    try:
        raw = read_private(path)
    except FileNotFoundError:
        return None
    except OSError:  # a folder, a link, unreadable: the operator's wish is unclear, stay paused
        return math.inf
    try:
        until = json.loads(raw).get("until")
        until = None if until is None else float(until)
    except (ValueError, TypeError, AttributeError):
        return math.inf  # unreadable: stay paused rather than run against the operator's wish
    if until is None or math.isnan(until):
        return math.inf
    if until > (time.time() if now is None else now):
        return until
    try:
        if path.read_bytes() == raw:  # not replaced by a new `searchd pause` meanwhile
            path.unlink()
    except OSError as e:
        log.warning("%s: cannot remove the expired operator pause: %s", path, e)
    return None


def request_cancel(job_dir: Path) -> None:
    atomic_write(job_dir / CANCEL_FILE, b"")


def cancel_requested(job_dir: Path) -> bool:
    return (job_dir / CANCEL_FILE).exists()


def clear_cancel(job_dir: Path) -> None:
    (job_dir / CANCEL_FILE).unlink(missing_ok=True)
