"""searchd: scikit-learn grid searches run by a daemon on idle CPU, with signed checkpoints."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .api import status, submit, wait
from .errors import (
    CheckpointError,
    DataError,
    JobSpecError,
    SearchdError,
    SettingsError,
    StateLockedError,
)

if TYPE_CHECKING:
    from searchd.state.read import JobResults

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "DataError",
    "JobSpecError",
    "SearchdError",
    "SettingsError",
    "StateLockedError",
    "load_results",
    "status",
    "submit",
    "wait",
]


def load_results(job_id: str, state_dir: Any = "state", history: int | None = None
                 ) -> JobResults:
    """The verified results of a job, or of its archive ``history`` (see
    :func:`searchd.state.read.load_results`)."""
    from searchd.state.read import load_results as _load  # lazy: keeps ``import searchd`` light

    return _load(job_id, state_dir, history=history)
