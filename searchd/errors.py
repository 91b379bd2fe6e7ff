"""The one exception hierarchy of searchd.

The CLI turns any :class:`SearchdError` into one line on stderr and the class's
``exit_code``; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class SearchdError(Exception):
    """Base of every expected searchd failure."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self) -> tuple[type[SearchdError], tuple[str]]:
        # Errors cross the worker/supervisor boundary: keep them picklable.
        return (type(self), (self.message,))

    def __str__(self) -> str:
        return self.message


class SettingsError(SearchdError):
    """A bad daemon configuration file or flag."""

    exit_code = 2


class JobSpecError(SearchdError):
    """A job file that cannot be accepted (syntax, schema, allow-list, size)."""

    exit_code = 3


class DataError(SearchdError):
    """A job's data cannot be loaded (missing file, missing column, bad shape)."""

    exit_code = 3


class CheckpointError(SearchdError):
    """A checkpoint that fails verification or cannot be read or written."""

    exit_code = 4


class StateLockedError(SearchdError):
    """Another process holds the state directory or the job."""

    exit_code = 5


class NotFoundError(SearchdError):
    """A job or model type the user named does not exist (yet)."""

    exit_code = 6


class ServiceError(SearchdError):
    """``searchd service`` cannot install or remove the systemd units (not root, no systemctl)."""
