"""Where the user service keeps its config, state and jobs (the XDG base directories).

``searchd status`` run from any folder finds the user service's folders through
:func:`find_user_config`; ``searchd service install --user`` writes to the same places.
"""

from __future__ import annotations

import os
from pathlib import Path

#: the system service's config (``searchd service install --system`` writes it)
SYSTEM_CONFIG = Path("/etc/searchd/searchd.toml")


def _xdg(variable: str, fallback: str) -> Path:
    """``$variable`` if it is an absolute path (the spec ignores relative ones), else ~/fallback."""
    value = os.environ.get(variable, "")
    return Path(value) if os.path.isabs(value) else Path.home() / fallback


def user_config_path() -> Path:
    """``$XDG_CONFIG_HOME/searchd/searchd.toml``, by default ~/.config/searchd/searchd.toml."""
    return _xdg("XDG_CONFIG_HOME", ".config") / "searchd" / "searchd.toml"


def user_state_dir() -> Path:
    """``$XDG_STATE_HOME/searchd``, by default ~/.local/state/searchd."""
    return _xdg("XDG_STATE_HOME", ".local/state") / "searchd"


def user_jobs_dir() -> Path:
    """The user service's default jobs folder, ~/searchd/jobs."""
    return Path.home() / "searchd" / "jobs"


def user_unit_dir() -> Path:
    """Where ``systemctl --user`` looks for the user's own units: ~/.config/systemd/user."""
    return _xdg("XDG_CONFIG_HOME", ".config") / "systemd" / "user"


def find_user_config() -> Path | None:
    """The user's config file when it exists, read when no config is named otherwise."""
    try:
        path = user_config_path()
    except RuntimeError:  # no $HOME and no passwd entry: there is no user config to find
        return None
    return path if path.is_file() else None


__all__ = ["SYSTEM_CONFIG", "find_user_config", "user_config_path", "user_jobs_dir",
           "user_state_dir", "user_unit_dir"]
