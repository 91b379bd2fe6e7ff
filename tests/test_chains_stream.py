"""A chain's links stream from the pool's processes as each is scored: the worker has the
earlier links of a chain in the pool while a later one is still fitting (so a kill loses
only the link in flight), every score GridSearchCV's to the bit; and the file they travel
in is data, read back to the bit."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from searchd.worker import linkstream
from searchd.worker.chains import as_task, named
from searchd.worker.evaluate import Outcome
from searchd.worker.local_runner import LocalRunner
from searchd.worker.poison import FitGuard
from searchd.worker.taskstream import END, TaskStream

pytestmark = pytest.mark.timeout(120)

SIZES = [1, 3, 5, 8]
#: how long the last link waits for the test to have seen the others
GATE_SECONDS = 30.0


class GatedScore:
    """Scores as ``est.score``; the chain's last link first waits for ``gate`` to exist
    (the test makes it once it has received the links before it)."""

    def __init__(self, gate: str) -> None:
        self.gate = gate

    def __call__(self, est: Any, X: Any, y: Any) -> dict[str, float]:
        if est.n_estimators == SIZES[-1]:
            until = time.monotonic() + GATE_SECONDS
            while not Path(self.gate).exists() and time.monotonic() < until:
                time.sleep(0.02)
        return {"score": est.score(X, y)}


def test_a_chains_links_reach_the_worker_as_each_is_scored(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_inline_fits(self: LocalRunner, st: TaskStream) -> None:
        st.out.put(END)  # every task goes to the pool's process

    monkeypatch.setattr(LocalRunner, "_inline", no_inline_fits)
    X, y = load_iris(return_X_y=True)
    splits = [(np.asarray(a), np.asarray(b))
              for a, b in StratifiedKFold(3, shuffle=True, random_state=0).split(X, y)]
    template = RandomForestClassifier(random_state=0, max_depth=3)
    built = {i: {"n_estimators": k} for i, k in enumerate(SIZES)}
    chain = as_task([(i, 0) for i in range(len(SIZES))], built, "n_estimators")
    gate = tmp_path / "gate"
    runner = LocalRunner(2, X, y, splits, scratch=tmp_path / "pool-data")
    events: list[Any] = []
    try:
        runner.start_pool()
        assert runner.ready.wait(60) and runner.start_error is None
        began = time.monotonic()
        for o in runner.stream(template, [chain], GatedScore(str(gate)), count=len(SIZES)):
            events.append(o)
            if len(events) == len(SIZES) - 1:  # every link before the last, from the pool
                events.append("gate")
                gate.touch()
        took = time.monotonic() - began
    finally:
        runner.close()
    assert events.index("gate") == len(SIZES) - 1, events  # the last link came after it
    assert took < GATE_SECONDS, "the earlier links only came when the chain ended"
    outcomes = [o for o in events if isinstance(o, Outcome)]
    assert [o.i for o in outcomes] == list(range(len(SIZES)))
    gs = GridSearchCV(template, {"n_estimators": SIZES}, cv=splits).fit(X, y)
    for o in outcomes:
        assert o.scores == {"score": gs.cv_results_["split0_test_score"][o.i]}
    assert not list((tmp_path / "pool-data").glob("links-*"))  # each batch's file removed


def test_the_link_file_is_read_back_to_the_bit(tmp_path: Path) -> None:
    path = tmp_path / "links.jsonl"
    w = linkstream.Writer(str(path))
    sent = [Outcome(0, 1, {"score": 0.1 + 0.2, "nan": float("nan")}, 1 / 3, 2e-300, None),
            Outcome(1, 1, None, 0.5, 0.0, "ValueError: bad")]
    r = linkstream.Reader(path)
    assert r.read() == []
    w.put(sent[0])
    with open(path, "ab") as f:
        f.write(linkstream.encode(sent[1])[:10])  # a line still being written
    got = r.read()
    assert len(got) == 1 and got[0].scores is not None
    assert got[0].scores["score"] == 0.1 + 0.2 and np.isnan(got[0].scores["nan"])
    assert (got[0].fit_time, got[0].score_time) == (1 / 3, 2e-300)
    w.close()
    with open(path, "ab") as f:
        f.write(linkstream.encode(sent[1])[10:] + b'{"i": "not a row"}\n')
    assert r.read() == [sent[1]] and r.count == 2 and r.seen == {(0, 1), (1, 1)}
    assert r.read() == []  # the bad line ended the reading; the batch's result says the rest


class DiesAtLink:
    """Scores as ``est.score``; the first time a link of size ``size`` is scored, its
    process dies (a marker file says it did); every scoring is logged to ``log``."""

    def __init__(self, size: int, marker: str, log: str) -> None:
        self.size, self.marker, self.log = size, marker, log

    def __call__(self, est: Any, X: Any, y: Any) -> dict[str, float]:
        with open(self.log, "a") as f:
            f.write(f"{est.n_estimators}\n")
        if est.n_estimators == self.size and not Path(self.marker).exists():
            Path(self.marker).touch()
            os._exit(9)
        return {"score": est.score(X, y)}


@pytest.mark.slow  # a pool process killed for real mid-chain: the extended tier
def test_a_pool_death_mid_chain_loses_only_the_link_in_flight(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_inline_fits(self: LocalRunner, st: TaskStream) -> None:
        st.out.put(END)

    monkeypatch.setattr(LocalRunner, "_inline", no_inline_fits)
    X, y = load_iris(return_X_y=True)
    splits = [(np.asarray(a), np.asarray(b))
              for a, b in StratifiedKFold(3, shuffle=True, random_state=0).split(X, y)]
    template = RandomForestClassifier(random_state=0, max_depth=3)
    sizes = [1, 2, 4, 6, 9]
    built = {i: {"n_estimators": k} for i, k in enumerate(sizes)}
    chain = named(as_task([(i, 0) for i in range(len(sizes))], built, "n_estimators"),
                  lambda i, f: f"{f} c{i} rf")
    (tmp_path / "job").mkdir()
    guard = FitGuard(tmp_path / "job", 0.0)
    guard.start()
    log = tmp_path / "scored.log"
    scoring = DiesAtLink(sizes[3], str(tmp_path / "died"), str(log))
    runner = LocalRunner(2, X, y, splits, scratch=tmp_path / "pool-data", guard=guard)
    try:
        runner.start_pool()
        assert runner.ready.wait(60) and runner.start_error is None
        out = list(runner.stream(template, [chain], scoring, count=len(sizes)))
    finally:
        runner.close()
    # links 0-2 came before the death and are not fitted again; link 3 died in flight (held
    # for the job to run alone, struck once); link 4 ran again, afresh at its size
    assert sorted(o.i for o in out) == [0, 1, 2, 4]
    assert [int(n) for n in log.read_text().split()] == [1, 2, 4, 6, 9]
    assert guard.strikes.deaths("0 c3 rf") == 1
    gs = GridSearchCV(template, {"n_estimators": sizes}, cv=splits).fit(X, y)
    for o in out:
        assert o.scores == {"score": gs.cv_results_["split0_test_score"][o.i]}


def test_a_killed_workers_link_files_are_removed_at_the_next_start(tmp_path: Path) -> None:
    pool = tmp_path / "pool-data"
    pool.mkdir()
    (pool / "links-0123.jsonl").write_bytes(linkstream.encode(Outcome(0, 0, None, 0, 0, "x")))
    (pool / "data.joblib").write_bytes(b"kept")
    X, y = load_iris(return_X_y=True)
    LocalRunner(2, X, y, [], scratch=pool)
    assert [p.name for p in pool.iterdir()] == ["data.joblib"]
    LocalRunner(2, X, y, [], scratch=tmp_path / "none")  # no folder yet: nothing to do


def test_a_chains_links_come_from_a_dask_cluster_as_each_is_scored(tmp_path: Path) -> None:
    import distributed

    from searchd.worker.dask_runner import DaskCluster
    X, y = load_iris(return_X_y=True)
    splits = [(np.asarray(a), np.asarray(b))
              for a, b in StratifiedKFold(3, shuffle=True, random_state=0).split(X, y)]
    template = RandomForestClassifier(random_state=0, max_depth=3)
    built = {i: {"n_estimators": k} for i, k in enumerate(SIZES)}
    chain = as_task([(i, 0) for i in range(len(SIZES))], built, "n_estimators")
    gate = tmp_path / "gate"
    events: list[Any] = []
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as lc:
        runner = DaskCluster(lc.scheduler_address, "j", X, y, splits)
        try:
            began = time.monotonic()
            for o in runner.stream(template, [chain], GatedScore(str(gate)), count=4):
                events.append(o)
                if len(events) == len(SIZES) - 1:
                    events.append("gate")
                    gate.touch()
            took = time.monotonic() - began
        finally:
            runner.close()
    assert events.index("gate") == len(SIZES) - 1, events  # each link once, the last after
    assert took < GATE_SECONDS, "the earlier links only came when the chain ended"
    gs = GridSearchCV(template, {"n_estimators": SIZES}, cv=splits).fit(X, y)
    outcomes = [o for o in events if isinstance(o, Outcome)]
    assert sorted(o.i for o in outcomes) == list(range(len(SIZES)))
    for o in outcomes:
        assert o.scores == {"score": gs.cv_results_["split0_test_score"][o.i]}
