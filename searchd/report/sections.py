"""The sections of one model type: a function each, listed in :data:`MODEL_SECTIONS`.

A section takes the page's :class:`Context` and a :class:`ModelView` and returns HTML,
or "" when it has nothing to show. Strategy-specific sections (halving's rounds, random
search's sampled points) are in :data:`STRATEGY_SECTIONS` under the strategy's name;
``ModelView.search`` says which one a model type used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from searchd.report import plots, rounds, sampled
from searchd.report.axes import value_text
from searchd.report.fmt import esc, params_text, pm, score, seconds, table, verdict
from searchd.report.gather import JobView, ModelView, compare_top

#: candidates in a model type's table
TOP = 15
#: above this many searched parameters the table shows them as one JSON column
MAX_PARAM_COLUMNS = 6


@dataclass
class Context:
    job: JobView
    _next: int = field(default=0)

    def uid(self) -> str:
        """A fresh, deterministic id prefix for one inline SVG."""
        self._next += 1
        return f"f{self._next}"


Section = Callable[[Context, ModelView], str]


def heading(ctx: Context, m: ModelView) -> str:
    facts = [f"{esc(m.state)}", f"{m.fits_done:,}/{m.fits_total:,} fits",
             f"{m.evaluated.size:,} of {len(m.params):,} candidates scored"]
    if m.errors:
        facts.append(f'<span class="bad">{m.errors:,} failed fit(s), scored NaN</span>')
    best = "" if m.best is None else (
        f"<p>Best CV {esc(m.scorer)}: <b>{pm(m.mean[m.best], m.std[m.best])}</b>"
        f"{_holdout(m)} with <code>{esc(params_text(m.params[m.best]))}</code></p>")
    return (f'<h2 id="model-{esc(m.name)}">{esc(m.name)}</h2>\n'
            f'<p class="facts">{" · ".join(facts)}</p>\n{best}')


def _holdout(m: ModelView) -> str:
    if not m.test_score:
        return ""
    v = m.test_score.get(m.scorer)
    if v is None:
        v = next(iter(m.test_score.values()))
    return f", hold-out <b>{score(v)}</b>"


def edge_warnings(ctx: Context, m: ModelView) -> str:
    return "".join(f'<p class="warn">⚠ {esc(w.text())}</p>\n' for w in m.edges)


def figures(ctx: Context, m: ModelView) -> str:
    if m.best is None:
        return '<p class="none">No candidate has a score yet.</p>'
    figs: list[tuple[str, str]] = []
    # a random search's values are drawn, not a grid: its own section shows each of them
    for axis in m.axes if m.search != "random" else []:
        scale = " (log axis)" if axis.log else ""
        figs.append((plots.profile(m, axis, ctx.uid()),
                     f"Mean CV {esc(m.scorer)} against {esc(axis.name)}{scale}: the best "
                     f"candidate at each value, ± its standard deviation over the folds."))
    if len(m.axes) == 2 and m.search != "random":
        ax_x, ax_y = sorted(m.axes, key=lambda a: -len(a.values))
        figs.append((plots.heatmap(m, ax_x, ax_y, ctx.uid()),
                     f"Mean CV {esc(m.scorer)} over {esc(ax_x.name)} × {esc(ax_y.name)}; "
                     f"the best is framed."))
    figs.append((plots.fit_time(m, ctx.uid()),
                 "Score against fit time: the frontier links the candidates that no "
                 "faster candidate beats."))
    return '<div class="figs">\n' + "\n".join(
        f'<figure>{svg}<figcaption>{cap}</figcaption></figure>' for svg, cap in figs) + \
        "\n</div>"


def top_candidates(ctx: Context, m: ModelView) -> str:
    ranked = m.evaluated
    if not ranked.size:
        return ""
    top = ranked[:TOP]
    vs = compare_top(m, ctx.job.n_train, ctx.job.n_test, top)
    axes = m.axes if len(m.axes) <= MAX_PARAM_COLUMNS else []
    head = ["rank", f"mean CV {esc(m.scorer)} ± std", "folds (min – max)", "mean fit time",
            "vs best", *(["round"] if m.rounds is not None else []), *(esc(a.name) for a in axes)]
    if not axes:
        head.append("parameters")
    rows = []
    for i in top:
        f = m.folds[i]
        spread = (f"{score(float(np.nanmin(f)))} – {score(float(np.nanmax(f)))}"
                  if np.isfinite(f).any() else "—")
        cells = [str(int(m.rank[i])), pm(m.mean[i], m.std[i]), spread,
                 seconds(float(m.fit_time[i])), verdict(vs.get(int(i)), int(i) == m.best)]
        if m.rounds is not None:  # halving: rows of different rounds had different resources
            cells.append(str(int(m.rounds[i]) + 1) if m.rounds[i] >= 0 else "—")
        if axes:
            cells += [esc(value_text(a.values[a.codes[i]])) if a.codes[i] >= 0 else "—"
                      for a in axes]
        else:
            cells.append(f"<code>{esc(params_text(m.params[i]))}</code>")
        rows.append(cells)
    more = "" if ranked.size <= TOP else f" (the top {TOP} of {ranked.size:,})"
    return (f"<h3>Top candidates{more}</h3>\n"
            f"{table(head, rows, 'num')}\n"
            f'<p class="note">Sorted by rank. "≈ best": not significantly worse than the best '
            f"candidate (corrected fold-paired t-test, one-sided, p ≥ 0.05).</p>")


def halving_rounds(ctx: Context, m: ModelView) -> str:
    """The rounds of a successive halving: the plan, what has run, and each candidate's
    score from round to round."""
    plan = rounds.rounds(m)
    if not plan or m.rounds is None:
        return ""
    res = esc(rounds.resource_name(m))
    rows = [[str(r.index + 1), f"{r.candidates:,}", f"{r.resources:,}", f"{r.fits:,}",
             f"{r.scored:,}", score(r.best)] for r in plan]
    total = sum(r.fits for r in plan)
    rows.append(["all", "", "", f"<b>{total:,}</b>", "", ""])
    h = m.halving or {}
    facts = f"factor {esc(value_text(h.get('factor')))}, {res} from " + " to ".join(
        f"{h.get(k, 0):,}" for k in ("min_resources_", "max_resources_"))
    out = (f"<h3>Successive halving: {len(plan)} rounds</h3>\n"
           f'<p class="note">{facts}; each round keeps the best 1/factor of its candidates '
           f"and gives them more {res}.</p>\n"
           + table(["round", "candidates", f"{res} per candidate", "fits", "scored",
                    f"best mean CV {esc(m.scorer)}"], rows, "num"))
    if m.best is None:
        return out
    return (out + '\n<div class="figs"><figure>' + rounds.rounds_plot(m, ctx.uid()) +
            f"<figcaption>Mean CV {esc(m.scorer)} of each candidate across the rounds "
            f"(x: round, and its {res} per candidate): a line per candidate, in colour "
            f"those that reached the last round; the best is starred. Scores of different "
            f"rounds use different resources.</figcaption></figure></div>")


def sampled_points(ctx: Context, m: ModelView) -> str:
    """A random search's draws: each parameter's sampled values against the score, and
    two numeric parameters against each other."""
    if m.best is None or not m.axes:
        return ""
    figs: list[tuple[str, str]] = []
    for axis in m.axes:
        how = "drawn from a distribution" if axis.name in m.drawn else "drawn from a list"
        scale = ", log axis" if axis.log else ""
        figs.append((sampled.value_scatter(m, axis, ctx.uid()),
                     f"Each sampled {esc(axis.name)} ({how}{scale}) against its candidate's "
                     f"mean CV {esc(m.scorer)}; the best is starred."))
    two = sampled.pair(m)
    if two is not None:
        ax_x, ax_y = two
        figs.append((sampled.pair_scatter(m, ax_x, ax_y, ctx.uid()),
                     f"The sampled {esc(ax_x.name)} and {esc(ax_y.name)}, coloured by mean "
                     f"CV {esc(m.scorer)}; the best is starred."))
    return (f"<h3>Sampled points: {m.evaluated.size:,} candidates drawn at random</h3>\n"
            '<div class="figs">\n' + "\n".join(
                f"<figure>{svg}<figcaption>{cap}</figcaption></figure>" for svg, cap in figs)
            + "\n</div>")


MODEL_SECTIONS: list[Section] = [heading, edge_warnings, figures, top_candidates]
#: sections shown only for one search strategy, after the others
STRATEGY_SECTIONS: dict[str, list[Section]] = {
    "grid": [], "halving": [halving_rounds], "random": [sampled_points]}


def model_section(ctx: Context, m: ModelView) -> str:
    parts = [s(ctx, m) for s in (*MODEL_SECTIONS, *STRATEGY_SECTIONS.get(m.search, []))]
    return '<section class="model">\n' + "\n".join(p for p in parts if p) + "\n</section>"
