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

The cache is per process, so the tasks that share a (fold, preprocessing) go to one
process one after another: :func:`runs` merges them into *runs*, each a unit of work
like a warm-start chain (fitted in one process, its outcomes one by one), cut into pieces
small enough that the longest-first order still ends on short work
(``tests/test_share_prefit.py`` counts the fits the real runner makes).
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
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


def prefix_key(est: Any) -> str | None:
    """The key of a candidate's preprocessing steps (their parameters), or None when they
    are not shared (no preprocessing step, or one that is not deterministic)."""
    if not isinstance(est, Pipeline) or len(est.steps) < 2:
        return None
    prefix = est.steps[:-1]
    if not all(s is None or s == "passthrough" or _deterministic(s) for _, s in prefix):
        return None
    return str(joblib.hash([(n, s) for n, s in prefix]))


def shared_key(est: Any, train: np.ndarray) -> str | None:
    """The cache key of a candidate's preprocessing on a fold's training rows, or None when
    it is not shared."""
    prefix = prefix_key(est)
    if prefix is None:
        return None
    rows = hashlib.sha256(np.ascontiguousarray(train).tobytes()).hexdigest()[:20]
    return f"{rows}:{prefix}"


#: (candidate row, fold)
Pair = tuple[int, int]
#: runs are cut so that a batch has at least this many units per process
UNITS_PER_PROCESS = 4


class Run(list[Pair]):
    """Single tasks of one fold that share their preprocessing: fitted one after another in
    one process (its cache fits the steps once), each an outcome of its own."""


def runs(template: Any, units: Sequence[list[Pair]], built: Mapping[int, dict[str, Any]],
         processes: int) -> list[list[Pair]]:
    """``units`` (chains and single tasks) with the single tasks that share a (fold,
    preprocessing key) merged into :class:`Run` s, each in the place of its first task.

    A run holds at most ``ceil(tasks / (4 × processes))`` tasks, a long one cut into
    near-equal pieces: a piece costs at most one more fit of the steps, and the order
    still has enough units to end on short ones. Chains are kept as they are (a chain fits
    its preprocessing once already)."""
    cap = max(1, math.ceil(sum(len(u) for u in units) / (UNITS_PER_PROCESS * max(1, processes))))
    keys: dict[int, str | None] = {}
    for u in units:
        if len(u) == 1 and u[0][0] not in keys:
            keys[u[0][0]] = _candidate_key(template, built[u[0][0]])
    out: list[list[Pair]] = []
    groups: dict[tuple[int, str], list[Pair]] = {}
    for u in units:
        key = keys.get(u[0][0]) if len(u) == 1 else None
        if key is None:
            out.append(u)
            continue
        g = (u[0][1], key)
        if g not in groups:
            groups[g] = Run()
            out.append(groups[g])
        groups[g].append(u[0])
    return [p for u in out for p in (_pieces(u, cap) if isinstance(u, Run) else [u])]


def _pieces(run: Run, cap: int) -> list[list[Pair]]:
    """``run`` as near-equal runs of at most ``cap`` tasks (a single task: a plain unit)."""
    k = math.ceil(len(run) / cap)
    size, extra = divmod(len(run), k)
    out: list[list[Pair]] = []
    at = 0
    for n in range(k):
        m = size + (1 if n < extra else 0)
        out.append(Run(run[at:at + m]) if m > 1 else list(run[at:at + m]))
        at += m
    return out


def _candidate_key(template: Any, params: dict[str, Any]) -> str | None:
    try:
        return prefix_key(clone(template).set_params(**params))
    except (ValueError, TypeError, AttributeError):  # the fit will say what is wrong
        return None


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


__all__ = ["DEFAULT_MB", "PrefixCache", "Run", "fit_prefix", "fit_shared", "make_cache",
           "prefix_fits", "prefix_key", "runs", "shared_key"]
