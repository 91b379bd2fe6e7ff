"""LocalRunner: the worker fits tasks itself from the first one on, and in n_jobs - 1 pool
processes once they are up; either way every task is evaluated exactly once, with the scores
evaluate() gives."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
from sklearn.datasets import load_iris
from sklearn.metrics import check_scoring
from sklearn.model_selection import KFold
from sklearn.neighbors import KNeighborsClassifier
from threadpoolctl import threadpool_info

from searchd import lifeline as guard
from searchd.worker import local_runner
from searchd.worker.evaluate import (
    Outcome,
    Task,
    evaluate,
    evaluate_batch,
    longest_first,
    run_task,
)
from searchd.worker.local_runner import LocalRunner
from searchd.worker.taskstream import TaskStream

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


def test_one_job_means_no_pool_at_all() -> None:
    template, X, y, splits, scoring, tasks = problem()
    runner = LocalRunner(1, X, y, splits)
    got = {(i, f): s for i, f, s, _, _, err in runner.stream(template, tasks, scoring)
           if err is None}
    assert got == expected(template, X, y, splits, scoring, tasks)
    assert runner.starter is None and runner.processes == 1


def test_the_worker_fits_while_the_pool_starts_then_both_do(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_runner, "POOL_WORTH_SECONDS", 0.0)
    template, X, y, splits, scoring, tasks = problem()
    runner = LocalRunner(2, X, y, splits)
    try:
        def slow_tasks() -> Iterator[Task]:
            yield from tasks[:5]  # fitted by the worker while the pool starts ...
            assert runner.ready.wait(60), "the pool never started"
            yield from tasks[5:]  # ... and the rest by both

        outcomes = list(runner.stream(template, slow_tasks(), scoring, count=len(tasks)))
        assert sorted((i, f) for i, f, *_ in outcomes) == sorted((t.i, t.fold) for t in tasks)
        assert {(i, f): s for i, f, s, *_ in outcomes} == expected(template, X, y, splits,
                                                                  scoring, tasks)
        assert runner.start_error is None and runner.processes == 2
        # the same pool serves the next model type
        pool = runner._pool
        again = list(runner.stream(template, tasks[:7], scoring, count=7))
        assert len(again) == 7 and runner._pool is pool
    finally:
        runner.close()


def test_a_small_job_never_starts_the_pool() -> None:
    template, X, y, splits, scoring, tasks = problem()
    # 12 fits of ~1 ms: far under the pool's start even on a loaded machine (60 once took
    # over the 1 s that starts it, under a full test run)
    tasks = tasks[:12]
    runner = LocalRunner(2, X, y, splits)
    got = {(i, f): s for i, f, s, *_ in runner.stream(template, tasks, scoring,
                                                      count=len(tasks))}
    assert got == expected(template, X, y, splits, scoring, tasks)
    assert runner.starter is None and runner.processes == 1


def test_a_stream_does_not_wait_for_a_pool_still_starting(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Done before the pool is up: the stream ends at once, the pool got no task to hold."""
    monkeypatch.setattr(local_runner, "POOL_WORTH_SECONDS", 0.0)  # start it at the first fit
    template, X, y, splits, scoring, tasks = problem()
    runner = LocalRunner(2, X, y, splits)
    try:
        assert len(list(runner.stream(template, tasks[:6], scoring, count=6))) == 6
        # six fits of ~1 ms end long before a pool process has imported scikit-learn
        assert runner.starter is not None and not runner.ready.is_set()
    finally:
        runner.close()


def test_the_pool_starts_once_the_work_left_outweighs_its_start() -> None:
    X, y = load_iris(return_X_y=True)
    r = LocalRunner(2, X, y, [])
    assert not r._worth_a_pool(0, 0.0, 1000)  # nothing measured
    assert not r._worth_a_pool(1, 0.0, 1000)  # only the first fit (often slow): no projection
    assert not r._worth_a_pool(3, 0.002, 250)  # 1 ms fits, 250 left: 0.25 s, stay alone
    assert r._worth_a_pool(2, 0.1, 150)  # a 100 ms fit after the first, 150 left: ~15 s
    assert not r._worth_a_pool(5, 0.5, None)  # count unknown: only the 1-second rule
    r.inline_seconds = local_runner.INLINE_SECONDS
    assert r._worth_a_pool(0, 0.0, None)


def test_batches_shrink_near_the_end() -> None:
    X, y = load_iris(return_X_y=True)
    runner = LocalRunner(2, X, y, [])
    tasks = TaskStream(None, None, [], 10_000)  # type: ignore[arg-type]
    assert runner._batch(tasks) == 1  # nothing measured yet
    runner._tasks_seen, runner._seconds_seen = 100, 0.1  # 1 ms tasks
    assert runner._batch(tasks) == int(local_runner.BATCH_SECONDS / 0.001)
    tasks.left = 40
    assert runner._batch(tasks) == 40 // (4 * 2)
    tasks.left = 3
    assert runner._batch(tasks) == 1
    runner._seconds_seen = 1e-9 * 100  # absurdly fast tasks: capped
    tasks.left = None
    assert runner._batch(tasks) == local_runner.MAX_BATCH


def test_big_data_reaches_the_pool_as_a_memory_map(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_runner, "MMAP_BYTES", 0)
    template, X, y, splits, scoring, tasks = problem()
    scratch = tmp_path / "pool-data"
    runner = LocalRunner(2, X, y, splits, scratch)
    try:
        runner.start_pool()
        assert runner.ready.wait(60) and runner.start_error is None
        assert (scratch / "data.joblib").is_file()
        assert runner._pool is not None
        got = runner._pool.submit(evaluate_batch, template, scoring, tasks[:4]).result()
        want = expected(template, X, y, splits, scoring, tasks[:4])
        assert {(i, f): s for i, f, s, *_ in got} == want
    finally:
        runner.close()
    assert not scratch.exists()


def test_a_killed_pool_process_fails_the_stream_loudly() -> None:
    template, X, y, splits, scoring, tasks = problem()
    runner = LocalRunner(2, X, y, splits)
    try:
        runner.start_pool()  # up before the stream, so the pool gets work from the start
        assert runner.ready.wait(60) and runner.start_error is None
        stream = runner.stream(template, tasks * 100, scoring)
        for _ in range(50):
            next(stream)
        for p in psutil.Process().children():  # the pool's process, busy with a batch
            if not guard.is_resource_tracker(p):
                p.kill()
        with pytest.raises(Exception, match="(?i)terminated|broken"):
            for _ in stream:
                pass
    finally:
        runner.close()


def test_no_pool_no_problem(monkeypatch: pytest.MonkeyPatch,
                            caplog: pytest.LogCaptureFixture) -> None:
    """If the pool cannot start (say /dev/shm is missing), the worker does every task."""
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(local_runner, "ProcessPoolExecutor", refuse)
    template, X, y, splits, scoring, tasks = problem()
    runner = LocalRunner(2, X, y, splits)
    runner.start_pool()
    assert runner.ready.wait(10)
    got = {(i, f): s for i, f, s, *_ in runner.stream(template, tasks, scoring)}
    assert got == expected(template, X, y, splits, scoring, tasks)
    assert runner.processes == 1
    assert "could not start the pool's processes" in caplog.text
    assert "No space left on device" in caplog.text
    runner.close()


def test_the_worker_limits_its_threads_only_while_it_shares_the_cores(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """While the pool runs, the worker's fits get the BLAS threads joblib gives its own
    workers; once the stream is over (the last refit runs alone) they are back."""
    def blas() -> list[int]:
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    seen: list[list[int]] = []

    def watched(*args: Any) -> Any:  # the worker's own fits: what threads do they get?
        seen.append(blas())
        return run_task(*args)

    before = blas()
    template, X, y, splits, scoring, tasks = problem()
    runner = LocalRunner(2, X, y, splits)
    try:
        runner.start_pool()
        assert runner.ready.wait(60) and runner.start_error is None
        monkeypatch.setattr(local_runner, "run_task", watched)
        assert len(list(runner.stream(template, tasks * 5, scoring))) == len(tasks) * 5
    finally:
        runner.close()
    assert seen and all(s == [runner.threads] * len(before) for s in seen)
    assert runner.threads == max(1, (os.cpu_count() or 1) // 2)
    assert blas() == before
    runner.close()  # twice is harmless


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


def test_an_outcome_names_its_fields_and_a_failed_fit_has_no_scores() -> None:
    template, X, y, splits, scoring, _ = problem()
    ok = evaluate(template, {"n_neighbors": 3}, X, y, *splits[0], scoring, 7, 0)
    assert isinstance(ok, Outcome) and (ok.i, ok.fold, ok.error) == (7, 0, None)
    assert ok.scores is not None and ok.seconds == ok.fit_time + ok.score_time
    bad = evaluate(template, {"n_neighbors": 10_000}, X, y, *splits[1], scoring, 8, 1)
    assert (bad.i, bad.fold, bad.scores) == (8, 1, None) and bad.error is not None
