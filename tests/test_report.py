"""The job report: from a real (tiny) job, deterministic, self-contained, and right."""

from __future__ import annotations

import errno
import json
import math
import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import Env
from jobtexts import IRIS_KNN

from searchd.report import REPORT, refresh_report, render_report, write_report
from searchd.report.axes import (
    ParamAxis,
    best_per_value,
    build_axes,
    edge_warning,
    log_spaced,
)
from searchd.report.gather import from_results, refit_scorer, scorer_suffix
from searchd.report.page import CSP, render
from searchd.report.stats import corrected_ttest, split_sizes
from searchd.report.timeline import TIMELINE, TimelinePoint, append_timeline, read_timeline, thin
from searchd.state.read import JobResults, ModelSearch, load_results
from searchd.state.records import JobRecord, JobState

#: the daemons here draw the report; one worker runs the module (its fixtures run daemons)
pytestmark = [pytest.mark.report, pytest.mark.xdist_group("report")]

JOB = "demo"
#: svc's best C on iris is 10, the grid's largest value: the edge warning's case
JOB_TEXT = """
[data]
source = "sklearn:iris"
test_size = 0.2
seed = 0
[search]
cv = 5
[models.knn]
estimator = "KNeighborsClassifier"
grid = { n_neighbors = [1, 3, 5, 7, 9, 11, 15], weights = ["uniform", "distance"] }
[models.svc]
estimator = "SVC"
grid = { C = { logspace = [-2, 1, 4] } }
[models.tree]
estimator = "DecisionTreeClassifier"
params = { random_state = 0 }
grid = { max_depth = { range = [1, 4] } }
"""


def build_demo_job(root: Path) -> Env:
    """A finished three-type iris job (115 fits, a few seconds), in ``root``."""
    env = Env(root, root / "jobs", root / "state", report=True)
    env.jobs.mkdir(parents=True)
    env.write_job(f"{JOB}.toml", JOB_TEXT)
    try:
        env.cli("run", "--drain", timeout=120, check=True)
    finally:
        env.reap()
    return env


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    env = build_demo_job(tmp_path_factory.mktemp("report"))
    yield env
    env.reap()


@pytest.fixture(scope="module")
def page(demo: Env) -> str:
    return render_report(demo.state, JOB)


class Links(HTMLParser):
    """Every tag and every attribute that can make a browser fetch something."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.refs: list[tuple[str, str, str]] = []
        self.csp: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for k, v in attrs:
            if k in ("src", "href", "xlink:href", "srcset", "action", "poster", "data"):
                self.refs.append((tag, k, v or ""))
            if tag == "meta" and k == "http-equiv" and (v or "").lower() == \
                    "content-security-policy":
                self.csp.append(dict(attrs).get("content") or "")

    handle_startendtag = handle_starttag


def test_the_page_is_deterministic_self_contained_and_locked_down(demo: Env, page: str) -> None:
    assert render_report(demo.state, JOB) == page  # same state, same bytes
    p = Links()
    p.feed(page)
    assert p.csp == [CSP] and "default-src 'none'" in CSP
    assert not {"script", "link", "iframe", "object", "embed", "base"} & set(p.tags)
    for tag, attr, value in p.refs:
        assert value.startswith(("#", "data:image/png;base64,")), (tag, attr, value[:80])
    assert "url(http" not in page and "@import" not in page and "<?xml" not in page
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids)), "ids repeat across the inline plots"
    # the daemon's timeline; knn: 2 profiles, a heatmap, fit time; svc and tree: a profile
    # and fit time
    assert page.count('<svg class="plot"') == 9
    assert len(page.encode()) < 400_000


def test_the_page_shows_the_job_and_every_model_type(demo: Env, page: str) -> None:
    summary = demo.summary(JOB)
    assert f"{summary['fits_done']} of {summary['fits_total']} fits (100.0%)" in page
    assert f"{summary['fits_computed']} computed for {summary['fits_total']} needed" in page
    assert "No timeline recorded." not in page  # the supervisor recorded one
    res = load_results(JOB, demo.state, with_estimators=False)
    for name, m in res.models.items():
        assert f'id="model-{name}"' in page
        i = m.best_index_
        assert i is not None and m.best_score_ is not None
        std = m.cv_results_["std_test_score"][i]
        assert f"{m.best_score_:.4f} ± {std:.4f}" in page
        assert m.test_score_ is not None and f"{m.test_score_['score']:.4f}" in page
    # plots: a profile per searched parameter, knn's heatmap, a fit-time plot per type
    for label in ("knn: mean CV score against n_neighbors", "knn: mean CV score against weights",
                  "knn: mean CV score over n_neighbors and weights",
                  "svc: mean CV score against C", "tree: mean CV score against max_depth",
                  "tree: mean CV score against fit time"):
        assert f'aria-label="{label}"' in page
    assert "against C (log axis)" in page and "against n_neighbors (log axis)" not in page


def test_a_best_value_at_the_edge_of_its_grid_is_flagged(page: str) -> None:
    # svc's C = 0.01 .. 10 in 4 log steps; the best is 10: extend by x10
    assert ("The best C = 10 is the largest value searched: the optimum may lie beyond "
            "it. Extend the grid up, e.g. with 100, 1000.") in page
    assert "The best n_neighbors" not in page and "The best max_depth" not in page


def _t_sf_by_hand(t: float, df: int) -> float:
    """P(T > t) for Student's t with ``df`` degrees of freedom, by Simpson's rule over the
    density (no scipy): the check must not reuse what it checks."""
    c = math.gamma((df + 1) / 2) / (math.sqrt(df * math.pi) * math.gamma(df / 2))

    def pdf(x: float) -> float:
        return c * (1 + x * x / df) ** (-(df + 1) / 2)

    # P(T > t) = 1/2 - integral_0^t pdf
    n, a, b = 20000, 0.0, abs(t)
    h = (b - a) / n
    area = pdf(a) + pdf(b) + sum((4 if k % 2 else 2) * pdf(a + k * h) for k in range(1, n))
    half = 0.5 - area * h / 3
    return half if t >= 0 else 1 - half


def test_the_corrected_t_test_matches_a_hand_computation() -> None:
    best = [0.90, 0.80, 0.85, 0.95, 0.90]
    other = [0.85, 0.80, 0.80, 0.90, 0.88]
    d = [a - b for a, b in zip(best, other, strict=True)]  # .05 0 .05 .05 .02
    k = len(d)
    mean = sum(d) / k
    var = sum((x - mean) ** 2 for x in d) / (k - 1)
    n_train, n_test = 96.0, 24.0
    t = mean / math.sqrt(var * (1 / k + n_test / n_train))
    c = corrected_ttest(best, other, n_train, n_test)
    assert c.mean_difference == pytest.approx(0.034)
    assert c.t == pytest.approx(t, rel=1e-12)
    assert c.p == pytest.approx(_t_sf_by_hand(t, k - 1), abs=1e-7)
    assert not c.indistinguishable and c.p < 0.05  # t ≈ 2.6 with 4 df
    # the plain paired t-test (no correction) is more confident: the correction matters
    assert t < mean / math.sqrt(var / k)
    # ties and unknowns
    assert corrected_ttest([1, 1, 1], [1, 1, 1], 10, 5).p == 1.0
    assert corrected_ttest([1, 1, 1], [0.5, 0.5, 0.5], 10, 5).p == 0.0
    assert math.isnan(corrected_ttest([1, float("nan")], [1, 1], 10, 5).p)


def test_the_leaderboard_compares_the_types_on_their_fold_scores(demo: Env, page: str) -> None:
    res = load_results(JOB, demo.state, with_estimators=False)
    n_train, n_test = split_sizes(res.splits)
    assert (n_train, n_test) == (96.0, 24.0)  # 120 training rows of iris, 5 folds
    folds = {name: np.array([m.cv_results_[f"split{f}_test_score"][m.best_index_]
                             for f in range(5)]) for name, m in res.models.items()}
    leader = max(res.models.values(), key=lambda m: m.best_score_ or -1).name
    for name, scores in folds.items():
        if name == leader:
            continue
        d = folds[leader] - scores
        t = d.mean() / math.sqrt(d.var(ddof=1) * (1 / 5 + n_test / n_train)) if d.any() else 0
        p = _t_sf_by_hand(t, 4) if d.var() > 0 else (1.0 if d.mean() == 0 else 0.0)
        tag = "≈ best" if p >= 0.05 else "worse"
        row = page[page.rindex(f'<a href="#model-{name}">'):]  # the leaderboard's, not nav's
        row = row[: row.index("</tr>")]
        assert tag in row and (f"p = {p:.2f}" in row or f"p = {p:.3f}" in row), row


def test_the_timeline_is_read_back_and_shown(tmp_path: Path) -> None:
    job_dir = tmp_path / "j"
    job_dir.mkdir()
    for i in range(10):
        assert append_timeline(job_dir, 1000.0 + 60 * i, 3 * i,
                               "other load 60% > 25%" if 4 <= i < 6 else None)
    with open(job_dir / TIMELINE, "ab") as f:  # a crash cut the last line short; junk
        f.write(b'{"at": 1, "fits_done": "x"}\n[1, 2]\n{"at": 2000.0, "fits')
    points = read_timeline(job_dir)
    assert [p.fits_done for p in points] == [3 * i for i in range(10)]
    assert points[4].paused == "other load 60% > 25%" and points[6].paused is None
    assert (job_dir / TIMELINE).stat().st_mode & 0o777 == 0o600
    # in the page: a plot with the pause in its legend
    rec = JobRecord(id="j", state=JobState.RUNNING, fits_done=27, fits_total=60)
    html = render(from_results(rec, None, points))
    assert 'aria-label="fits done over time"' in html and "paused: other load 60%" in html
    assert "No results yet" in html and "No timeline recorded." not in html


def test_appending_a_timeline_point_never_raises(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    assert not append_timeline(tmp_path / "gone", 1.0, 1, None)  # no folder: logged

    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    assert not append_timeline(tmp_path, 1.0, 1, None)


def test_thinning_keeps_every_pause() -> None:
    pts = [TimelinePoint(float(i), i, "load" if i in (5001, 5002) else None)
           for i in range(10_000)]
    kept = thin(pts, 100)
    assert len(kept) < 110 and kept[-1] == pts[-1]
    assert [p.at for p in kept if p.paused] == [5001.0, 5002.0]


def test_axes_and_edges() -> None:
    params = [{"C": c, "kernel": k} for c in (0.01, 0.1, 1.0, 10.0) for k in ("rbf", "linear")]
    c_axis, k_axis = build_axes(params)
    assert c_axis.name == "C" and c_axis.numeric and c_axis.log
    assert not k_axis.numeric and k_axis.values == ["rbf", "linear"]
    assert list(c_axis.codes) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert not log_spaced([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])
    assert log_spaced([1, 2, 5, 10, 20, 50, 100])

    def axis(values: list[Any], log: bool = False) -> ParamAxis:
        return ParamAxis("p", values, True, log, np.arange(len(values)))

    w = edge_warning(axis([10, 20, 30]), 30)
    assert w is not None and w.side == "largest" and w.extend == [40, 50]
    w = edge_warning(axis([10, 20, 30]), 10)  # a step down would reach 0: halve instead
    assert w is not None and w.side == "smallest" and w.extend == [5, 2]
    assert edge_warning(axis([1, 3, 5]), 1) is None  # n_neighbors = 1: nothing below it
    assert edge_warning(axis([0, 1, 2]), 0) is None
    w = edge_warning(axis([-2.0, -1.0, 0.0]), -2.0)
    assert w is not None and w.extend == [-3.0, -4.0]
    w = edge_warning(axis([0.01, 0.1, 1.0], log=True), 0.01)
    assert w is not None and w.extend == [0.001, 0.0001] and "Extend the grid down" in w.text()
    assert edge_warning(axis([1, 2, 3]), 2) is None
    # a best at the edge that does no better than its neighbour: a flat parameter
    flat = axis([10, 20, 30])
    assert edge_warning(flat, 10, np.array([0.9, 0.9, 0.9])) is None
    assert edge_warning(flat, 10, np.array([0.91, 0.9, 0.9])) is not None
    mean = np.array([0.5, 0.7, 0.6, 0.9, np.nan])
    codes = np.array([0, 0, 1, 2, 1])
    assert best_per_value(ParamAxis("q", [1, 2, 3], True, False, codes), mean).tolist() == \
        [0.7, 0.6, 0.9]
    assert edge_warning(ParamAxis("p", [True, False], False, False, np.arange(2)), True) is None


def _synthetic(n: int) -> JobResults:
    """``n`` candidates over three parameters, five folds, without fitting anything."""
    rng = np.random.default_rng(0)
    params = [{"a": a, "b": b, "c": c} for a in np.logspace(-3, 3, 25).round(6).tolist()
              for b in range(1, 21) for c in ("x", "y", "z", "w")][:n]
    folds = rng.uniform(0.7, 0.95, (n, 5))
    mean = folds.mean(axis=1)
    cv: dict[str, Any] = {"params": params, "mean_test_score": mean,
                          "std_test_score": folds.std(axis=1),
                          "rank_test_score": (-mean).argsort().argsort() + 1,
                          "mean_fit_time": rng.uniform(0.01, 2.0, n)}
    cv.update({f"split{f}_test_score": folds[:, f] for f in range(5)})
    best = int(mean.argmax())
    m = ModelSearch(name="m", state="done", cv_results_=cv, best_index_=best,
                    best_params_=params[best], best_score_=float(mean[best]),
                    best_estimator_=None, test_score_=None, refit_time_=None,
                    fits_done=5 * n, fits_total=5 * n, errors={})
    idx = np.arange(100)
    return JobResults(job_id="big", models={"m": m},
                      splits=[(np.delete(idx, idx[f::5]), idx[f::5]) for f in range(5)])


def test_the_plots_stay_small_however_many_candidates() -> None:
    rec = JobRecord(id="big", state=JobState.DONE)
    small = render(from_results(rec, _synthetic(200), []))
    big = render(from_results(rec, _synthetic(2000), []))
    # scatter points are capped, profiles have a point per value: the page hardly grows
    assert big.count("<use ") < small.count("<use ") * 3
    assert len(big.encode()) < 2 * len(small.encode()) and len(big.encode()) < 500_000


def test_the_refit_scorer_ranks_a_job_with_several(tmp_path: Path) -> None:
    assert refit_scorer(tmp_path) is None  # no frozen job file: guess
    (tmp_path / "job.toml").write_text('[search]\nscoring = ["accuracy", "f1_macro"]\n'
                                       'refit = "f1_macro"\n')
    assert refit_scorer(tmp_path) == "f1_macro"
    (tmp_path / "job.toml").write_text('[search]\nscoring = "accuracy"\n')
    assert refit_scorer(tmp_path) == "score"
    two = _synthetic(40)
    cv = dict(two["m"].cv_results_)
    for k in [k for k in cv if k.endswith("_test_score")]:
        cv[k.replace("_score", "_accuracy")] = cv[k]
        cv[k.replace("_score", "_f1_macro")] = cv.pop(k)[::-1]
    running = ModelSearch(**{**two["m"].__dict__, "cv_results_": cv, "best_index_": None,
                             "best_score_": None, "state": "pending"})
    assert scorer_suffix(running, "f1_macro") == "f1_macro"
    assert scorer_suffix(running) == "accuracy"  # nothing to tell them apart: the first
    rec = JobRecord(id="big", state=JobState.RUNNING,
                    models={"m": {"state": "running", "fits_done": 10}})
    html = render(from_results(rec, JobResults("big", {"m": running}, two.splits), [],
                               refit="f1_macro"))
    assert "Best CV f1_macro" in html and "running · " in html


def test_searchd_report_writes_the_file_and_says_so(demo: Env, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "searchd", "report", JOB, "--state", str(demo.state)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    path = tmp_path / f"{JOB}-report.html"
    assert out.stdout.strip() == (f"wrote the report of {JOB} → {path.name} "
                                  f"({path.stat().st_size:,} bytes)")
    assert path.read_text() == render_report(demo.state, JOB)
    other = tmp_path / "r.html"
    assert write_report(demo.state, JOB, other) == other.stat().st_size
    missing = subprocess.run([*cmd[:4], "nope", *cmd[5:], "-o", str(tmp_path / "x.html")],
                             capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert missing.returncode == 6 and missing.stdout == ""
    assert missing.stderr.startswith("searchd: error: no job 'nope'")
    assert missing.stderr.count("\n") == 1 and not (tmp_path / "x.html").exists()


@pytest.mark.slow  # test_hooks checks that a --no-report run leaves no page, quick tier
@pytest.mark.timeout(120)
def test_no_report_keeps_no_page_and_searchd_report_still_writes_one(env: Env) -> None:
    env.report = False  # `run --no-report` (`report = false`)
    env.write_job("quiet.toml", IRIS_KNN)
    run = env.cli("run", "--drain", timeout=100)
    assert run.returncode == 0 and "--no-report" in " ".join(run.args), run.stderr[-2000:]
    assert env.summary("quiet")["state"] == "done"
    assert not (env.state / "quiet" / REPORT).exists()
    out = env.cli("report", "quiet", "-o", str(env.root / "q.html"), check=True)
    assert "wrote the report of quiet" in out.stdout
    assert "<svg" in (env.root / "q.html").read_text()


def test_the_daemon_s_copy_is_private_and_its_failures_are_logged(demo: Env,
                                                                  tmp_path: Path) -> None:
    assert refresh_report(demo.state, JOB)
    path = demo.state / JOB / REPORT
    assert path.stat().st_mode & 0o777 == 0o600  # like everything in state/
    assert path.read_text() == render_report(demo.state, JOB)
    assert not refresh_report(demo.state, "nope")  # no such job: logged, not raised
    assert not refresh_report(tmp_path / "nowhere", JOB)


def test_the_supervisor_never_imports_matplotlib() -> None:
    code = ("import sys, searchd, searchd.supervisor.daemon, searchd.cli.main, "
            "searchd.cli.commands, searchd.cli.report, searchd.report, searchd.report.timeline; "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('matplotlib'))))")
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True,
                         text=True, timeout=60, check=True)
    assert json.loads(out.stdout) == []


def test_the_daemon_keeps_the_job_s_report_and_timeline(demo: Env) -> None:
    """After ``run --drain`` the worker has drawn state/<job>/report.html (the final one,
    with every type done) and the supervisor has recorded the timeline."""
    from searchd.report.timeline import read_timeline
    path = demo.state / JOB / "report.html"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert text.startswith("<!DOCTYPE html>") and "Content-Security-Policy" in text
    for model in ("knn", "svc", "tree"):
        assert model in text
    points = read_timeline(demo.state / JOB)
    assert points and points[-1].fits_done == demo.summary(JOB)["fits_done"]


# --- strategies: halving's rounds, random search's sampled points ---------------------------

STRATEGIES = "strategies"
#: 18 trees halved by 2 on iris's 150 samples (rounds of 18, 9, 5, 3 candidates on 18, 36,
#: 72, 144 samples) and 12 SVCs drawn at random, two parameters log-uniformly
STRATEGIES_TEXT = """
[data]
source = "sklearn:iris"
[search]
cv = 3
[models.tree]
estimator = "DecisionTreeClassifier"
params = { random_state = 0 }
search = "halving"
factor = 2
grid = { max_depth = [1, 2, 3, 4, 5, 6], min_samples_leaf = [1, 2, 4] }
[models.svc]
estimator = "SVC"
search = "random"
n_iter = 12
seed = 0
[models.svc.grid]
C = { loguniform = [0.01, 100.0] }
gamma = { loguniform = [1e-3, 10.0] }
kernel = ["rbf", "linear"]
"""


@pytest.fixture(scope="module")
def strategies(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Env, str]]:
    """A finished job with a halving and a random type (141 fits, a few seconds), and its page."""
    root = tmp_path_factory.mktemp("strategies")
    env = Env(root, root / "jobs", root / "state", report=True)
    env.jobs.mkdir(parents=True)
    env.write_job(f"{STRATEGIES}.toml", STRATEGIES_TEXT)
    try:
        env.cli("run", "--drain", timeout=120, check=True)
    finally:
        env.reap()
    yield env, render_report(env.state, STRATEGIES)
    env.reap()


def _section(page: str, model: str) -> str:
    start = page.index(f'<h2 id="model-{model}">')
    return page[start: page.index("</section>", start)]


def test_strategy_sections_are_registered() -> None:
    from searchd.report.sections import STRATEGY_SECTIONS, halving_rounds, sampled_points

    assert STRATEGY_SECTIONS["halving"] == [halving_rounds]
    assert STRATEGY_SECTIONS["random"] == [sampled_points]


@pytest.mark.slow  # a daemon run of a halving and a random job; their pieces: alone below
def test_a_halving_type_shows_its_rounds(strategies: tuple[Env, str]) -> None:
    env, page = strategies
    tree = load_results(STRATEGIES, env.state, with_estimators=False)["tree"]
    assert tree.n_candidates_ == [18, 9, 5, 3] and tree.n_resources_ == [18, 36, 72, 144]
    html = _section(page, "tree")
    assert "<h3>Successive halving: 4 rounds</h3>" in html
    assert "factor 2, n_samples from 18 to 150" in html
    cv = tree.cv_results_
    for r, (c, n) in enumerate(zip(tree.n_candidates_, tree.n_resources_, strict=True)):
        best = max(s for s, i in zip(cv["mean_test_score"], cv["iter"], strict=True) if i == r)
        row = f"<tr><td>{r + 1}</td><td>{c}</td><td>{n}</td><td>{c * 3}</td><td>{c}</td>" \
              f"<td>{best:.4f}</td></tr>"
        assert row in html, row
    assert f"<td><b>{tree.fits_total}</b></td>" in html and tree.fits_total == 35 * 3
    assert 'aria-label="tree: mean CV score per candidate across the rounds"' in html
    # the top candidates say which round each row is from (their resources differ)
    assert "<th>round</th>" in html


@pytest.mark.slow  # a daemon run of a halving and a random job; their pieces: alone below
def test_a_random_type_shows_its_sampled_points(strategies: tuple[Env, str]) -> None:
    _, page = strategies
    html = _section(page, "svc")
    assert "<h3>Sampled points: 12 candidates drawn at random</h3>" in html
    for p in ("C", "gamma", "kernel"):
        assert f'aria-label="svc: sampled {p} against mean CV score"' in html
        assert f'aria-label="svc: mean CV score against {p}"' not in html  # no grid profile
    assert "Each sampled C (drawn from a distribution, log axis)" in html
    assert "Each sampled gamma (drawn from a distribution, log axis)" in html
    assert "Each sampled kernel (drawn from a list)" in html
    assert 'aria-label="svc: sampled C and gamma, coloured by mean CV score"' in html
    assert "The best C" not in html and "The best gamma" not in html  # no grid edge
    # log axes (their ticks are powers of ten, which matplotlib notes as mathtext) for the
    # log-uniform draws only
    assert "\\mathdefault{10^{" in _svg(html, "svc: sampled C against mean CV score")
    assert "\\mathdefault{10^{" in _svg(html, "svc: sampled gamma against mean CV score")
    assert "\\mathdefault{10^{" not in _svg(html, "svc: sampled kernel against mean CV score")


def _svg(html: str, label: str) -> str:
    start = html.index(f'aria-label="{label}"')
    return html[start: html.index("</svg>", start)]


@pytest.mark.slow  # a daemon run of a halving and a random job; their pieces: alone below
def test_the_strategy_page_is_deterministic_and_counts_its_plots(
        strategies: tuple[Env, str]) -> None:
    env, page = strategies
    assert render_report(env.state, STRATEGIES) == page
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids))
    # the timeline; tree: 2 profiles, a heatmap, fit time and the rounds; svc: fit time,
    # 3 sampled values and the pair of C and gamma
    assert page.count('<svg class="plot"') == 1 + (4 + 1) + (1 + 3 + 1)
    assert _section(page, "tree").count('<svg class="plot"') == 5
    assert _section(page, "svc").count('<svg class="plot"') == 5
    assert len(page.encode()) < 400_000
    # the worker's copy has the same sections
    daemon = (env.state / STRATEGIES / REPORT).read_text()
    assert "Successive halving: 4 rounds" in daemon and "Sampled points" in daemon


def _halving_results(n: int, factor: int = 3) -> JobResults:
    """Successive halving of ``n`` candidates by ``factor`` on a parameter resource,
    without fitting anything: a row per (candidate, round)."""
    rng = np.random.default_rng(1)
    alive = list(range(n))
    rows: list[tuple[int, int, int]] = []  # (candidate, round, resources)
    cands, res = [], []
    r = 0
    while True:
        cands.append(len(alive))
        res.append(10 * factor ** r)
        rows += [(c, r, res[-1]) for c in alive]
        if len(alive) == 1:
            break
        alive = alive[: -(-len(alive) // factor)]  # the first ones "win"
        r += 1
    params = [{"a": c, "n_estimators": n_res} for c, _, n_res in rows]
    folds = rng.uniform(0.6, 0.95, (len(rows), 3))
    mean = folds.mean(axis=1)
    cv: dict[str, Any] = {"params": params, "mean_test_score": mean,
                          "std_test_score": folds.std(axis=1),
                          "rank_test_score": (-mean).argsort().argsort() + 1,
                          "mean_fit_time": rng.uniform(0.01, 2.0, len(rows)),
                          "iter": np.array([r for _, r, _ in rows]),
                          "n_resources": np.array([x for *_, x in rows])}
    cv.update({f"split{f}_test_score": folds[:, f] for f in range(3)})
    best = len(rows) - 1
    plan = {"resource": "n_estimators", "factor": factor, "min_resources_": 10,
            "max_resources_": res[-1], "n_candidates_": cands, "n_resources_": res,
            "n_iterations_": len(cands)}
    m = ModelSearch(name="h", state="done", cv_results_=cv, best_index_=best,
                    best_params_=params[best], best_score_=float(mean[best]),
                    best_estimator_=None, test_score_=None, refit_time_=None,
                    fits_done=3 * len(rows), fits_total=3 * len(rows), errors={},
                    n_candidates_=cands, n_resources_=res, n_iterations_=len(cands),
                    halving=plan)
    idx = np.arange(90)
    return JobResults(job_id="h", models={"h": m},
                      splits=[(np.delete(idx, idx[f::3]), idx[f::3]) for f in range(3)])


def test_halving_paths_follow_a_candidate_whose_resource_is_a_parameter() -> None:
    from searchd.report.rounds import paths, rounds

    rec = JobRecord(id="h", state=JobState.DONE)
    view = from_results(rec, _halving_results(27), []).models[0]
    assert view.search == "halving"
    assert [(r.candidates, r.resources, r.fits) for r in rounds(view)] == \
        [(27, 10, 81), (9, 30, 27), (3, 90, 9), (1, 270, 3)]
    # n_estimators changes from round to round, yet each candidate has one path, its rows
    # in round order: the first candidates "win" each round
    found = paths(view)
    assert [len(p) for p in found] == [4, 3, 3] + [2] * 6 + [1] * 18
    assert [int(view.rounds[i]) for i in found[0]] == [0, 1, 2, 3]  # type: ignore[index]


def test_the_rounds_plot_stays_small_however_many_candidates() -> None:
    from searchd.report.rounds import MAX_LINES, rounds_plot

    rec = JobRecord(id="h", state=JobState.DONE)
    small = rounds_plot(from_results(rec, _halving_results(81), []).models[0], "a")
    big_view = from_results(rec, _halving_results(3 ** 8), []).models[0]
    big = rounds_plot(big_view, "b")
    assert rounds_plot(big_view, "b") == big  # deterministic
    assert "shown)" in big and "shown)" not in small
    assert big.count("<path") < small.count("<path") + MAX_LINES + 600
    assert len(big.encode()) < 400_000


def test_job_facts_tell_random_types_and_log_uniform_parameters() -> None:
    from searchd.report.jobfile import facts

    doc = {"search": {"scoring": ["accuracy", "f1_macro"], "refit": "f1_macro"},
           "models": {"svc": {"search": "random", "grid": {
               "C": {"loguniform": [0.01, 100.0]}, "tol": {"uniform": [0.0, 1.0]},
               "k": {"range": [1, 5]}, "kernel": ["rbf"]}},
               "knn": {"grid": [{"n": [1, 2]}, {"w": {"randint": [1, 3]}}]}}}
    f = facts(doc)
    assert f.refit == "f1_macro" and f.search == {"svc": "random", "knn": "grid"}
    assert f.drawn == {"svc": {"C": "loguniform", "tol": "uniform"}, "knn": {"w": "randint"}}
    assert f.log_params("svc") == {"C"} and f.log_params("knn") == frozenset()
    # four draws that do not look log-spaced still get a log axis when drawn log-uniformly
    params = [{"C": c} for c in (1.0, 5.0, 9.0, 13.0)]
    assert not build_axes(params)[0].log and build_axes(params, frozenset({"C"}))[0].log
