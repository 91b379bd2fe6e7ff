"""The HTML document: one self-contained page, nothing loaded from anywhere.

The Content-Security-Policy forbids every fetch (scripts, fonts, frames, connections);
only inline styles and ``data:`` images (the heatmaps' pixels inside their SVG) are
allowed. There is no JavaScript: tables come sorted by rank.
"""

from __future__ import annotations

from searchd.report import plots
from searchd.report.fmt import bar, esc, params_text, pm, score, seconds, table, verdict, when
from searchd.report.gather import JobView, ModelView
from searchd.report.sections import Context, model_section

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

CSS = """
:root { color-scheme: light; --line: #d8dce3; --muted: #5b6472; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  margin: 0 auto; max-width: 1180px; padding: 18px 24px 48px; color: #1d232b; }
h1 { font-size: 24px; margin: 0 0 2px; }
h2 { font-size: 19px; margin: 28px 0 6px; padding-top: 10px;
  border-top: 1px solid var(--line); }
h3 { font-size: 15px; margin: 18px 0 6px; }
.sub, .note, .facts, figcaption, .none { color: var(--muted); }
.note, figcaption { font-size: 12.5px; }
nav { margin: 10px 0 4px; font-size: 13px; } nav a { margin-right: 12px; }
dl.facts-grid { display: grid; grid-template-columns: max-content 1fr; gap: 3px 16px;
  margin: 8px 0; }
dl.facts-grid dt { color: var(--muted); } dl.facts-grid dd { margin: 0; }
.bar { width: 260px; height: 10px; background: #e9ecf1; border-radius: 5px;
  display: inline-block; vertical-align: middle; margin-right: 8px; overflow: hidden; }
.bar div { height: 100%; background: #3b7dd8; }
table { border-collapse: collapse; margin: 6px 0; font-size: 13px; }
th, td { padding: 4px 10px; border-bottom: 1px solid var(--line); text-align: left;
  vertical-align: top; }
th { background: #f3f5f8; font-weight: 600; } tbody tr:nth-child(even) { background: #fafbfc; }
table.num td:nth-child(-n+4) { font-variant-numeric: tabular-nums; white-space: nowrap; }
code { font: 12px ui-monospace, "SFMono-Regular", Menlo, monospace; background: #f3f5f8;
  padding: 1px 4px; border-radius: 3px; word-break: break-word; }
.tag { display: inline-block; padding: 0 6px; border-radius: 9px; font-size: 12px;
  background: #e9ecf1; }
.tag.best { background: #fde2e1; color: #a3211f; }
.tag.same { background: #ddf1e1; color: #1d6b32; }
.tag.worse { background: #eef0f3; color: #5b6472; }
.state { font-weight: 600; } .bad { color: #b3261e; }
.warn { background: #fff6db; border-left: 4px solid #e0a800; padding: 6px 10px; margin: 8px 0; }
.figs { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr));
  gap: 10px 18px; }
figure { margin: 0; } svg.plot { width: 100%; height: auto; display: block; }
svg.plot * { stroke-linejoin: round; stroke-linecap: butt; }
@media print { figure { break-inside: avoid; } }
"""


def render(job: JobView) -> str:
    """The whole page for ``job``; the same input always gives the same bytes."""
    ctx = Context(job)
    rec = job.record
    nav = " ".join(['<a href="#job">The job</a>', '<a href="#leaderboard">Leaderboard</a>',
                    *(f'<a href="#model-{esc(m.name)}">{esc(m.name)}</a>' for m in job.models)])
    body = [f"<header><h1>{esc(rec.id)}</h1>",
            f'<p class="sub">searchd report · from the job\'s records as of '
            f"{esc(when(rec.updated_at))}</p>",
            f"<nav>{nav}</nav></header>",
            job_section(ctx), leaderboard(job)]
    body += [model_section(ctx, m) for m in job.models]
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            '<meta name="referrer" content="no-referrer">\n'
            f"<title>searchd report: {esc(rec.id)}</title>\n<style>{CSS}</style>\n</head>\n"
            "<body>\n" + "\n".join(body) + "\n</body>\n</html>\n")


def job_section(ctx: Context) -> str:
    job = ctx.job
    rec = job.record
    facts: list[tuple[str, str]] = [("state", f'<span class="state">{esc(rec.state.value)}'
                                              f"</span>")]
    if rec.error:
        facts.append(("error", f'<span class="bad">{esc(rec.error)}</span>'))
    if rec.paused_reason:
        facts.append(("paused", esc(rec.paused_reason)))
    if rec.disk_error:
        facts.append(("disk", f'<span class="bad">{esc(rec.disk_error)}</span>'))
    pct = 100.0 * rec.fits_done / rec.fits_total if rec.fits_total else 0.0
    facts += [
        ("progress", f"{bar(rec.fits_done, rec.fits_total)}{rec.fits_done:,} of "
                     f"{rec.fits_total:,} fits ({pct:.1f}%)"),
        ("fits computed", f"{rec.fits_computed:,} computed for {rec.fits_total:,} needed"
                          + _recomputed(rec.fits_computed, rec.fits_done)),
        ("time used", f"{seconds(rec.run_seconds)} of work (pauses excluded)"),
        ("ETA", seconds(rec.eta_seconds) if rec.eta_seconds is not None else "—"),
        ("started", esc(when(rec.started_at))),
        ("finished", esc(when(rec.finished_at))),
        ("backend", esc(rec.backend) + (f", {rec.processes} process(es)" if rec.processes
                                        else "")),
    ]
    if job.n_train:
        folds = max((m.folds.shape[1] for m in job.models), default=0)
        facts.append(("cross-validation", f"{folds} folds of ~{job.n_train:,.0f} training and "
                                          f"~{job.n_test:,.0f} test samples"))
    if rec.deaths:
        facts.append(("worker deaths", f"{rec.deaths} (last: {esc(rec.last_exit)})"))
    dl = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts)
    if len(job.timeline) >= 2:
        tl = (f"<figure>{plots.timeline(job.timeline, rec.fits_total, ctx.uid())}"
              "<figcaption>Fits done over time; shaded: paused (by reason).</figcaption>"
              "</figure>")
    else:
        tl = '<p class="none">No timeline recorded.</p>'
    note = f'<p class="none">{esc(job.results_note)}</p>' if job.results_note else ""
    return (f'<section id="job"><h2>The job</h2>\n<dl class="facts-grid">{dl}</dl>\n'
            f"{note}<h3>Timeline</h3>\n{tl}\n</section>")


def _recomputed(computed: int, done: int) -> str:
    extra = computed - done
    return f" ({extra:,} recomputed after interruptions)" if extra > 0 else ""


def leaderboard(job: JobView) -> str:
    if not job.models:
        return ('<section id="leaderboard"><h2>Leaderboard</h2>'
                '<p class="none">No results yet.</p></section>')
    leader = job.leader
    ordered = sorted(job.models, key=_order)
    rows = []
    for i, m in enumerate(ordered, 1):
        b = m.best
        rows.append([
            str(i), f'<a href="#model-{esc(m.name)}">{esc(m.name)}</a>', esc(m.state),
            pm(m.mean[b], m.std[b]) if b is not None else "—", _holdout_cell(m),
            seconds(float(m.fit_time[b])) if b is not None else "—",
            f"{m.fits_done:,}/{m.fits_total:,}",
            verdict(job.vs_best_type.get(m.name), m is leader) if b is not None else "—",
            f"<code>{esc(params_text(m.params[b]))}</code>" if b is not None else "—"])
    head = ["#", "model type", "state", f"best CV {esc(ordered[0].scorer)} ± std", "hold-out",
            "mean fit time", "fits", "vs best", "best parameters"]
    return ('<section id="leaderboard"><h2>Leaderboard</h2>\n' + table(head, rows, "num") +
            '\n<p class="note">Each type by its best candidate. "≈ best": its fold scores are '
            "not significantly below the best type's on the same folds (Nadeau–Bengio "
            "corrected t-test, one-sided, p ≥ 0.05); with few folds, many types will be.</p>"
            "\n</section>")


def _order(m: ModelView) -> tuple[int, float, str]:
    s = m.best_score
    return (0, -s, m.name) if s is not None else (1, 0.0, m.name)


def _holdout_cell(m: ModelView) -> str:
    if not m.test_score:
        return "—"
    v = m.test_score.get(m.scorer, next(iter(m.test_score.values())))
    return score(v)
