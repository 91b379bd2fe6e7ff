"""Pacing a job's fits in tests: while a file holds a number of seconds, each (candidate, fold)
evaluation sleeps that long before it fits. A job then lasts as long as a test of kills needs
while the machine's cores stay free for the other tests, and the test speeds it up (writes 0)
once its kills are done. The scores are untouched.

``sitecustomize`` (next to this file) applies it in the daemon's and the Dask workers'
processes; a test applies it to Dask workers in its own process with ``monkeypatch``."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def pace_seconds(path: str) -> float:
    try:
        with open(path) as f:
            return float(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0.0


def paced(evaluate: Callable[..., Any], path: str) -> Callable[..., Any]:
    """``evaluate``, waiting the seconds in ``path`` (read at each call) before each call."""
    def call(*args: Any, **kwargs: Any) -> Any:
        time.sleep(pace_seconds(path))
        return evaluate(*args, **kwargs)
    return call
