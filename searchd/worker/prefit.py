"""Shared preprocessing: a pipeline's preprocessing steps fitted once per (fold, their
parameters) in each process, and their output reused by every candidate that shares them.

``Pipeline.fit`` fits each preprocessing step with ``fit_transform`` on the output of the
one before, then fits the model on the last output; the steps do not depend on the model's
parameters. So when a type's candidates differ only in the model's (or a later step's)
parameters, the preprocessing of one fold is the same for all of them. Here it is fitted
the way ``Pipeline`` fits it, kept in a bounded cache, and the candidate's pipeline gets
the fitted steps and its own model fitted on the kept output: the same objects
``Pipeline.fit`` would make, so the scores are the same to the last bit
(``tests/test_prefit.py``). Only steps that are deterministic are shared: every
``random_state`` inside them an integer.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any

import joblib
import numpy as np
from sklearn.base import clone
from sklearn.pipeline import Pipeline

#: the default of the ``preprocess_cache_mb`` setting (MiB per process)
DEFAULT_MB = 256.0


class PrefixCache:
    """Fitted preprocessing steps and their training output, least recently used out first,
    at most ``max_bytes`` of output kept (one per process: the worker, each pool process)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[list[tuple[str, Any]], Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: str) -> tuple[list[tuple[str, Any]], Any] | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item[0], item[1]

    def put(self, key: str, steps: list[tuple[str, Any]], Xt: Any) -> None:
        size = _nbytes(Xt)
        if size is None or size > self.max_bytes:
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = (steps, Xt, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, _, n) = self._items.popitem(last=False)
                self._bytes -= n


def make_cache(mb: float) -> PrefixCache | None:
    """A cache of ``mb`` MiB, or None (0: no sharing)."""
    return PrefixCache(int(mb * 2**20)) if mb > 0 else None


def _nbytes(Xt: Any) -> int | None:
    """The bytes an output holds (arrays, sparse matrices, frames); None when unknown."""
    if isinstance(Xt, np.ndarray):
        return int(Xt.nbytes)
    if hasattr(Xt, "data") and hasattr(Xt, "indices") and hasattr(Xt, "indptr"):
        return int(Xt.data.nbytes + Xt.indices.nbytes + Xt.indptr.nbytes)
    usage = getattr(Xt, "memory_usage", None)
    if callable(usage):
        try:
            return int(usage(deep=True).sum())
        except (TypeError, ValueError):
            return None
    return None


def _deterministic(step: Any) -> bool:
    params = step.get_params(deep=True) if hasattr(step, "get_params") else {}
    for k, v in params.items():
        if k == "random_state" or k.endswith("__random_state"):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
                return False
    return True


def shared_key(est: Any, train: np.ndarray) -> str | None:
    """The cache key of a candidate's preprocessing on a fold's training rows, or None when
    it is not shared (no preprocessing step, or one that is not deterministic)."""
    if not isinstance(est, Pipeline) or len(est.steps) < 2:
        return None
    prefix = est.steps[:-1]
    if not all(s is None or s == "passthrough" or _deterministic(s) for _, s in prefix):
        return None
    rows = hashlib.sha256(np.ascontiguousarray(train).tobytes()).hexdigest()[:20]
    return f"{rows}:{joblib.hash([(n, s) for n, s in prefix])}"


def fit_prefix(est: Pipeline, X: Any, y: Any) -> tuple[list[tuple[str, Any]], Any]:
    """The preprocessing steps fitted as ``Pipeline.fit`` fits them (each ``fit_transform``
    on the previous output, in place), and the last output."""
    Xt = X
    steps = []
    for name, step in est.steps[:-1]:
        if step is None or step == "passthrough":
            steps.append((name, step))
            continue
        Xt = step.fit_transform(Xt, y) if hasattr(step, "fit_transform") else \
            step.fit(Xt, y).transform(Xt)
        steps.append((name, step))
    return steps, Xt


def fit_shared(est: Pipeline, key: str, cache: PrefixCache, X: Any, y: Any) -> None:
    """Fit ``est`` on (X, y), its preprocessing from ``cache`` when another candidate of
    the fold fitted the same, else fitted here and kept."""
    got = cache.get(key)
    if got is None:
        steps, Xt = fit_prefix(est, X, y)
        cache.put(key, steps, Xt)
    else:
        steps, Xt = got
    for k, (name, step) in enumerate(steps):
        est.steps[k] = (name, step)
    est.steps[-1][1].fit(Xt, y)


def prefix_fits(template: Any, candidates: list[dict[str, Any]], folds: int) -> int:
    """For ``validate``: the preprocessing fits a grid's candidates need when shared (one
    per fold and distinct preprocessing), or 0 when nothing is shared."""
    keys = set()
    for params in candidates:
        try:
            est = clone(template).set_params(**params)
        except (ValueError, TypeError, AttributeError):
            return 0
        key = shared_key(est, np.zeros(0, dtype=np.int64))
        if key is None:
            return 0
        keys.add(key)
    return len(keys) * folds


__all__ = ["DEFAULT_MB", "PrefixCache", "fit_prefix", "fit_shared", "make_cache",
           "prefix_fits", "shared_key"]
