"""matplotlib figures as inline SVG: deterministic, small, safe to paste into a page.

matplotlib is imported here only, lazily (``import searchd`` and the supervisor never
load it). Every plot is a :class:`~matplotlib.figure.Figure` of its own (no pyplot, no
global figure state) saved under fixed rcParams: ``svg.hashsalt`` makes the ids the same
on every run, no date or creator is written, and text stays text (``svg.fonttype =
none``). Ids get a per-plot prefix, since the page holds many SVGs in one id space.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

RC: dict[str, Any] = {
    "svg.hashsalt": "searchd-report", "svg.fonttype": "none", "svg.image_inline": True,
    "font.size": 9, "font.family": "sans-serif", "axes.titlesize": 10,
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
    "grid.alpha": 0.3, "grid.linewidth": 0.6, "legend.fontsize": 8, "legend.frameon": False,
    "path.simplify": True, "image.cmap": "viridis",
}
#: tick labels per categorical axis
MAX_TICKS = 16

_XML_HEAD = re.compile(r"\A.*?(?=<svg)", re.S)
_DROP = re.compile(r"<metadata>.*?</metadata>\s*|<style type=\"text/css\">.*?</style>\s*",
                   re.S)
_SIZE = re.compile(r'<svg([^>]*?) width="[^"]*" height="[^"]*"')
_IDS = re.compile(r'(id="|url\(#|href="#)')


@contextmanager
def _rc() -> Iterator[None]:
    import matplotlib

    with matplotlib.rc_context(RC):  # type: ignore[arg-type]  # keys typed as Literals
        yield


def _figure(width: float = 6.0, height: float = 3.3) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def margins(fig: Figure, ylabel_chars: int = 6, rotated_chars: int = 0,
             right: float = 0.3) -> None:
    """Fixed margins in inches, from the longest tick labels: matplotlib's layout engines
    measure every text and cost about half of the drawing time."""
    w, h = fig.get_size_inches()
    left = 0.45 + 0.075 * max(ylabel_chars, 4)
    bottom = 0.5 + (0.045 * min(rotated_chars, 40) if rotated_chars else 0.0)
    fig.subplots_adjust(left=left / w, right=1 - right / w, bottom=min(bottom / h, 0.5),
                        top=1 - 0.12 / h)


def to_svg(fig: Figure, uid: str, label: str) -> str:
    """The figure as an ``<svg>`` element for inline use: its ids prefixed with ``uid``
    (ids must be unique across the page), sized by CSS, without the XML prologue."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None}, dpi=144)
    text = _DROP.sub("", _XML_HEAD.sub("", buf.getvalue(), count=1))
    text = _SIZE.sub(r'<svg\1', text, count=1)
    text = _IDS.sub(lambda m: f"{m.group(1)}{uid}-", text)
    safe = label.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
    return text.replace("<svg", f'<svg class="plot" role="img" aria-label="{safe}"', 1)


def plot(draw: Callable[[Figure], None], uid: str, label: str,
         size: tuple[float, float] = (6.0, 3.3)) -> str:
    """``draw`` on a fresh figure under the report's rcParams, as inline SVG."""
    with _rc():
        fig = _figure(*size)
        draw(fig)
        return to_svg(fig, uid, label)


def log_x(ax: Axes) -> None:
    """A log x axis without minor ticks (each tick is costly to draw, and clutters)."""
    from matplotlib.ticker import NullLocator

    ax.set_xscale("log")
    ax.xaxis.set_minor_locator(NullLocator())


def category_ticks(ax: Axes, which: str, labels: list[str]) -> int:
    """Ticks at the categories (every n-th when there are many); returns the length of
    the longest label when the x labels are rotated (for the margin), else 0."""
    step = max(1, math.ceil(len(labels) / MAX_TICKS))
    pos = list(range(0, len(labels), step))
    shown = [labels[i] for i in pos]
    longest = max(map(len, shown))
    if which == "y":
        ax.set_yticks(pos, shown)
        ax.grid(False, axis="y")
        return 0
    rotate = len(pos) * max(longest, 3) > 60
    ax.set_xticks(pos, shown, rotation=30 if rotate else 0,
                  ha="right" if rotate else "center")
    ax.grid(False, axis="x")
    return longest if rotate else 0
