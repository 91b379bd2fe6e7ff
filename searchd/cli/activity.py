"""``searchd status``'s word on the "user at the keyboard" rule: which source of keyboard
and mouse activity the daemon reads for ``pause_while_user_active``, or that none is
available (the daemon writes it in ``searchd.status.json``)."""

from __future__ import annotations

from typing import Any

from searchd.settings import Settings
from searchd.state.daemon_status import read_status


def user_activity_of(settings: Settings) -> dict[str, Any] | None:
    """The rule as the daemon last described it; None when the rule is off.

    When this command's settings turn the rule on but the daemon has said nothing yet
    (not started, or started before the rule was on), ``sources`` and ``available`` are
    None: not known.
    """
    told = read_status(settings.state_dir).get("user_activity")
    if isinstance(told, dict) and isinstance(told.get("sources"), list):
        return {"pause_while_user_active": told.get("pause_while_user_active"),
                "sources": [str(s) for s in told["sources"]],
                "available": bool(told["sources"])}
    if settings.pause_while_user_active:
        return {"pause_while_user_active": settings.pause_while_user_active,
                "sources": None, "available": None}
    return None


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "?"
    return f"{seconds / 60:g}m" if seconds >= 60 and seconds % 60 == 0 else f"{seconds:g}s"


def user_activity_line(entry: dict[str, Any]) -> str:
    """One line: the rule's time and where keyboard and mouse activity comes from."""
    rule = _duration(entry.get("pause_while_user_active"))
    head = f"user at the keyboard (pause_while_user_active {rule}):"
    sources = entry.get("sources")
    if sources is None:
        return f"{head} source not known yet (the daemon has not read one)"
    if not sources:
        return (f"{head} no source of keyboard/mouse activity is available (no logind idle "
                "hint, no PS/2 input interrupts); the rule cannot pause anything")
    return f"{head} activity read from {', '.join(sources)}"


__all__ = ["user_activity_line", "user_activity_of"]
