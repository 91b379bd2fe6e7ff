"""A halving search's rounds: the plan against what ran, and each candidate's path.

A halving type has one row per (candidate, round) in ``cv_results_``, with ``iter`` and
``n_resources``; a candidate is the same from round to round when its parameters are,
leaving out a parameter used as the resource (scikit-learn puts it inside ``params``).
The plot draws at most :data:`MAX_LINES` paths and :data:`MAX_POINTS` candidates that
never left the first round, whatever the size of the search.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from searchd.report.gather import ModelView
from searchd.report.svg import margins, plot

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: paths (candidates that reached a second round) drawn at most; the survivors first
MAX_LINES = 200
#: candidates dropped after the first round, drawn as dots, at most
MAX_POINTS = 500
BEST = "#d62728"
SURVIVOR = "#1f77b4"
DROPPED = "#8a929e"
#: the width of the sideways spread of the candidates at each round (in rounds)
SPREAD = 0.24
#: the golden ratio's fraction: offsets k * PHI mod 1 spread evenly for any count
PHI = 0.6180339887498949


@dataclass(frozen=True)
class Round:
    #: from 0, as ``iter`` counts
    index: int
    #: the plan's candidates and resources per candidate
    candidates: int
    resources: int
    #: candidates × folds
    fits: int
    #: candidates with a mean score in this round so far
    scored: int
    #: the best mean score in this round (NaN: none yet)
    best: float


def resource_name(m: ModelView) -> str:
    return str((m.halving or {}).get("resource", "n_samples"))


def rounds(m: ModelView) -> list[Round]:
    """The plan's rounds, each with what has run of it."""
    plan = m.halving or {}
    cands, res = list(plan.get("n_candidates_", [])), list(plan.get("n_resources_", []))
    it = m.rounds if m.rounds is not None else np.full(len(m.params), -1)
    out = []
    for r, (c, n) in enumerate(zip(cands, res, strict=False)):
        rows = np.flatnonzero((it == r) & np.isfinite(m.mean))
        out.append(Round(r, int(c), int(n), int(c) * m.folds.shape[1], int(rows.size),
                         float(m.mean[rows].max()) if rows.size else math.nan))
    return out


def paths(m: ModelView) -> list[list[int]]:
    """Per candidate, its scored rows in round order; in first-seen order of candidates."""
    it = m.rounds
    if it is None:
        return []
    resource = resource_name(m)
    by_key: dict[str, list[int]] = {}
    for i in np.flatnonzero((it >= 0) & np.isfinite(m.mean)):
        p: dict[str, Any] = {k: v for k, v in m.params[i].items() if k != resource}
        by_key.setdefault(json.dumps(p, sort_keys=True, default=str), []).append(int(i))
    return [sorted(rows, key=lambda i: (int(it[i]), i)) for rows in by_key.values()]


def rounds_plot(m: ModelView, uid: str) -> str:
    """Mean score per candidate across the rounds: a line from round to round, the
    survivors of the last round in colour, the best starred."""
    assert m.rounds is not None
    it = m.rounds
    plan = rounds(m)
    last = len(plan) - 1
    every = paths(m)
    multi = [p for p in every if len(p) > 1]
    # survivors first, then the furthest reached, then the best scored; ties by first row
    multi.sort(key=lambda p: (-int(it[p[-1]]), -float(m.mean[p[-1]]), p[0]))
    lines = multi[:MAX_LINES]
    single = np.array([p[0] for p in every if len(p) == 1], dtype=np.int64)
    if single.size > MAX_POINTS:
        single = single[:: math.ceil(single.size / MAX_POINTS)]
    shown = len(lines) + single.size
    note = "" if shown >= len(every) else f" ({shown:,} of {len(every):,} shown)"
    # ties are common (a few hundred samples score in steps): each candidate gets a fixed
    # small sideways offset, the same in every round, so that its line stays its own
    x = it.astype(float)
    for k, p in enumerate(every):
        x[p] += ((k * PHI) % 1.0 - 0.5) * SPREAD

    def draw(fig: Figure) -> None:
        from matplotlib.collections import LineCollection

        ax = fig.add_subplot()
        if single.size:
            ax.plot(x[single], m.mean[single], marker="o", ms=3, ls="none", color=DROPPED,
                    alpha=0.5, label=f"dropped after round 1{note}")
        if lines:
            segs = [np.column_stack([x[p], m.mean[p]]) for p in lines]
            survived = [int(it[p[-1]]) == last for p in lines]
            colors = [SURVIVOR if s else DROPPED for s in survived]
            ax.add_collection(LineCollection(segs, colors=colors, linewidths=1.0,
                                             alpha=0.7))
            ends = np.array([p[-1] for p in lines])
            ax.plot(x[ends], m.mean[ends], marker="o", ms=3, ls="none", color=DROPPED,
                    alpha=0.7)
            if any(survived):
                ax.plot([], [], color=SURVIVOR, label="reached the last round")
            if not all(survived):
                ax.plot([], [], color=DROPPED, label="dropped later")
        if m.best is not None and it[m.best] >= 0:
            ax.plot([x[m.best]], [m.mean[m.best]], marker="*", ms=11, color=BEST,
                    ls="none", label="best candidate")
        ax.set_xticks(range(len(plan)),
                      [f"{r.index + 1}\n{r.resources:,}" for r in plan])
        ax.set_xlim(-0.4, max(last, 0) + 0.4)
        ax.grid(False, axis="x")
        ax.set_xlabel(f"round (and {resource_name(m)} per candidate)")
        ax.set_ylabel(f"mean CV {m.scorer}")
        ax.margins(y=0.1)
        ax.legend(loc="lower right", framealpha=0.8, frameon=True)
        margins(fig, 6, 8)
    return plot(draw, uid, f"{m.name}: mean CV {m.scorer} per candidate across the rounds")
