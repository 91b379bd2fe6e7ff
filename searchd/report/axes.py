"""The searched parameters of a model type as plot axes, and the edge-of-grid advice.

Values come as ``cv_results_["params"]`` holds them (the job file's JSON form), so a
value may be a number, a string, a bool, None, or a dict (an estimator-valued parameter).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: a candidate that lacks the parameter (one dict of a list of grids) has this code
MISSING = -1
#: how many values an edge warning proposes to add
EXTEND_BY = 2


@dataclass(frozen=True)
class ParamAxis:
    """One parameter that takes more than one value among the candidates."""

    name: str
    #: the distinct values, numbers ascending (then everything else in first-seen order)
    values: list[Any]
    #: every value is a number (no bool, no None)
    numeric: bool
    #: the values are positive and spaced more evenly on a log scale than a linear one
    #: (or drawn from a log-uniform distribution)
    log: bool
    #: per candidate, the index of its value in ``values`` (MISSING if it has none)
    codes: np.ndarray

    def label(self, i: int) -> str:
        return value_text(self.values[i])


def value_text(v: Any, limit: int = 40) -> str:
    """A parameter value as a short label (floats to 6 significant digits)."""
    if isinstance(v, float):
        return f"{v:.6g}"
    text = json.dumps(v, sort_keys=True, default=str) if not isinstance(v, str) else v
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _key(v: Any) -> tuple[str, Any]:
    """A hashable key that tells 1, 1.0 and True apart, and dicts by their content."""
    if isinstance(v, (str, int, float, bool)) or v is None:
        return type(v).__name__, v
    return "json", json.dumps(v, sort_keys=True, default=str)


def build_axes(params: Sequence[dict[str, Any]],
               log_names: frozenset[str] = frozenset()) -> list[ParamAxis]:
    """The parameters that vary among ``params``, in name order; those in ``log_names``
    (drawn log-uniformly) get a log axis whatever their sampled values look like."""
    names = sorted({k for p in params for k in p})
    axes: list[ParamAxis] = []
    for name in names:
        index: dict[tuple[str, Any], int] = {}
        values: list[Any] = []
        codes = np.empty(len(params), dtype=np.int64)
        for i, p in enumerate(params):
            if name not in p:
                codes[i] = MISSING
                continue
            k = _key(p[name])
            c = index.get(k)
            if c is None:
                c = index[k] = len(values)
                values.append(p[name])
            codes[i] = c
        if len(values) < 2:
            continue
        numeric = all(_is_number(v) for v in values)
        if numeric:
            order = sorted(range(len(values)), key=lambda j: values[j])
            remap = np.empty(len(values), dtype=np.int64)
            remap[order] = np.arange(len(values))
            values = [values[j] for j in order]
            codes = np.where(codes == MISSING, MISSING, remap[np.maximum(codes, 0)])
        log = numeric and (log_spaced(values) or (name in log_names and values[0] > 0))
        axes.append(ParamAxis(name, values, numeric, log, codes))
    return axes


def log_spaced(values: Sequence[float]) -> bool:
    """Positive, at least 3 values over at least a factor of 10, and more even in log."""
    v = np.asarray(sorted(values), dtype=float)
    if v.size < 3 or v[0] <= 0 or v[-1] / v[0] < 10:
        return False
    lin, lg = np.diff(v), np.diff(np.log(v))
    return _spread(lg) < _spread(lin)


def _spread(steps: np.ndarray) -> float:
    return float(steps.std() / steps.mean()) if steps.mean() > 0 else math.inf


@dataclass(frozen=True)
class EdgeWarning:
    param: str
    best: Any
    #: "smallest" or "largest"
    side: str
    #: the values to add beyond the edge, nearest first
    extend: list[Any]

    def text(self) -> str:
        more = ", ".join(value_text(v) for v in self.extend)
        direction = "down" if self.side == "smallest" else "up"
        return (f"The best {self.param} = {value_text(self.best)} is the {self.side} value "
                f"searched: the optimum may lie beyond it. Extend the grid {direction}, "
                f"e.g. with {more}.")


def best_per_value(axis: ParamAxis, mean: np.ndarray) -> np.ndarray:
    """The best mean score among the candidates with each value (NaN: none scored)."""
    out = np.full(len(axis.values), -np.inf)
    ok = np.isfinite(mean) & (axis.codes >= 0)
    np.maximum.at(out, axis.codes[ok], mean[ok])
    return np.where(np.isneginf(out), np.nan, out)


def edge_warning(axis: ParamAxis, best_value: Any,
                 profile: np.ndarray | None = None) -> EdgeWarning | None:
    """A warning when the best value of a numeric parameter sits at an end of its grid.

    The proposed values continue the grid's spacing (its ratio on a log grid, its step
    otherwise), as integers for an integer parameter. Below a non-negative grid's
    smallest value they halve towards zero instead of crossing it; with nothing left to
    propose (``n_neighbors = 1``, a best of 0) there is no warning: the grid already ends
    at the parameter's natural bound. With ``profile`` (:func:`best_per_value`), a best
    value that does no better than its neighbour in the grid is no reason to extend it:
    the parameter makes no difference there (``leaf_size`` of a k-NN, say).
    """
    if not axis.numeric or len(axis.values) < 3 or not _is_number(best_value):
        return None
    vals = axis.values
    if best_value == vals[0]:
        side, edge, nxt, inner = "smallest", vals[0], vals[1], 1
    elif best_value == vals[-1]:
        side, edge, nxt, inner = "largest", vals[-1], vals[-2], len(vals) - 2
    else:
        return None
    if profile is not None:
        at_edge, beside = profile[0 if inner == 1 else -1], profile[inner]
        if not at_edge > beside + 1e-12:  # NaN beside: unknown, so no claim either
            return None
    integer = all(isinstance(v, int) for v in vals)
    out: list[Any] = []
    for n in range(1, EXTEND_BY + 1):
        v: float = edge * (edge / nxt) ** n if axis.log else edge + (edge - nxt) * n
        if vals[0] >= 0 and v <= 0:
            if edge <= 0:  # a grid from 0 up whose best is 0: nothing lies below
                break
            v = edge / 2 ** n  # a step would cross zero: approach it by halves instead
        w = int(round(v)) if integer else _round(v)
        if (vals[0] >= 0 and w <= 0) or w == edge or w in out:
            continue
        out.append(w)
    if not out:
        return None
    return EdgeWarning(axis.name, best_value, side, out)


def _round(v: float) -> float:
    """Six significant digits: 0.1 * 0.1 shows as 0.01, not 0.010000000000000002."""
    return float(f"{v:.6g}")
