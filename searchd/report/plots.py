"""The report's plots, each a function from plain data to an inline ``<svg>``.

The number of SVG elements is bounded whatever the number of candidates: profiles have
one point per parameter value, scatter plots a bounded sample, heatmaps one image.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from searchd.report.axes import ParamAxis
from searchd.report.gather import ModelView
from searchd.report.svg import category_ticks, log_x, margins, plot
from searchd.report.timeline import TimelinePoint

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: at most this many points in a scatter plot (the frontier and the best first)
MAX_SCATTER = 500
#: at most this many x positions in a profile (more numeric values are binned)
MAX_PROFILE = 300
#: a heatmap cell shows its value up to this many cells
ANNOTATE_CELLS = 150
BEST = "#d62728"
LINE = "#1f77b4"

# --- the job --------------------------------------------------------------------------------

def timeline(points: list[TimelinePoint], fits_total: int, uid: str) -> str:
    """Fits done against time since the first point, pauses shaded by reason."""
    t0 = points[0].at
    span = max(points[-1].at - t0, 1e-9)
    unit, scale = ("h", 3600.0) if span >= 3 * 3600 else ("min", 60.0) if span >= 180 \
        else ("s", 1.0)
    x = np.array([(p.at - t0) / scale for p in points])
    y = np.array([p.fits_done for p in points])

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        ax.step(x, y, where="post", color=LINE, label="fits done")
        if fits_total:
            ax.axhline(fits_total, color="0.5", ls="--", lw=0.8, label=f"needed ({fits_total:,})")
        colors = ["#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
        seen: dict[str, str] = {}
        for start, end, reason in _pauses(points):
            label = None if reason in seen else f"paused: {reason[:50]}"
            color = seen.setdefault(reason, colors[min(len(seen), len(colors) - 1)])
            ax.axvspan((start - t0) / scale, (end - t0) / scale, color=color, alpha=0.25,
                       lw=0, label=label)
        ax.set_xlabel(f"time since the first record ({unit})")
        ax.set_ylabel("fits done")
        ax.set_ylim(bottom=0)
        ax.legend(loc="lower right")
        margins(fig, len(f"{max(int(y.max()), fits_total):,}"))
    return plot(draw, uid, "fits done over time", size=(11.0, 3.0))


def _pauses(points: list[TimelinePoint]) -> list[tuple[float, float, str]]:
    """(start, end, reason) of each run of points with the same pause reason."""
    out: list[tuple[float, float, str]] = []
    for i, p in enumerate(points):
        if p.paused is None:
            continue
        end = points[i + 1].at if i + 1 < len(points) else p.at
        if out and out[-1][2] == p.paused and out[-1][1] == p.at:
            out[-1] = (out[-1][0], end, p.paused)
        else:
            out.append((p.at, end, p.paused))
    return out


# --- one model type -------------------------------------------------------------------------

def profile(m: ModelView, axis: ParamAxis, uid: str) -> str:
    """For each value of one parameter: the best mean score with it (± its std over the
    folds), and the range of the means over the other parameters' values."""
    ok = np.isfinite(m.mean) & (axis.codes >= 0)
    n = len(axis.values)
    best = np.full(n, np.nan)
    best_std = np.full(n, np.nan)
    lo = np.full(n, np.nan)
    for c in range(n):
        idx = np.flatnonzero(ok & (axis.codes == c))
        if idx.size:
            j = idx[np.argmax(m.mean[idx])]
            best[c], best_std[c] = m.mean[j], m.std[j]
            lo[c] = m.mean[idx].min()
    x = np.array(axis.values, dtype=float) if axis.numeric else np.arange(n, dtype=float)
    if axis.numeric and n > MAX_PROFILE:
        x, best, best_std, lo = _bin(x, best, best_std, lo)
    has = np.isfinite(best)
    x, best, best_std, lo = x[has], best[has], best_std[has], lo[has]
    best_code = int(axis.codes[m.best]) if m.best is not None else -1

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        if np.any(lo < best) and axis.numeric:
            ax.fill_between(x, lo, best, color=LINE, alpha=0.12, lw=0,
                            label="range over the other parameters")
        elif np.any(lo < best):
            ax.vlines(x, lo, best, color=LINE, alpha=0.18, lw=10,
                      label="range over the other parameters")
        ax.errorbar(x, best, yerr=best_std, color=LINE, marker="o", ms=3, lw=1,
                    capsize=2, elinewidth=0.7, ls="-" if axis.numeric else "none",
                    label="best mean ± std over folds")
        if best_code >= 0 and m.best is not None:
            bx = axis.values[best_code] if axis.numeric else best_code
            ax.plot([bx], [m.mean[m.best]], marker="*", ms=11, color=BEST, ls="none",
                    label="best candidate")
        if axis.log:
            log_x(ax)
        rotated = 0
        if not axis.numeric:
            rotated = category_ticks(ax, "x", [axis.label(i) for i in range(n)])
            ax.set_xlim(-0.6, n - 0.4)
        ax.set_xlabel(axis.name)
        ax.set_ylabel(f"mean CV {m.scorer}")
        ax.margins(0.06, 0.1)
        ax.legend(loc="best", framealpha=0.8, frameon=True)
        margins(fig, 6, rotated)
    return plot(draw, uid, f"{m.name}: mean CV {m.scorer} against {axis.name}")


def _bin(x: np.ndarray, *ys: np.ndarray) -> tuple[np.ndarray, ...]:
    """Many x values in MAX_PROFILE groups of equal count: the x median, the best y."""
    groups = np.array_split(np.arange(x.size), MAX_PROFILE)
    out = [np.array([np.median(x[g]) for g in groups])]
    best, std, lo = ys
    for_best = [g[np.nanargmax(best[g])] if np.isfinite(best[g]).any() else g[0]
                for g in groups]
    out += [best[for_best], std[for_best],
            np.array([np.nanmin(lo[g]) if np.isfinite(lo[g]).any() else np.nan
                      for g in groups])]
    return tuple(out)


def heatmap(m: ModelView, ax_x: ParamAxis, ax_y: ParamAxis, uid: str) -> str:
    """Mean score over a grid of two parameters (the best over any others), one image."""
    grid = np.full((len(ax_y.values), len(ax_x.values)), np.nan)
    ok = np.flatnonzero(np.isfinite(m.mean) & (ax_x.codes >= 0) & (ax_y.codes >= 0))
    # several candidates per cell (other parameters): each cell shows its best; written in
    # ascending order with a loop, since a fancy-indexed assignment's order is unspecified
    for i in ok[np.argsort(m.mean[ok], kind="stable")]:
        grid[ax_y.codes[i], ax_x.codes[i]] = m.mean[i]

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        img = ax.imshow(grid, origin="lower", aspect="auto", interpolation="nearest")
        fig.colorbar(img, ax=ax, label=f"mean CV {m.scorer}", fraction=0.06, pad=0.02)
        if grid.size <= ANNOTATE_CELLS:
            mid = np.nanmean(grid) if np.isfinite(grid).any() else 0.0
            for (r, c), v in np.ndenumerate(grid):
                if np.isfinite(v):
                    ax.text(c, r, f"{v:.3f}", ha="center", va="center", fontsize=7,
                            color="black" if v > mid else "white")
        if m.best is not None and ax_x.codes[m.best] >= 0 and ax_y.codes[m.best] >= 0:
            from matplotlib.patches import Rectangle

            ax.add_patch(Rectangle((ax_x.codes[m.best] - 0.5, ax_y.codes[m.best] - 0.5), 1, 1,
                                   fill=False, ec=BEST, lw=2.5))
        ylabels = [ax_y.label(i) for i in range(len(ax_y.values))]
        rotated = category_ticks(ax, "x", [ax_x.label(i) for i in range(len(ax_x.values))])
        category_ticks(ax, "y", ylabels)
        ax.set_xlabel(ax_x.name)
        ax.set_ylabel(ax_y.name)
        ax.grid(False)
        margins(fig, max(map(len, ylabels)), rotated, right=0.75)
    return plot(draw, uid, f"{m.name}: mean CV {m.scorer} over {ax_x.name} and {ax_y.name}")


def frontier_indices(fit_time: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """The cheap-and-good frontier: candidates no faster candidate scores as well as."""
    idx = np.flatnonzero(np.isfinite(fit_time) & np.isfinite(mean))
    idx = idx[np.lexsort((-mean[idx], fit_time[idx]))]
    out, top = [], -math.inf
    for i in idx:
        if mean[i] > top:
            out.append(i)
            top = mean[i]
    return np.array(out, dtype=np.int64)


def sample(m: ModelView, frontier: np.ndarray, limit: int = MAX_SCATTER) -> np.ndarray:
    """At most ``limit`` candidates to scatter: the frontier, the best ranked ones, and an
    even stride through the rest (deterministic)."""
    ranked = m.evaluated
    if ranked.size <= limit:
        return ranked
    keep = dict.fromkeys(frontier.tolist())
    keep.update(dict.fromkeys(ranked[: limit // 4].tolist()))
    rest = ranked[limit // 4:]
    room = max(limit - len(keep), 1)
    keep.update(dict.fromkeys(rest[:: math.ceil(rest.size / room)].tolist()))
    return np.array(list(keep), dtype=np.int64)


def fit_time(m: ModelView, uid: str) -> str:
    """Mean score against mean fit time, with the frontier."""
    front = frontier_indices(m.fit_time, m.mean)
    pts = sample(m, front)
    shown = "" if pts.size >= m.evaluated.size else \
        f" ({pts.size:,} of {m.evaluated.size:,} shown)"

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        ax.plot(m.fit_time[pts], m.mean[pts], marker="o", ms=3.5, ls="none", color=LINE,
                alpha=0.6, label=f"candidates{shown}")
        if front.size:
            ax.step(m.fit_time[front], m.mean[front], where="post", color="#2ca02c",
                    lw=1.2, label="frontier: nothing faster scores better")
        if m.best is not None:
            ax.plot([m.fit_time[m.best]], [m.mean[m.best]], marker="*", ms=11,
                    color=BEST, ls="none", label="best candidate")
        t = m.fit_time[pts]  # what is drawn: a log axis over it then has a labelled tick
        t = t[np.isfinite(t) & (t > 0)]
        if t.size and t.max() / t.min() > 10:
            log_x(ax)
        ax.set_xlabel("mean fit time (s)")
        ax.set_ylabel(f"mean CV {m.scorer}")
        ax.margins(0.06, 0.1)
        ax.legend(loc="best", framealpha=0.8, frameon=True)
        margins(fig)
    return plot(draw, uid, f"{m.name}: mean CV {m.scorer} against fit time")
