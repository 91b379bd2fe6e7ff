"""Values quoted in job-file errors: clipped to one short line, control characters escaped."""

from __future__ import annotations

import json
from typing import Any

#: longest value quoted in an error message (a message is one line of a log or status)
SHOW_CHARS = 80


def show(v: Any) -> str:
    """A value as the job file might have written it, clipped for a one-line message."""
    if isinstance(v, dict):
        return clip("{" + ", ".join(f"{k} = {json.dumps(x)}" for k, x in v.items()) + "}")
    return clip(json.dumps(v) if isinstance(v, (str, int, float, bool)) or v is None
                 else repr(v))


def brief(v: Any) -> str:
    """repr(v), clipped for a one-line message."""
    return clip(repr(v))


def clip(s: str, limit: int = SHOW_CHARS) -> str:
    """At most ``limit`` characters, on one line: control characters escaped."""
    if not s.isprintable():
        s = s.encode("unicode_escape").decode("ascii")
    return s if len(s) <= limit else s[:limit] + "..."
