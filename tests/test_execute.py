"""LocalRunner: a small job is fitted by the worker alone; a bigger one moves to joblib's pool,
and either way every task is evaluated exactly once, with the scores evaluate() gives."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.metrics import check_scoring
from sklearn.model_selection import KFold
from sklearn.neighbors import KNeighborsClassifier

from searchd import execute
from searchd.execute import LocalRunner, Task, evaluate, longest_first

pytestmark = pytest.mark.timeout(120)


def problem() -> tuple[Any, np.ndarray, np.ndarray, list[Any], Any, list[Task]]:
    X, y = load_iris(return_X_y=True)
    splits = list(KFold(3, shuffle=True, random_state=0).split(X, y))
    template = KNeighborsClassifier()
    scoring = check_scoring(template, scoring=["accuracy"])
    tasks = [Task(i, f, {"n_neighbors": k}) for i, k in enumerate(range(1, 21))
             for f in range(3)]
    return template, X, y, splits, scoring, tasks


def expected(template: Any, X: np.ndarray, y: np.ndarray, splits: list[Any], scoring: Any,
             tasks: list[Task]) -> dict[tuple[int, int], dict[str, float] | None]:
    return {(t.i, t.fold): evaluate(template, t.params, X, y, *splits[t.fold], scoring, t.i,
                                    t.fold)[2] for t in tasks}


def test_a_small_job_never_starts_the_pool() -> None:
    template, X, y, splits, scoring, tasks = problem()
    runner = LocalRunner(2)
    got = {(i, f): s for i, f, s, _, _, err in
           runner.stream(template, tasks, X, y, splits, scoring) if err is None}
    assert got == expected(template, X, y, splits, scoring, tasks)
    assert runner.starter is None and runner.processes == 1


def test_a_bigger_job_hands_over_to_the_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(execute, "INLINE_SECONDS", 0.0)
    template, X, y, splits, scoring, tasks = problem()
    runner = LocalRunner(2)

    def slow_tasks() -> Iterator[Task]:
        yield from tasks[:5]  # fitted inline while the pool starts ...
        assert runner.ready.wait(60), "the pool never started"
        yield from tasks[5:]  # ... and the rest go to the pool

    outcomes = list(runner.stream(template, slow_tasks(), X, y, splits, scoring))
    assert sorted((i, f) for i, f, *_ in outcomes) == sorted((t.i, t.fold) for t in tasks)
    assert {(i, f): s for i, f, s, *_ in outcomes} == expected(template, X, y, splits,
                                                              scoring, tasks)
    assert runner.processes == 2


def test_one_job_means_no_pool_at_all(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(execute, "INLINE_SECONDS", 0.0)
    template, X, y, splits, scoring, tasks = problem()
    runner = LocalRunner(1)
    assert len(list(runner.stream(template, tasks, X, y, splits, scoring))) == len(tasks)
    assert runner.starter is None and runner.processes == 1


def test_longest_first_measures_each_candidate_then_runs_the_costliest_first() -> None:
    pending = [(i, f) for i in range(4) for f in range(3)]
    times = np.full(4, np.nan)

    def seconds() -> np.ndarray:
        return times.copy()

    order = longest_first(pending, seconds)
    first = [next(order) for _ in range(4)]
    assert first == [(0, 0), (1, 0), (2, 0), (3, 0)]  # one task each, grid order
    times[:] = [0.1, 2.0, np.nan, 0.5]  # candidate 2's time is not in yet: the median
    rest = list(order)
    assert rest == [(1, 1), (1, 2), (2, 1), (2, 2), (3, 1), (3, 2), (0, 1), (0, 2)]
    assert sorted(first + rest) == sorted(pending)  # every task exactly once


def test_longest_first_on_a_resumed_model() -> None:
    # candidates 0 and 1 were measured before the restart; 2 was not
    pending = [(0, 2), (1, 1), (1, 2), (2, 0), (2, 1)]
    times = np.array([3.0, 1.0, np.nan])
    assert list(longest_first(pending, lambda: times)) == \
        [(2, 0), (0, 2), (2, 1), (1, 1), (1, 2)]
    assert list(longest_first([], lambda: times)) == []


def test_the_pool_starts_once_the_work_left_outweighs_its_start() -> None:
    r = LocalRunner(2)
    assert not r._worth_a_pool(1, 0.0, 1000)  # one fit (often a slow first): no projection
    assert not r._worth_a_pool(3, 0.002, 250)  # 1 ms fits, 247 left: 0.25 s, stay alone
    assert r._worth_a_pool(3, 0.2, 250)  # 100 ms fits, 247 left: ~25 s, start the pool
    assert not r._worth_a_pool(5, 0.2, None)  # count unknown: only the 1-second rule
    r.inline_seconds = execute.INLINE_SECONDS
    assert r._worth_a_pool(0, 0.0, None)


def test_a_big_job_starts_the_pool_after_a_few_fits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(execute, "INLINE_SECONDS", 1000.0)  # only the projection can start it
    monkeypatch.setattr(execute, "POOL_WORTH_SECONDS", 0.0)
    template, X, y, splits, scoring, tasks = problem()
    runner = LocalRunner(2)
    stream = runner.stream(template, tasks, X, y, splits, scoring, count=len(tasks))
    for _ in range(execute.PROJECT_AFTER + 1):
        next(stream)
    assert runner.starter is not None
    assert len(list(stream)) == len(tasks) - execute.PROJECT_AFTER - 1
