"""Issue 18, item 2: a (candidate, fold) whose fit kills its process is recorded as failed
after its second death, and the search goes on.

The test plays the out-of-memory killer: it watches the job's fit records (the files the
worker and its pool processes keep, naming the task each is fitting) and SIGKILLs whichever
process starts fitting the poison candidate, every time, be it the worker or a pool process.
"""

from __future__ import annotations

import math
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import Env
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import GridSearchCV

from searchd.state.checkpoint import read_results
from searchd.state.read import load_results
from searchd.state.signing import load_key
from searchd.state.store import CheckpointStore
from searchd.worker.plan import content_key
from searchd.worker.poison import RECORDS, RUN, read_records

JOB = """
[data]
source = "sklearn:digits"
[search]
cv = 2
[models.rf]
estimator = "RandomForestClassifier"
params = { random_state = 0 }
grid = { n_estimators = [5, 10, 400] }
"""
#: many quick candidates first: the pool is up by the time the poison's folds run
BIG_JOB = JOB.replace("[5, 10, 400]", "[5, 10, 400, 1, 2, 3, 4, 6, 7, 8, 9, 11, 12]").replace(
    "cv = 2", "cv = 2\nn_jobs = 2")
POISON = {"n_estimators": 400}


def _kill_the_poison(env: Env, job: str, key: str, daemon_alive: object) -> list[tuple[int, str]]:
    """SIGKILL every process whose fit record says it is fitting ``key``; returns
    (pid, role) of each kill, once the daemon has exited."""
    folder = env.state / job / RECORDS
    killed: list[tuple[int, str]] = []
    seen: set[int] = set()
    while daemon_alive():  # type: ignore[operator]
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            names = []
        for name in names:
            try:
                text = (folder / name).read_text().rstrip()
            except OSError:
                continue
            parts = text.split(" ", 3)
            if len(parts) == 4 and parts[0] == RUN and f" {key} " in f" {parts[3]} " \
                    and int(name) not in seen:
                seen.add(int(name))
                try:
                    os.kill(int(name), signal.SIGKILL)
                    killed.append((int(name), parts[1]))
                except ProcessLookupError:
                    pass
        time.sleep(0.01)
    return killed


@pytest.mark.timeout(120)
# both through the real daemon, in the extended tier; the quick tier kills the pool process
# fitting a poison for real below (twice: the second death records it failed)
@pytest.mark.parametrize("job", [pytest.param(JOB, marks=pytest.mark.slow),
                                 pytest.param(BIG_JOB, marks=pytest.mark.slow)],
                         ids=["small", "with-pool"])
def test_a_fit_that_kills_its_process_twice_is_recorded_failed_and_the_search_goes_on(
        env: Env, job: str) -> None:
    config = env.root / "c.toml"
    config.write_text("restart_backoff = 0.2\n")
    env.write_job("poison.toml", job)
    daemon = env.start("--drain", "--n-jobs", "2", "--config", str(config))
    killed = _kill_the_poison(env, "poison", content_key(POISON),
                              lambda: daemon.poll() is None)
    assert daemon.wait(timeout=10) == 0, env.log()[-3000:]
    summary = env.summary("poison")
    assert summary["state"] == "done", summary
    # each of the poison's two folds killed its process twice, then was never run again
    assert len(killed) == 4, (killed, env.log()[-3000:])
    print(f"\npoison: killed {[role for _, role in killed]}")
    res = load_results("poison", env.state, with_estimators=False)
    cvr = res.models["rf"].cv_results_
    row = [k for k, p in enumerate(cvr["params"]) if p == POISON][0]
    for f in range(2):
        assert math.isnan(cvr[f"split{f}_test_score"][row])
    snap, _ = read_results(CheckpointStore(env.state / "poison", load_key(env.state), "poison"))
    assert snap is not None
    m = snap.models["rf"]
    errors = [e for (i, _f), e in m.errors.items() if i == m.row_of(content_key(POISON))]
    assert len(errors) == 2 and all("killed by SIGKILL" in e and "died 2 times" in e
                                    for e in errors), errors
    assert len(m.errors) == 2  # nothing else failed
    # the rest of the search: the same scores as GridSearchCV on the same splits
    from sklearn.datasets import load_digits
    values = [p["n_estimators"] for p in cvr["params"]]
    X, y = load_digits(return_X_y=True)
    gs = GridSearchCV(RandomForestClassifier(random_state=0),
                      {"n_estimators": [v for v in values if v != 400]},
                      cv=[(np.asarray(a), np.asarray(b)) for a, b in res.splits]).fit(X, y)
    for k, p in enumerate(gs.cv_results_["params"]):
        mine = [j for j, q in enumerate(cvr["params"]) if q == p][0]
        for f in range(2):
            assert cvr[f"split{f}_test_score"][mine] == gs.cv_results_[f"split{f}_test_score"][k]
    assert res.models["rf"].best_params_ != POISON


@pytest.mark.timeout(90)
def test_a_pool_process_killed_with_a_task_strikes_that_task_and_the_pool_goes_on(
        tmp_path: Path) -> None:
    """The pool side for real: the pool process fitting the poison is SIGKILLed (loky breaks
    the pool); the runner strikes that task only, re-runs the others in new pool processes,
    and the poison's second death in the pool records it as failed."""
    import threading

    from sklearn.datasets import load_iris
    from sklearn.model_selection import StratifiedKFold

    from searchd.jobs.load import load_job
    from searchd.worker.evaluate import Task
    from searchd.worker.local_runner import LocalRunner
    from searchd.worker.plan import Scoring
    from searchd.worker.poison import FitGuard, task_tag

    X, y = load_iris(return_X_y=True)
    splits = list(StratifiedKFold(3).split(X, y))
    job = tmp_path / "j.toml"
    job.write_text('[data]\nsource = "sklearn:iris"\n[models.rf]\n'
                   'estimator = "RandomForestClassifier"\ngrid = { n_estimators = [1] }\n')
    template = RandomForestClassifier(random_state=0)
    scoring = Scoring(load_job(job, 100), template)
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    g = FitGuard(job_dir, 0.0)
    g.start()
    runner = LocalRunner(2, X, y, splits, job_dir / "pool-data", g)
    runner.start_pool()
    assert runner.ready.wait(60) and runner.start_error is None
    poison_tag = task_tag("rf", "poison", 0)
    stop = threading.Event()
    kills: list[int] = []

    def killer() -> None:
        import psutil
        while not stop.is_set():
            for r in read_records(g.folder):
                if r.tag == poison_tag and r.role == "pool" and r.pid not in kills:
                    kills.append(r.pid)
                    psutil.Process(r.pid).kill()
            time.sleep(0.005)

    threading.Thread(target=killer, daemon=True).start()
    try:
        poison = Task(0, 0, {"n_estimators": 400}, tag=poison_tag)
        others = [Task(1 + k, k % 3, {"n_estimators": 3}, tag=task_tag("rf", f"q{k}", k % 3))
                  for k in range(12)]
        # the pool's feeder starts first and takes the first task
        got = list(runner.stream(template, [poison, *others], scoring, count=13))
        assert len(kills) == 1
        assert sorted(o.i for o in got) == list(range(1, 13))  # all but the poison
        assert all(o.error is None for o in got)
        assert g.strikes.deaths(poison_tag) == 1 and g.strikes.deaths(others[0].tag) == 0
        # run alone, the way the job re-runs it: it goes to the (new) pool and dies again
        again = []
        for _ in range(3):
            again = list(runner.stream(template, [poison], scoring, count=1))
            if again:
                break
        assert len(kills) == 2, kills
        assert len(again) == 1 and again[0].scores is None
        assert again[0].error is not None and "died 2 times (last: killed by SIGKILL)" in \
            again[0].error
    finally:
        stop.set()
        runner.close()
