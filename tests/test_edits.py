"""Living job files: an edited job continues from every result it already has.

The worker runs in this process on the frozen spec as the supervisor leaves it after an
edit; ``fits.log`` counts the fits it really computed. Scores are compared with
GridSearchCV on the grid as edited, value by value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from reference import assert_same_as_gridsearch

from searchd.settings import Settings
from searchd.state.history import entries
from searchd.state.read import JobResults, load_results
from searchd.state.signing import load_key
from searchd.worker.events import Events
from searchd.worker.job import JobRun

pytestmark = pytest.mark.timeout(60)

HEAD = """
[data]
source = "sklearn:iris"
[search]
cv = {cv}
"""
KNN = """
[models.knn]
estimator = "KNeighborsClassifier"
grid = {{ n_neighbors = {ks} }}
"""
TREE = """
[models.tree]
estimator = "DecisionTreeClassifier"
params = { random_state = 0 }
grid = { max_depth = [1, 2, 3] }
"""


def text(ks: str = "[1, 3, 5]", cv: int = 3, tree: bool = False, knn: bool = True) -> str:
    return HEAD.format(cv=cv) + (KNN.format(ks=ks) if knn else "") + (TREE if tree else "")


class Sent:
    """Events(None) that remembers what the worker said."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    def send(self, ev: Any) -> None:
        self.events.append(ev)


def run(tmp: Path, job_text: str, job: str = "j") -> tuple[JobResults, int, list[Any]]:
    """Freeze ``job_text`` as job ``job`` (as an accepted edit does) and run its worker
    here; returns the results, the fits computed by this run, and the worker's events."""
    state, jobs = tmp / "state", tmp / "jobs"
    for d in (state, jobs, state / job):
        d.mkdir(exist_ok=True)
    load_key(state, create=True)
    (state / job / "job.toml").write_text(job_text)
    (jobs / f"{job}.toml").write_text(job_text)
    before = fits_logged_at(state, job)
    settings = Settings(state_dir=state, jobs_dir=jobs, n_jobs=1)
    events = Events(None)
    sent = Sent()
    events.send = sent.send  # type: ignore[method-assign]
    assert JobRun(state / job, job, settings, events).run() == 0
    return load_results(job, state), fits_logged_at(state, job) - before, sent.events


def fits_logged_at(state: Path, job: str) -> int:
    try:
        return (state / job / "fits.log").stat().st_size
    except FileNotFoundError:
        return 0


def same_as_gridsearch(tmp: Path, res: JobResults, job: str = "j") -> None:
    assert assert_same_as_gridsearch(res, tmp / "jobs" / f"{job}.toml") > 0


def test_grid_extended_computes_only_the_new_candidates(tmp_path: Path) -> None:
    res, n, _ = run(tmp_path, text("[1, 3, 5]"))
    assert n == 9
    res, n, ev = run(tmp_path, text("[1, 3, 5, 7, 9]"))
    assert n == 2 * 3
    same_as_gridsearch(tmp_path, res)
    [reuse] = [e for e in ev if e.kind == "reuse"]
    assert (reuse.reused, reuse.new_candidates, reuse.new_fits) == (9, 2, 6)


def test_value_removed_costs_nothing_and_putting_it_back_neither(tmp_path: Path) -> None:
    run(tmp_path, text("[1, 3, 5]"))
    res, n, _ = run(tmp_path, text("[1, 5]"))
    assert n == 0
    assert [p["n_neighbors"] for p in res["knn"].cv_results_["params"]] == [1, 5]
    same_as_gridsearch(tmp_path, res)
    res, n, _ = run(tmp_path, text("[1, 3, 5]"))
    assert n == 0
    same_as_gridsearch(tmp_path, res)


def test_type_removed_then_restored_and_a_type_added(tmp_path: Path) -> None:
    _, n, _ = run(tmp_path, text(tree=True))
    assert n == (3 + 3) * 3
    res, n, _ = run(tmp_path, text(tree=False))
    assert n == 0 and list(res.models) == ["knn"]
    res, n, _ = run(tmp_path, text(tree=True))
    assert n == 0 and list(res.models) == ["knn", "tree"]
    assert res["tree"].best_estimator_ is not None
    same_as_gridsearch(tmp_path, res)
    # a type added: only its fits
    res, n, _ = run(tmp_path, text(tree=True) + """
[models.lr]
estimator = "LogisticRegression"
params = { max_iter = 300 }
grid = { C = [0.1, 1.0] }
""")
    assert n == 2 * 3 and list(res.models) == ["knn", "tree", "lr"]
    same_as_gridsearch(tmp_path, res)


def test_cv_changed_starts_over_and_archives_the_old_results(tmp_path: Path) -> None:
    run(tmp_path, text(cv=3))
    res, n, ev = run(tmp_path, text(cv=4))
    assert n == 3 * 4
    same_as_gridsearch(tmp_path, res)
    [h] = entries(tmp_path / "state" / "j")
    assert (h.n, h.fits, h.why) == (1, 9, "search.cv changed")
    [reuse] = [e for e in ev if e.kind == "reuse"]
    assert reuse.archived == 1 and reuse.why == "search.cv changed"
