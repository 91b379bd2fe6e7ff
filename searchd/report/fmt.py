"""Small HTML and number formatting helpers shared by the report's sections."""

from __future__ import annotations

import html
import json
import math
import time
from collections.abc import Iterable
from typing import Any

from searchd.report.stats import Comparison


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def score(v: float | None, digits: int = 4) -> str:
    if v is None or not math.isfinite(v):
        return "—"
    return f"{v:.{digits}f}"


def pm(mean: float | None, std: float | None) -> str:
    if mean is None or not math.isfinite(mean):
        return "—"
    return f"{score(mean)} ± {score(std)}"


def seconds(s: float | None) -> str:
    """A duration as people read it: 0.012 s, 42 s, 3 min 05 s, 2 h 07 min, 1 d 3 h."""
    if s is None or not math.isfinite(s):
        return "—"
    if s < 1:
        return f"{s * 1000:.1f} ms" if s < 0.1 else f"{s:.2f} s"
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(int(round(s)), 60)
    if m < 60:
        return f"{m} min {sec:02d} s"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h} h {m:02d} min"
    d, h = divmod(h, 24)
    return f"{d} d {h} h"


def when(epoch: float | None) -> str:
    """An instant in UTC (the report reads the same wherever it is opened or made)."""
    if epoch is None or not epoch:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def params_text(p: dict[str, Any] | None) -> str:
    return "—" if p is None else json.dumps(p, sort_keys=True, default=str)


def verdict(c: Comparison | None, is_best: bool) -> str:
    """The "vs best" cell: best, indistinguishable from it, or worse, with the p-value."""
    if is_best:
        return '<span class="tag best">best</span>'
    if c is None or math.isnan(c.p):
        return '<span class="tag">n/a</span>'
    if c.indistinguishable:
        return f'<span class="tag same">≈ best</span> <small>p = {c.p:.2f}</small>'
    return f'<span class="tag worse">worse</span> <small>p = {c.p:.3f}</small>'


def table(head: Iterable[str], rows: Iterable[Iterable[str]], cls: str = "") -> str:
    """An HTML table; cells are HTML already (escape what is data)."""
    h = "".join(f"<th>{c}</th>" for c in head)
    body = "\n".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{h}</tr></thead>\n<tbody>\n{body}\n</tbody></table>'


def bar(done: int, total: int) -> str:
    pct = 100.0 * done / total if total else 0.0
    return (f'<div class="bar" title="{pct:.1f}%"><div style="width:{min(pct, 100):.1f}%">'
            f'</div></div>')
