"""The results table of bench.run: every figure next to its issue-6 goal, PASS or FAIL."""

from __future__ import annotations

import statistics
from typing import Any

GOAL_RATIO = {"tiny": 1.10, "medium": 1.00, "many": 0.85,
              # issue 15: the forest as warm-start chains; k-NN as tiny's plain-path goal
              "seed-forest": 0.15, "seed-knn": 1.10, "shared-pca": 0.60,
              "shared-poly": 0.60}
#: issue 13: searchd's random search and halving against scikit-learn's
GOAL_STRATEGY = {"random": ("RandomizedSearchCV", 1.00), "halving": ("HalvingGridSearchCV", 1.00)}
GOAL_FIRST_FIT = 3.0
GOAL_EFF = 0.03
GOAL_SHARE = 0.03
FLAT = 1.5  # "does not grow": the 100k delta flush within 1.5x the 1k one (noise margin)
KILL_INTERVAL = 5.0  # checkpoint_interval: the "5 s of work" of the goal
GOAL_PAUSE_P95 = 2.0
GOAL_RSS_MB, GOAL_CPU_PCT = 40.0, 0.5


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def mmm(xs: list[float], fmt: str = "{:.2f}") -> str:
    return "/".join(fmt.format(v) for v in (min(xs), med(xs), max(xs)))


def pair_line(k: int, row: dict[str, Any]) -> None:
    g1, g2, sd = row["gs1"], row["gs2"], row["sd"]
    gs2 = (f"{g2['search_seconds']:7.2f}s" if "search_seconds" in g2 else f"{g2['note']}")
    print(f"  pair {k}: GS n_jobs=1 {g1['search_seconds']:7.2f}s (proc {g1['process_seconds']:.1f}"
          f"s) | GS n_jobs=2 {gs2} | searchd {sd['search_seconds']:7.2f}s (proc "
          f"{sd['process_seconds']:.1f}s, start {sd['start_seconds']:.1f}s) | ratio "
          f"{row['ratio_search']:.3f} vs {row['faster']}, process {row['ratio_process']:.3f} | "
          f"eff {row['eff_sd']:.3f} vs {row['eff_ref']:.3f} ({row.get('eff_against', '')}) | ckpt "
          f"{100 * row['flush_share']:.2f}%{_tail(sd)} | others' load {g1['other_load']:.1f}/"
          f"{g2.get('other_load', float('nan')):.1f}/{sd['other_load']:.1f} cores", flush=True)


def _tail(sd: dict[str, Any]) -> str:
    t = sd.get("after_last_done_seconds")
    return "" if t is None else f" | after last type done {t:.1f}s"


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def table(r: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str, str, str, str]] = []
    cmd = "python -m bench.run --only {}"
    for name, goal in GOAL_RATIO.items():
        if name not in r:
            continue
        p = r[name]["pairs"]
        ratios = [x["ratio_search"] for x in p]
        sd = [x["sd"]["search_seconds"] for x in p]
        g1 = [x["gs1"]["search_seconds"] for x in p]
        g2 = [x["gs2"]["search_seconds"] for x in p if "search_seconds" in x["gs2"]]
        ref = f"GS1 {med(g1):.2f}s, GS2 " + (f"{med(g2):.2f}s" if g2 else r[name]["n_jobs_2"])
        rows.append((f"(1) search time ratio, {name}", f"<= {goal:.2f}",
                     f"searchd {med(sd):.2f}s", ref, f"{mmm(ratios, '{:.3f}')}",
                     _verdict(med(ratios) <= goal)))
        proc = [x["ratio_process"] for x in p]
        gs_proc = [min(x["gs1"]["process_seconds"], x["gs2"].get("process_seconds", 1e9))
                   for x in p]
        rows.append((f"(1) whole-process ratio, {name}", "-",
                     f"searchd {med([x['sd']['process_seconds'] for x in p]):.2f}s",
                     f"GS {med(gs_proc):.2f}s", mmm(proc, "{:.3f}"), "-"))
    if "first_fit" in r:
        t = [x["first_fit_done"] for x in r["first_fit"]]
        sp = med([x["spawn"] for x in r["first_fit"]])
        ws = med([x["worker_start"] for x in r["first_fit"]])
        rows.append(("(2) time to first fit (tiny job)", f"<= {GOAL_FIRST_FIT:.0f} s",
                     f"median {med(t):.2f}s, max {max(t):.2f}s",
                     f"file->spawn {sp:.2f}s, spawn->dispatch {ws:.2f}s", "-",
                     _verdict(med(t) <= GOAL_FIRST_FIT)))
    for name in GOAL_RATIO:
        if name not in r:
            continue
        p = r[name]["pairs"]
        diff = [x["eff_diff"] for x in p]
        e2 = [x["gs2"]["efficiency"] for x in p if "efficiency" in x["gs2"]]
        rows.append((f"(3) CPU efficiency, {name}", f">= ref - {GOAL_EFF}",
                     f"searchd {med([x['eff_sd'] for x in p]):.3f}",
                     f"GS({', '.join(sorted({x.get('eff_against', '?') for x in p}))}) "
                     f"{med([x['eff_ref'] for x in p]):.3f}; GS1 "
                     f"{med([x['gs1']['efficiency'] for x in p]):.3f}, GS2 "
                     + (f"{med(e2):.3f}" if e2 else "-"),
                     f"diff {mmm(diff, '{:+.3f}')}", _verdict(med(diff) >= -GOAL_EFF)))
    if "checkpoint" in r:
        c = r["checkpoint"]
        d = {x["stored"]: x for x in c}
        deltas = ", ".join(f"{n // 1000}k {x['delta_ms']:.1f}ms/{x['delta_bytes'] / 1e3:.1f}kB"
                           for n, x in d.items())
        bases = ", ".join(f"{n // 1000}k {x['base_ms']:.0f}ms/{x['base_bytes'] / 1e6:.2f}MB"
                          for n, x in d.items())
        lo, hi = d[min(d)], d[max(d)]
        rows.append(("(4) delta flush (100 results)", "flat 1k->100k", deltas, "-",
                     f"{hi['delta_ms'] / lo['delta_ms']:.2f}x",
                     _verdict(hi["delta_ms"] <= FLAT * lo["delta_ms"])))
        rows.append(("(4) compaction (base write)", "-", bases, "-",
                     f"{hi['base_ms'] / lo['base_ms']:.2f}x", "-"))
        rows.append(("(4) resume read (base+deltas)", "-",
                     ", ".join(f"{n // 1000}k {x['resume_read_ms']:.0f}ms" for n, x in d.items()),
                     "-", "-", "-"))
    if "many" in r:
        sh = [x["flush_share"] for x in r["many"]["pairs"]]
        rows.append(("(4) checkpoint share of wall, many", f"<= {100 * GOAL_SHARE:.0f} %",
                     f"{100 * med(sh):.2f} %", "-", mmm([100 * s for s in sh]),
                     _verdict(med(sh) <= GOAL_SHARE)))
    if "big" in r:
        b = r["big"]["sd"]
        rows.append(("(4) checkpoint share of wall, big", "-",
                     f"{100 * b['flush_share']:.2f} % ({len(b['flushes'])} flushes)",
                     f"search {b['search_seconds']:.1f}s", "-", "-"))
    if "kill" in r:
        k = r["kill"]
        lost = [x["lost"] for x in k["kills"]]
        in_flight = 2 * k["n_jobs"]
        # each kill against its own session's rate: fits in flight + 5 s of that work
        allow = [in_flight + KILL_INTERVAL * x["rate"] for x in k["kills"]]
        over = sum(n > a for n, a in zip(lost, allow, strict=True))
        total = k["fits_computed"] - k["fits_total"]
        rows.append((f"(5) kill waste, {len(lost)} kills",
                     f"<= {in_flight} + 5 s x rate",
                     f"median {med(lost):.0f}, max {max(lost):.0f} fits/kill",
                     f"allowance median {med(allow):.0f} fits "
                     f"({med([x['rate'] for x in k['kills']]):.1f} fits/s); {over} over",
                     f"total {total} ({total / len(lost):.1f}/kill)",
                     _verdict(over == 0 and k["state"] == "done")))
    if "idle" in r:
        i = r["idle"]
        if "skipped" in i:
            rows.append(("(6) pause latency p95", f"<= {GOAL_PAUSE_P95:.0f} s", "skipped",
                         i["skipped"], "-", "-"))
        else:
            pl, rl = i.get("pause_latency", {}), i.get("resume_latency", {})
            rows.append(("(6) pause latency", f"p95 <= {GOAL_PAUSE_P95:.0f} s",
                         f"median {pl.get('median', float('nan')):.2f}s, p95 "
                         f"{pl.get('p95', float('nan')):.2f}s",
                         f"resume median {rl.get('median', float('nan')):.2f}s past "
                         f"resume_after", "-",
                         _verdict(pl.get("p95", 99) <= GOAL_PAUSE_P95 and not pl.get("missed"))))
    if "footprint" in r:
        f = r["footprint"]
        for phase in ("idle", "busy"):
            m = f[phase]
            ok = m["rss_mb"] <= GOAL_RSS_MB and (phase == "busy" or m["cpu_pct"] <= GOAL_CPU_PCT)
            rows.append((f"(7) supervisor, {phase}",
                         f"<= {GOAL_RSS_MB:.0f} MB" + (f", <= {GOAL_CPU_PCT}%" if phase == "idle"
                                                       else ""),
                         f"{m['rss_mb']:.1f} MB, {m['cpu_pct']:.2f}% of a core",
                         (f"worker {m['worker_rss_mb']:.0f} MB, tree {m['tree_rss_mb']:.0f} MB"
                          if phase == "busy" else "-"), "-", _verdict(ok)))
    for name, (cls, goal) in GOAL_STRATEGY.items():
        if name not in r:
            continue
        p = r[name]["pairs"]
        ratios = [x["ratio_search"] for x in p]
        g1 = [x["gs1"]["search_seconds"] for x in p]
        g2 = [x["gs2"]["search_seconds"] for x in p if "search_seconds" in x["gs2"]]
        ref = f"{cls} n_jobs=1 {med(g1):.2f}s, n_jobs=2 " + (
            f"{med(g2):.2f}s" if g2 else str(r[name]["n_jobs_2"]))
        rows.append((f"(8) search time ratio, {name}", f"<= {goal:.2f}",
                     f"searchd {med([x['sd']['search_seconds'] for x in p]):.2f}s", ref,
                     mmm(ratios, "{:.3f}"), _verdict(med(ratios) <= goal)))
        rows.append((f"(8) scores identical, {name}", "yes",
                     "no" if r[name]["problems"] else "yes", "every row, split, best", "-",
                     _verdict(not r[name]["problems"])))
    if "halving-grid" in r:
        h = r["halving-grid"]
        p = h["pairs"]
        rows.append((f"(8) halving / full grid, {h['candidates']} candidates", "-",
                     f"halving {med([x['halving']['search_seconds'] for x in p]):.2f}s",
                     f"grid {med([x['grid']['search_seconds'] for x in p]):.2f}s",
                     mmm([x["ratio"] for x in p], "{:.3f}"), "-"))
        last = p[-1]
        rows.append(("(8) best scores, halving vs grid", "-",
                     f"halving {last['halving']['best_score']:.4f} (on "
                     f"{last['rounds'][1][-1] if last['rounds'][1] else '?'} samples)",
                     f"grid {last['grid']['best_score']:.4f}; halving's pick on the full grid "
                     f"{last['pick_grid_score']:.4f}, rank {last['pick_grid_rank']}", "-",
                     "-"))
    head = ("figure", "goal", "measured (median)", "reference / detail", "ratio min/med/max",
            "")
    widths = [max(len(str(x[i])) for x in [head, *rows]) for i in range(6)]
    lines = [" | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in [head, *rows]]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines) + f"\n(reproduce one figure: {cmd.format('NAME')}; NAME as in --only)"
