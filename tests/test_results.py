"""The pure functions of a model type's results, tested directly: rows by content key,
adopt, finish and ranking (against a real GridSearchCV), the replay of checkpoint deltas,
the snapshot's pickled form (today's dicts still load), and the choice of the best type."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.dummy import DummyClassifier
from sklearn.exceptions import FitFailedWarning
from sklearn.model_selection import GridSearchCV, KFold, ParameterGrid

import searchd
from searchd.cli.export import best_model
from searchd.errors import NotFoundError
from searchd.jobs.spec import ModelSpec
from searchd.state import checkpoint
from searchd.state.checkpoint import BASE, ResultsCheckpoint, Snapshot, apply, read_results
from searchd.state.results import DONE, PENDING, RUNNING, ModelResults, best_type
from searchd.state.signing import load_key
from searchd.state.store import CheckpointStore
from searchd.worker.strategy import GridStrategy

FOLDS = 3


def _res(keys: list[str], spec_key: str = "spec", folds: int = FOLDS,
         scorers: tuple[str, ...] = ("score",)) -> ModelResults:
    return ModelResults.empty("m", spec_key, list(keys), [{"p": k} for k in keys], scorers,
                              scorers[0], folds)


def _fill(res: ModelResults, i: int, value: float, folds: range | None = None) -> None:
    for f in folds if folds is not None else range(res.n_folds):
        res.record(i, f, {s: value + f / 100 for s in res.scorers}, 0.5 + i, 0.1, None)


@pytest.fixture
def store(tmp_path: Path) -> CheckpointStore:
    d = tmp_path / "job"
    d.mkdir()
    return CheckpointStore(d, load_key(tmp_path, create=True), "job")


# --- rows by content key ------------------------------------------------------------------------

def test_add_candidates_appends_new_rows_and_finds_known_ones_by_key() -> None:
    res = _res([])
    assert res.fits_total == 0 and res.pending() == []
    assert res.add_candidates(["a", "b"], [{"p": 1}, {"p": 2}]) == [0, 1]
    _fill(res, 0, 0.5)
    assert res.add_candidates(["c", "a", "c"], [{"p": 3}, {"p": 1}, {"p": 3}]) == [2, 0, 2]
    assert res.keys == ["a", "b", "c"] and res.params[2] == {"p": 3}
    assert res.fits_total == 3 * FOLDS and res.fits_done == FOLDS
    assert res.scores["score"].shape == res.done.shape == res.fit_time.shape == (3, FOLDS)
    assert res.scores["score"][0, 1] == 0.51 and np.isnan(res.scores["score"][2]).all()
    assert res.pending([2, 0]) == [(2, 0), (2, 1), (2, 2)]
    assert res.pending() == [(1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2)]
    # the key index is a cache, never pickled
    back = pickle.loads(pickle.dumps(res))
    assert "_index" not in back.__dict__ and back.row_of("c") == 2 and back.row_of("x") is None


def test_grid_strategy_proposes_the_whole_grid_once_in_parameter_grid_order() -> None:
    grid = ({"k": [3, 1, 2], "w": ["u", "d"]}, {"k": [9]})
    strategy = GridStrategy(cast(ModelSpec, SimpleNamespace(grid=grid)))
    res = _res([])
    first = strategy.next_batch(res)
    assert first == list(ParameterGrid([dict(g) for g in grid]))
    assert strategy.next_batch(res) is None


# --- adopt --------------------------------------------------------------------------------------

def test_adopt_takes_results_by_key_from_another_order_and_a_partial_run() -> None:
    old = _res(["a", "b", "c", "d"])
    _fill(old, 0, 0.1)
    _fill(old, 2, 0.3, range(0, 2))  # c: two folds of three
    old.record(3, 1, None, 0.2, 0.0, "ValueError: boom")
    new = _res(["d", "x", "c", "a"])  # another order, b removed, x added
    assert new.adopt(old) == FOLDS + 2 + 1
    assert new.done.tolist() == [[False, True, False], [False] * 3, [True, True, False],
                                 [True] * 3]
    np.testing.assert_array_equal(new.scores["score"][3], old.scores["score"][0])
    np.testing.assert_array_equal(new.fit_time[2], old.fit_time[2])
    assert new.errors == {(0, 1): "ValueError: boom"}
    assert new.state == PENDING and new.best_index is None


def test_adopt_takes_nothing_of_another_spec_or_fold_count() -> None:
    old = _res(["a"])
    _fill(old, 0, 0.1)
    assert _res(["a"], spec_key="other").adopt(old) == 0
    assert _res(["a"], folds=FOLDS + 1).adopt(old) == 0


def test_adopt_of_given_rows_leaves_the_others_alone() -> None:
    old = _res(["a", "b"])
    _fill(old, 0, 0.1)
    _fill(old, 1, 0.2)
    new = _res(["a"])
    _fill(new, 0, 0.9)  # computed here since: must not be replaced by the older result
    rows = new.add_candidates(["b"], [{"p": "b"}])
    assert new.adopt(old, rows) == FOLDS
    assert new.scores["score"][0, 0] == 0.9 and new.scores["score"][1, 0] == 0.2


def test_adopt_of_a_done_type_keeps_its_best_by_key() -> None:
    old = _res(["a", "b", "c"])
    for i, v in enumerate([0.2, 0.9, 0.5]):
        _fill(old, i, v)
    old.finish()
    old.state, old.test_score, old.refit_time = DONE, {"score": 0.8}, 1.5
    assert old.best_index == 1
    new = _res(["c", "b", "a"])
    new.adopt(old)
    assert new.state == DONE and new.best_index == 1 and new.best_params == {"p": "b"}
    assert new.test_score == {"score": 0.8} and new.refit_time == 1.5
    moved = _res(["b", "c", "a"])
    moved.adopt(old)
    assert moved.best_index == 0 and moved.best_score == old.best_score
    # a new candidate (not done) or a removed best: the type is not done
    grown = _res(["a", "b", "c", "z"])
    grown.adopt(old)
    assert grown.state == PENDING and grown.best_index is None
    shrunk = _res(["a", "c"])
    shrunk.adopt(old)
    assert shrunk.state == PENDING and shrunk.best_index is None


# --- finish and ranking, against GridSearchCV ----------------------------------------------

def _gridsearch(grid: dict[str, list[Any]], scoring: Any = None, refit: Any = True
                ) -> tuple[GridSearchCV, list[Any]]:
    X, y = load_iris(return_X_y=True)
    cv = list(KFold(FOLDS, shuffle=True, random_state=0).split(X, y))
    gs = GridSearchCV(DummyClassifier(random_state=0), grid, cv=cv, scoring=scoring,
                      refit=refit, error_score=np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitFailedWarning)
        warnings.simplefilter("ignore", UserWarning)  # "one or more test scores are non-finite"
        gs.fit(X, y)
    return gs, list(ParameterGrid(grid))


def _from(gs: GridSearchCV, cands: list[Any], scorers: tuple[str, ...], refit: str,
          suffix: dict[str, str]) -> ModelResults:
    """searchd's results from GridSearchCV's split scores (as the worker records them)."""
    res = ModelResults.empty("m", "spec", [str(i) for i in range(len(cands))], cands,
                             scorers, refit, FOLDS)
    cv = gs.cv_results_
    for i in range(len(cands)):
        for f in range(FOLDS):
            scores = {s: float(cv[f"split{f}_test_{suffix[s]}"][i]) for s in scorers}
            failed = all(np.isnan(v) for v in scores.values())
            res.record(i, f, None if failed else scores, 0.0, 0.0, "E" if failed else None)
    return res


def test_finish_and_ranks_equal_gridsearch_with_ties_and_failed_candidates() -> None:
    # most_frequent and prior score the same (a tie); constant without a constant fails
    # every fit (NaN, ranked last); stratified and uniform differ
    grid = {"strategy": ["uniform", "most_frequent", "constant", "prior", "stratified"]}
    gs, cands = _gridsearch(grid)
    res = _from(gs, cands, ("score",), "score", {"score": "score"})
    assert res.finish() == gs.best_index_
    assert res.best_score == gs.best_score_ and res.best_params == gs.best_params_
    ours = res.cv_results()
    for k in ("mean_test_score", "std_test_score", "rank_test_score"):
        np.testing.assert_array_equal(ours[k], gs.cv_results_[k], err_msg=k)
    assert ours["rank_test_score"].dtype == gs.cv_results_["rank_test_score"].dtype
    assert list(ours["rank_test_score"]).count(ours["rank_test_score"][1]) == 2  # the tie


def test_finish_with_two_scorers_ranks_by_the_refit_one_as_gridsearch() -> None:
    grid = {"strategy": ["uniform", "most_frequent", "stratified", "prior"]}
    scoring = {"accuracy": "accuracy", "f1": "f1_macro"}
    gs, cands = _gridsearch(grid, scoring=scoring, refit="f1")
    res = _from(gs, cands, ("accuracy", "f1"), "f1", {"accuracy": "accuracy", "f1": "f1"})
    assert res.finish() == gs.best_index_
    ours = res.cv_results()
    for s in ("accuracy", "f1"):
        np.testing.assert_array_equal(ours[f"rank_test_{s}"], gs.cv_results_[f"rank_test_{s}"])
        np.testing.assert_array_equal(ours[f"mean_test_{s}"], gs.cv_results_[f"mean_test_{s}"])


def test_ranking_rule_ties_share_the_lowest_rank_and_nan_ranks_last() -> None:
    res = _res(["a", "b", "c", "d", "e"])
    for i, v in enumerate([0.5, 0.9, np.nan, 0.9, 0.0]):
        for f in range(FOLDS):
            res.record(i, f, None if np.isnan(v) else {"score": v}, 0.0, 0.0, None)
    assert res.cv_results()["rank_test_score"].tolist() == [3, 1, 5, 1, 4]
    assert res.finish() == 1  # the first of the tied best, as GridSearchCV's argmin


def test_all_failed_ranks_every_candidate_first_and_picks_the_first() -> None:
    res = _res(["a", "b", "c"])
    for i in range(3):
        for f in range(FOLDS):
            res.record(i, f, None, 0.1, 0.0, "ValueError: no")
    assert res.cv_results()["rank_test_score"].tolist() == [1, 1, 1]
    assert res.finish() == 0 and res.best_score is not None and np.isnan(res.best_score)
    assert res.summary()["best_score"] is None


# --- replaying deltas -----------------------------------------------------------------------------

def test_apply_replays_entries_in_order_by_key_and_the_last_wins() -> None:
    res = _res(["a", "b"])
    models = {"m": res}
    entries: list[checkpoint.Entry] = [
        ("m", "b", 0, {"score": 0.1}, 1.0, 0.1, None),
        ("m", "a", 2, None, 1.0, 0.0, "ValueError: x"),
        ("m", "a", 2, {"score": 0.7}, 2.0, 0.2, None),  # the same task again: replaces it
        ("m", "b", 0, None, 3.0, 0.0, "MemoryError: y"),
        ("gone", "a", 0, {"score": 1.0}, 1.0, 0.1, None),  # a removed model type
        ("m", "zz", 0, {"score": 1.0}, 1.0, 0.1, None),  # a removed candidate
        ("m", "a", FOLDS, {"score": 1.0}, 1.0, 0.1, None),  # no such fold
        ("m", "a", -1, {"score": 1.0}, 1.0, 0.1, None),
    ]
    assert apply(models, entries) == 4
    assert res.fits_done == 2
    assert res.scores["score"][0, 2] == 0.7 and res.fit_time[0, 2] == 2.0
    assert np.isnan(res.scores["score"][1, 0]) and res.fit_time[1, 0] == 3.0
    assert res.errors == {(1, 0): "MemoryError: y"}


def test_read_results_applies_the_deltas_of_its_base_in_sequence(store: CheckpointStore) -> None:
    res = _res(["a", "b"])
    base = Snapshot(job="job", spec_digest="s", data_digest="d", splits=[], models={"m": res},
                    saved_at=1.0)
    store.write(BASE, {**base.to_dict(), "gen": "g1"})
    store.write_once("results.d000001", {"gen": "g1", "seq": 1, "entries": [
        ("m", "a", 0, {"score": 0.1}, 1.0, 0.1, None)]})
    store.write_once("results.d000002", {"gen": "g1", "seq": 2, "entries": [
        ("m", "a", 0, {"score": 0.2}, 1.0, 0.1, None), ("m", "b", 1, None, 1.0, 0.0, "E")]})
    store.write_once("results.d000003", {"gen": "g0", "seq": 3, "entries": [
        ("m", "b", 2, {"score": 0.9}, 1.0, 0.1, None)]})  # another base's: ignored
    back, refused = read_results(store)
    assert refused == [] and back is not None and back.gen == "g1"
    m = back.models["m"]
    assert m.fits_done == 2 and m.scores["score"][0, 0] == 0.2 and m.errors == {(1, 1): "E"}


def test_rows_added_after_a_base_are_in_the_next_base(store: CheckpointStore) -> None:
    """A strategy's second batch: a delta names rows by key, so new rows need a base."""
    res = _res(["a"])
    ck = ResultsCheckpoint(store)

    def snap() -> Snapshot:
        return Snapshot(job="job", spec_digest="s", data_digest="d", splits=[],
                        models={"m": res}, saved_at=1.0)

    ck.flush(snap)
    rows = res.add_candidates(["b"], [{"p": "b"}])
    ck.note_rows()
    res.record(rows[0], 0, {"score": 0.4}, 1.0, 0.1, None)
    ck.note(("m", "b", 0, {"score": 0.4}, 1.0, 0.1, None))
    ck.flush(snap)
    assert ck.seq == 0 and not list(store.dir.glob("results.d*.ckpt"))  # a base, no delta
    res.record(0, 1, {"score": 0.3}, 1.0, 0.1, None)
    ck.note(("m", "a", 1, {"score": 0.3}, 1.0, 0.1, None))
    ck.flush(snap)
    assert ck.seq == 1  # no rows added since: a delta again
    back, _ = read_results(store)
    assert back is not None and back.models["m"].keys == ["a", "b"]
    assert back.models["m"].fits_done == 2


# --- the snapshot's pickled form ----------------------------------------------------------

def _old_model_results() -> ModelResults:
    """A ModelResults as today's version pickles it: its fields, nothing else."""
    res = _res(["k0", "k1"])
    _fill(res, 0, 0.6)
    res.__dict__.pop("_index", None)
    return res


def test_a_checkpoint_in_todays_format_loads(store: CheckpointStore) -> None:
    splits = [(np.arange(0, 10), np.arange(10, 15))] * FOLDS
    # exactly what JobRun.snapshot() returned and ResultsCheckpoint._write_base wrote
    old_base = {"job": "job", "spec_digest": "sd", "data_digest": "dd", "splits": splits,
                "models": {"m": _old_model_results()}, "saved_at": 12.5, "gen": "abc"}
    store.write(BASE, old_base)
    store.write_once("results.d000001", {"gen": "abc", "seq": 1, "entries": [
        ("m", "k1", 2, {"score": 0.25}, 0.5, 0.05, None)]})
    snap, refused = read_results(store)
    assert refused == [] and isinstance(snap, Snapshot)
    assert (snap.job, snap.spec_digest, snap.data_digest, snap.saved_at, snap.gen) == \
        ("job", "sd", "dd", 12.5, "abc")
    assert len(snap.splits) == FOLDS and snap.extra == {}
    m = snap.models["m"]
    assert m.fits_done == FOLDS + 1 and m.scores["score"][1, 2] == 0.25
    assert m.row_of("k1") == 1  # the key index is rebuilt for an old object


def test_the_base_is_still_a_plain_dict_with_todays_keys(store: CheckpointStore) -> None:
    res = _res(["a"])
    snap = Snapshot(job="job", spec_digest="s", data_digest="d", splits=[], models={"m": res},
                    saved_at=3.0, extra={"added_later": 1})
    ResultsCheckpoint(store).flush(lambda: snap)
    raw, _ = store.read(BASE)
    assert type(raw) is dict
    assert set(raw) == {"job", "spec_digest", "data_digest", "splits", "models", "saved_at",
                        "gen", "added_later"}
    assert Snapshot.from_dict(raw).to_dict() == raw


# --- the best model type -------------------------------------------------------------------------

def _done(best: float | None, refit_error: str | None = None) -> ModelResults:
    res = _res(["a"])
    if best is not None:
        _fill(res, 0, best, range(0, 1))
        for f in range(1, FOLDS):
            res.record(0, f, {"score": best}, 0.0, 0.0, None)
        res.finish()
    res.state, res.refit_error = DONE, refit_error
    return res


def test_best_type_counts_a_zero_score_as_a_score() -> None:
    assert best_type({"neg": _done(-0.5), "zero": _done(0.0), "neg2": _done(-0.1)}) == "zero"
    assert best_type({"zero": _done(0.0), "tie": _done(0.0)}) == "zero"  # first listed
    nan = _done(None)
    for f in range(FOLDS):
        nan.record(0, f, None, 0.0, 0.0, "E")
    nan.finish()
    assert best_type({"nan": nan, "low": _done(-3.0)}) == "low"
    running = _done(0.9)
    running.state = RUNNING
    assert best_type({"running": running, "failed": _done(0.8, "refit failed"),
                      "ok": _done(-1.0)}) == "ok"
    assert best_type({"running": running}) is None


def test_load_results_best_and_export_agree_on_a_zero_score(tmp_path: Path) -> None:
    state = tmp_path / "state"
    job_dir = state / "j"
    job_dir.mkdir(parents=True)
    store = CheckpointStore(job_dir, load_key(state, create=True), "j")
    models = {"neg": _done(-0.25), "zero": _done(0.0)}
    ResultsCheckpoint(store).flush(lambda: Snapshot(
        job="j", spec_digest="s", data_digest="d", splits=[], models=models, saved_at=0.0))
    for name in models:
        store.write(f"model-{name}", {"name": name, "estimator": DummyClassifier()})
    results = searchd.load_results("j", state)
    assert results.best.name == "zero" and results.best.best_score_ == 0.0
    assert best_model(state, "j", None)[0] == "zero"


def test_load_results_best_without_a_finished_type(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "j").mkdir(parents=True)
    store = CheckpointStore(state / "j", load_key(state, create=True), "j")
    ResultsCheckpoint(store).flush(lambda: Snapshot(
        job="j", spec_digest="s", data_digest="d", splits=[], models={"m": _res(["a"])},
        saved_at=0.0))
    with pytest.raises(NotFoundError, match="no model type has finished"):
        _ = searchd.load_results("j", state).best
