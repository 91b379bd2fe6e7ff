"""A random search's sampled points: each drawn value against its score, and two numeric
parameters against each other coloured by score.

Points are :func:`searchd.report.plots.sample`'s bounded, deterministic selection (the
best ranked first); categorical values are spread sideways by a fixed offset per
candidate (no random jitter: the same results draw the same page).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from searchd.report.axes import ParamAxis
from searchd.report.gather import ModelView
from searchd.report.plots import BEST, LINE, sample
from searchd.report.svg import category_ticks, log_x, margins, plot

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: the golden ratio's fraction: offsets i * PHI mod 1 spread evenly for any count
PHI = 0.6180339887498949


def points(m: ModelView, *axes: ParamAxis) -> np.ndarray:
    """The candidates to draw: scored, with a value on every axis, at most MAX_SCATTER."""
    best = np.array([] if m.best is None else [m.best], dtype=np.int64)
    pts = sample(m, best)
    for a in axes:
        pts = pts[a.codes[pts] >= 0]
    return pts


def _x(axis: ParamAxis, idx: np.ndarray) -> np.ndarray:
    if axis.numeric:
        return np.array([axis.values[c] for c in axis.codes[idx]], dtype=float)
    return axis.codes[idx] + ((idx * PHI) % 1.0 - 0.5) * 0.5


def _axis(ax: Axes, axis: ParamAxis, which: str) -> int:
    """Scale and ticks of one parameter's axis; the rotated label length (for margins)."""
    if axis.log:
        if which == "x":
            log_x(ax)
        else:
            from matplotlib.ticker import NullLocator

            ax.set_yscale("log")
            ax.yaxis.set_minor_locator(NullLocator())
    if axis.numeric:
        return 0
    n = len(axis.values)
    labels = [axis.label(i) for i in range(n)]
    (ax.set_xlim if which == "x" else ax.set_ylim)(-0.6, n - 0.4)
    return category_ticks(ax, which, labels)


def value_scatter(m: ModelView, axis: ParamAxis, uid: str) -> str:
    """Every sampled value of one parameter against the candidate's mean score."""
    pts = points(m, axis)
    shown = "" if pts.size >= m.evaluated.size else f" ({pts.size:,} of {m.evaluated.size:,})"

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        ax.plot(_x(axis, pts), m.mean[pts], marker="o", ms=3.5, ls="none", color=LINE,
                alpha=0.6, label=f"sampled candidates{shown}")
        if m.best is not None and axis.codes[m.best] >= 0:
            b = np.array([m.best])
            ax.plot(_x(axis, b), m.mean[b], marker="*", ms=11, color=BEST, ls="none",
                    label="best candidate")
        rotated = _axis(ax, axis, "x")
        ax.set_xlabel(axis.name)
        ax.set_ylabel(f"mean CV {m.scorer}")
        ax.margins(0.06, 0.1)
        ax.legend(loc="best", framealpha=0.8, frameon=True)
        margins(fig, 6, rotated)
    return plot(draw, uid, f"{m.name}: sampled {axis.name} against mean CV {m.scorer}")


def pair(m: ModelView) -> tuple[ParamAxis, ParamAxis] | None:
    """The two numeric parameters to plot against each other: those with the most
    distinct values (ties by name); None with fewer than two."""
    numeric = sorted((a for a in m.axes if a.numeric), key=lambda a: (-len(a.values), a.name))
    return (numeric[0], numeric[1]) if len(numeric) >= 2 else None


def pair_scatter(m: ModelView, ax_x: ParamAxis, ax_y: ParamAxis, uid: str) -> str:
    """Two sampled parameters against each other, each point coloured by its mean score."""
    pts = points(m, ax_x, ax_y)
    # the best drawn last, on top of the others
    pts = pts[np.argsort(m.mean[pts], kind="stable")]

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        sc = ax.scatter(_x(ax_x, pts), _x(ax_y, pts), c=m.mean[pts], s=22, cmap="viridis",
                        edgecolors="none")
        fig.colorbar(sc, ax=ax, label=f"mean CV {m.scorer}", fraction=0.06, pad=0.02)
        if m.best is not None and ax_x.codes[m.best] >= 0 and ax_y.codes[m.best] >= 0:
            b = np.array([m.best])
            ax.plot(_x(ax_x, b), _x(ax_y, b), marker="*", ms=13, color=BEST, mec="black",
                    mew=0.6, ls="none", label="best candidate")
            ax.legend(loc="best", framealpha=0.8, frameon=True)
        _axis(ax, ax_x, "x")
        _axis(ax, ax_y, "y")
        ax.set_xlabel(ax_x.name)
        ax.set_ylabel(ax_y.name)
        ax.margins(0.06, 0.08)
        margins(fig, 7, right=0.75)
    return plot(draw, uid, f"{m.name}: sampled {ax_x.name} and {ax_y.name}, coloured by "
                           f"mean CV {m.scorer}")
