"""Living job files: an edited job continues from every result it already has.

The worker runs in this process on the frozen spec as the supervisor leaves it after an
edit; ``fits.log`` counts the fits it really computed. Scores are compared with
GridSearchCV on the grid as edited, value by value."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from reference import assert_same_as_gridsearch

import searchd
from searchd.settings import Settings
from searchd.state.history import entries
from searchd.state.read import JobResults, load_results
from searchd.state.signing import load_key
from searchd.worker.events import Events
from searchd.worker.job import JobRun

# a loaded 2-core machine runs these 4x slower
pytestmark = [pytest.mark.timeout(180)]


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
    settings = Settings(state_dir=state, jobs_dir=jobs, n_jobs=1, report=False)
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
    model = tmp_path / "state" / "j" / "model-tree.ckpt"
    refitted = model.stat().st_mtime_ns
    res, n, _ = run(tmp_path, text(tree=True))
    assert n == 0 and list(res.models) == ["knn", "tree"]
    assert res["tree"].best_estimator_ is not None and res["tree"].state == "done"
    assert model.stat().st_mtime_ns == refitted, "its best is the same: no refit"
    same_as_gridsearch(tmp_path, res)
    # a type added: only its fits
    res, n, _ = run(tmp_path, text(tree=True) + """
[models.nb]
estimator = "GaussianNB"
grid = { var_smoothing = [1e-9, 1e-3] }
""")
    assert n == 2 * 3 and list(res.models) == ["knn", "tree", "nb"]
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


def cli(capsys: pytest.CaptureFixture[str], tmp: Path, *args: str) -> str:
    from searchd.cli.main import main
    code = main([*args, "--state", str(tmp / "state"), "--jobs", str(tmp / "jobs")])
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


def test_history_is_listed_shown_and_exported(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from searchd.state.records import JobRecord, write_summary
    old, _, _ = run(tmp_path, text(cv=3))
    run(tmp_path, text(cv=4))
    write_summary(tmp_path / "state", JobRecord(id="j"))
    shown = json.loads(cli(capsys, tmp_path, "show", "j", "--json"))
    [h] = shown["history"]
    assert (h["n"], h["why"], h["fits"]) == (1, "search.cv changed", 9)
    assert "1: " in cli(capsys, tmp_path, "show", "j") and "search.cv changed" in \
        cli(capsys, tmp_path, "show", "j")
    past = json.loads(cli(capsys, tmp_path, "show", "j", "--history", "1", "--json"))
    cv = past["models"]["knn"]["cv_results"]
    assert "split2_test_score" in cv and "split3_test_score" not in cv
    assert cv["mean_test_score"] == old["knn"].cv_results_["mean_test_score"].tolist()
    back = searchd.load_results("j", tmp_path / "state", history=1)
    assert back["knn"].best_params_ == old["knn"].best_params_
    out = cli(capsys, tmp_path, "export", "j", "--history", "1", "-o", str(tmp_path / "m.pkl"))
    assert "history 1" in out and (tmp_path / "m.pkl").stat().st_size > 0
    verified = cli(capsys, tmp_path, "verify", "j")
    assert "/history/1/results.ckpt" in verified and ", 0 bad" in verified


def test_validate_says_what_an_edit_would_reuse(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    run(tmp_path, text("[1, 3, 5]"))
    edited = tmp_path / "edit" / "j.toml"
    edited.parent.mkdir()
    edited.write_text(text("[1, 3, 5, 7, 9]"))
    out = cli(capsys, tmp_path, "validate", str(edited))
    assert "as an edit of job 'j': 9 fits reused (from job 'j'), +2 candidates (6 fits)" in out
    edited.write_text(text("[1, 3, 5]", cv=5))
    plan = json.loads(cli(capsys, tmp_path, "validate", str(edited), "--json"))
    assert plan["edit"] == {"job": "j", "starts_over": True, "why": "search.cv changed",
                            "archived_fits": 9}


def test_a_new_job_in_the_same_context_reuses_another_jobs_results(tmp_path: Path) -> None:
    from searchd.cli.editing import edit_note
    run(tmp_path, text("[1, 3, 5]"), job="a")
    res, n, ev = run(tmp_path, text("[1, 3, 5, 7]", tree=True), job="b")
    assert n == 1 * 3 + 3 * 3  # knn's new candidate and the tree: a's knn results reused
    same_as_gridsearch(tmp_path, res, "b")
    [reuse] = [e for e in ev if e.kind == "reuse"]
    assert reuse.borrowed == {"a": 9} and reuse.reused == 9
    assert "(9 from job a)" in edit_note({"at": 0, "reused": 9, "new_candidates": 4,
                                          "new_fits": 12, "borrowed": reuse.borrowed})
    # another context (cv): nothing borrowed
    _, n, ev = run(tmp_path, text("[1, 3, 5]", cv=4), job="c")
    assert n == 3 * 4 and not [e for e in ev if e.kind == "reuse"]


def test_a_type_whose_params_changed_starts_over_alone_and_changing_back_is_free(
        tmp_path: Path) -> None:
    run(tmp_path, text(tree=True))
    other = text(tree=True).replace("random_state = 0", "random_state = 1")
    res, n, _ = run(tmp_path, other)
    assert n == 3 * 3, "only the tree's fits: knn is untouched"
    same_as_gridsearch(tmp_path, res)
    res, n, _ = run(tmp_path, text(tree=True))
    assert n == 0 and res["tree"].best_estimator_.get_params()["random_state"] == 0
    same_as_gridsearch(tmp_path, res)


def test_removing_the_best_refits_the_new_best(tmp_path: Path) -> None:
    first, _, _ = run(tmp_path, text("[1, 5, 9, 15]"))
    best = first["knn"].best_params_["n_neighbors"]
    rest = [k for k in (1, 5, 9, 15) if k != best]
    res, n, _ = run(tmp_path, text(str(rest)))
    assert n == 0
    same_as_gridsearch(tmp_path, res)  # the best is GridSearchCV's on the edited grid
    assert res["knn"].best_params_["n_neighbors"] != best
    assert res["knn"].best_estimator_.get_params()["n_neighbors"] == \
        res["knn"].best_params_["n_neighbors"], "the new best is refitted"


def test_data_changed_under_the_same_file_is_archived_not_lost(tmp_path: Path) -> None:
    import numpy as np
    from sklearn.datasets import load_iris
    X, y = load_iris(return_X_y=True)
    (tmp_path / "jobs").mkdir()
    np.savez(tmp_path / "jobs" / "d.npz", X=X, y=y)
    job = text().replace('"sklearn:iris"', '"npz:d.npz"')
    run(tmp_path, job)
    np.savez(tmp_path / "jobs" / "d.npz", X=X[::-1], y=y[::-1])  # same file, other rows
    res, n, _ = run(tmp_path, job)
    assert n == 9
    [h] = entries(tmp_path / "state" / "j")
    assert (h.why, h.fits) == ("the data changed (its content digest)", 9)
    assert not (tmp_path / "state" / "j" / "quarantine").exists()


def test_context_fields_a_later_version_added_are_no_change() -> None:
    from searchd.jobs.context import context_changes
    old = {"data": {"source": "csv:x.csv", "seed": 0}, "search": {"folds": 3},
           "preprocess": [{"name": "s", "estimator": "StandardScaler", "params": {}}]}
    new = {"data": {"source": "csv:x.csv", "seed": 0, "drop": []},
           "search": {"folds": 3, "shuffle": False},
           "preprocess": [{"name": "s", "estimator": "StandardScaler", "params": {},
                           "columns": None}]}
    assert context_changes(old, new) == []
    new["data"]["seed"], new["search"]["folds"] = 1, 4
    assert context_changes(old, new) == ["data.seed", "search.cv"]
