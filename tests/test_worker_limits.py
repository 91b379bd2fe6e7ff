"""Issue 18, a job's share (worker side) and prompt stops: estimators' own n_jobs capped, fit
errors clipped, CV splits stored once, max_memory, max_fit_seconds, SIGTERM while preparing."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import Env
from sklearn.model_selection import KFold

from searchd.jobs.load import load_job
from searchd.state.checkpoint import BASE, ResultsCheckpoint, Snapshot, read_results
from searchd.state.read import load_results
from searchd.state.results import ModelResults
from searchd.state.signing import load_key
from searchd.state.store import CheckpointStore
from searchd.worker.estimators import build_candidate, build_template
from searchd.worker.evaluate import MAX_ERROR_CHARS, evaluate
from searchd.worker.plan import Scoring

# --- estimators' own n_jobs ------------------------------------------------------------------


def test_an_estimators_own_n_jobs_is_capped_at_any_depth(tmp_path: Path) -> None:
    job = tmp_path / "bag.toml"
    job.write_text("""
[data]
source = "sklearn:iris"
[search]
cv = 3
[[preprocess]]
name = "scale"
estimator = "StandardScaler"
[models.bag]
estimator = "BaggingClassifier"
grid = { n_estimators = [2], estimator__n_jobs = [8] }
[models.bag.params]
n_jobs = 60
estimator = { estimator = "RandomForestClassifier", params = { n_jobs = -1 } }
""")
    spec = load_job(job, 10**6)
    model = spec.models[0]
    template = build_template(spec, model, ())
    deep = template.get_params(deep=True)
    assert deep["model__n_jobs"] == 1 and deep["model__estimator__n_jobs"] == 1
    params = build_candidate({"n_estimators": 2, "estimator__n_jobs": 8,
                              "estimator": {"estimator": "KNeighborsClassifier",
                                            "params": {"n_jobs": 30}}}, spec, (), "here")
    assert params["model__estimator__n_jobs"] == 1
    assert params["model__estimator"].n_jobs == 1


@pytest.mark.timeout(60)
def test_bagging_with_n_jobs_60_starts_no_processes_of_its_own(env: Env) -> None:
    """For real: the job's process tree never holds more than the worker, its n_jobs - 1
    pool processes and loky's resource tracker, whatever the estimator asks for."""
    import psutil
    env.write_job("bag.toml", """
[data]
source = "sklearn:digits"
[search]
cv = 2
[models.bag]
estimator = "BaggingClassifier"
params = { n_jobs = 60, random_state = 0 }
grid = { n_estimators = [20, 30, 40, 50] }
""")
    daemon = env.start("--drain", "--n-jobs", "2")
    most = 0
    while daemon.poll() is None:
        try:
            tree = psutil.Process(daemon.pid).children(recursive=True)
        except psutil.Error:
            break
        most = max(most, len(tree))
        time.sleep(0.05)
    assert daemon.wait(timeout=30) == 0, env.log()[-2000:]
    # worker + 1 pool process + a resource tracker (+ the deathwatch's short-lived starter)
    assert 1 <= most <= 4, most
    assert env.summary("bag")["state"] == "done"


# --- fit errors are clipped ------------------------------------------------------------------


def test_a_fit_error_quoting_a_huge_value_is_clipped(tmp_path: Path) -> None:
    from sklearn.datasets import load_iris
    from sklearn.svm import SVC
    X, y = load_iris(return_X_y=True)
    job = tmp_path / "j.toml"
    job.write_text('[data]\nsource = "sklearn:iris"\n[models.svc]\nestimator = "SVC"\n'
                   'grid = { C = [1.0] }\n')
    scoring = Scoring(load_job(job, 10**6), SVC())
    train, test = np.arange(0, 150, 2), np.arange(1, 150, 2)
    o = evaluate(SVC(), {"kernel": "x" * 100_000}, X, y, train, test, scoring, 0, 0)
    assert o.scores is None and o.error is not None
    assert o.error.startswith("InvalidParameterError: ")
    assert len(o.error) < MAX_ERROR_CHARS + 60 and "characters, clipped" in o.error
    assert "\n" not in o.error


# --- CV splits stored once -----------------------------------------------------------------------


def _results(folds: int) -> ModelResults:
    return ModelResults.empty("m", "sk", [f"k{i}" for i in range(3)], [{"a": i} for i in range(3)],
                              ("score",), "score", folds)


@pytest.mark.parametrize("shuffle", [False, True])
def test_big_splits_are_written_once_not_in_every_base(tmp_path: Path, shuffle: bool) -> None:
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    store = CheckpointStore(job_dir, load_key(tmp_path, create=True), "job")
    X = np.zeros((4000, 1))
    splits = [(tr, te) for tr, te in
              KFold(400, shuffle=shuffle, random_state=0 if shuffle else None).split(X)]
    res = _results(400)
    snap = Snapshot(job="job", spec_digest="s", data_digest="d", splits=splits,
                    models={"m": res}, saved_at=0.0)
    ckpt = ResultsCheckpoint(store)
    for i in range(3):  # three base generations
        res.record(i, 0, {"score": 0.5}, 0.1, 0.1, None)
        ckpt.flush(lambda: snap, compact=True)
    base = store.path(BASE).stat().st_size
    split_files = list(job_dir.glob("splits-*.ckpt"))
    assert len(split_files) == 1
    raw = sum(a.nbytes + b.nbytes for a, b in splits)  # 12.8 MB
    assert base < 100_000, base  # was 12.8 MB per base
    # (Stratified)KFold's splits as one fold number per row; shuffled ones as they are
    assert split_files[0].stat().st_size < (50_000 if not shuffle else raw + 100_000)
    back, refused = read_results(store)
    assert refused == [] and back is not None and len(back.splits) == 400
    for (a, b), (c, d) in zip(back.splits, splits, strict=True):
        assert a.dtype == c.dtype and np.array_equal(a, c) and np.array_equal(b, d)
    assert back.models["m"].fits_done == 3
    # a lost splits file: the results still load; the worker makes the splits again
    split_files[0].unlink()
    back, _ = read_results(store)
    assert back is not None and back.splits == [] and back.models["m"].fits_done == 3


# --- real workers under the daemon's limits ------------------------------------------------


def _cv(env: Env, job: str, model: str) -> dict[str, list[float]]:
    res = load_results(job, env.state, with_estimators=False)
    cvr = res.models[model].cv_results_
    return {"params": cvr["params"], **{k: list(v) for k, v in cvr.items()
                                        if k.startswith("split") and k.endswith("_score")}}


def _errors(env: Env, job: str) -> list[str]:
    from searchd.state.store import CheckpointStore as Store
    snap, _ = read_results(Store(env.state / job, load_key(env.state), job))
    assert snap is not None
    return [e for m in snap.models.values() for e in m.errors.values()]


@pytest.mark.timeout(90)
def test_max_memory_turns_a_runaway_allocation_into_that_fits_error(env: Env) -> None:
    """PolynomialFeatures(degree=8) of 20 features asks for ~3 GB per fold: under a
    2048 MiB cap (1024 MiB per process) it fails as MemoryError, the other candidate scores."""
    config = env.root / "c.toml"
    config.write_text("max_memory = 2048\n")
    env.write_job("mem.toml", """
[data]
source = "sklearn:make_classification"
params = { n_samples = 200, n_features = 20, random_state = 0 }
[search]
cv = 3
[[preprocess]]
name = "poly"
estimator = "PolynomialFeatures"
[models.lr]
estimator = "LogisticRegression"
grid = { poly__degree = [1, 8] }
""")
    daemon = env.start("--drain", "--n-jobs", "2", "--config", str(config))
    assert daemon.wait(timeout=80) == 0, env.log()[-3000:]
    assert env.summary("mem")["state"] == "done"
    cv = _cv(env, "mem", "lr")
    by_degree = {p["poly__degree"]: k for k, p in enumerate(cv["params"])}
    for f in range(3):
        assert math.isnan(cv[f"split{f}_test_score"][by_degree[8]])
        assert not math.isnan(cv[f"split{f}_test_score"][by_degree[1]])
    errors = _errors(env, "mem")
    assert len(errors) == 3 and all("MemoryError" in e for e in errors), errors
    # 1024 MiB a process, or what it already maps + 256 MiB if that is more (said in the log)
    assert re.search(r"capped at \d+ MiB each", env.log()), env.log()[-3000:]


@pytest.mark.slow  # a fit left to run past its limit, through the daemon
@pytest.mark.timeout(120)
def test_a_fit_past_max_fit_seconds_is_stopped_and_recorded(env: Env) -> None:
    """A forest of 4,000 trees runs far past a 2 s limit on every fold; wherever it runs
    (the worker or a pool process) it is stopped, recorded as failed, and the job is done."""
    config = env.root / "c.toml"
    config.write_text("max_fit_seconds = 2.0\nrestart_backoff = 0.2\n")
    env.write_job("slow.toml", """
[data]
source = "sklearn:digits"
[search]
cv = 2
[models.rf]
estimator = "RandomForestClassifier"
params = { random_state = 0 }
grid = { n_estimators = [2, 3, 4000] }
""")
    daemon = env.start("--drain", "--n-jobs", "2", "--config", str(config))
    assert daemon.wait(timeout=110) == 0, env.log()[-3000:]
    assert env.summary("slow")["state"] == "done"
    cv = _cv(env, "slow", "rf")
    slow = [k for k, p in enumerate(cv["params"]) if p["n_estimators"] == 4000][0]
    for f in range(2):
        assert math.isnan(cv[f"split{f}_test_score"][slow])
        assert all(not math.isnan(cv[f"split{f}_test_score"][k]) for k in range(3) if k != slow)
    errors = _errors(env, "slow")
    assert len(errors) == 2 and all("max_fit_seconds (2 s)" in e for e in errors), errors


# --- a stop while the worker prepares ----------------------------------------------------------


@pytest.mark.timeout(90)
def test_sigterm_while_the_worker_prepares_is_honoured_within_seconds(env: Env) -> None:
    """20,000 candidates, each with a 4,000-number hidden_layer_sizes: their content keys
    take ~35 s here. A warm stop sent meanwhile ends the worker by itself (exit 10, not the
    supervisor's SIGKILL after 8 s) within a few seconds, and the job stays queued."""
    import psutil
    sizes = ", ".join(str(1 + i % 7) for i in range(4000))
    env.write_job("prep.toml", f"""
[data]
source = "sklearn:iris"
[search]
cv = 3
[models.mlp]
estimator = "MLPClassifier"
grid = {{ alpha = {{ logspace = [-6, 0, 20000] }}, hidden_layer_sizes = [[{sizes}]] }}
""")
    daemon = env.start("--n-jobs", "2")
    worker = None
    deadline = time.monotonic() + 40
    while worker is None and time.monotonic() < deadline:
        try:
            worker = next((c for c in psutil.Process(daemon.pid).children()
                           if "searchd.worker" in " ".join(c.cmdline())), None)
        except psutil.Error:  # a process starting or just gone
            pass
        time.sleep(0.05)
    assert worker is not None, env.log()[-2000:]
    time.sleep(4.0)  # imports (~1.5 s), then well into the content keys
    assert not (env.state / "prep" / "results.ckpt").exists()  # still preparing
    t0 = time.monotonic()
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=30) == 0
    took = time.monotonic() - t0
    assert took < 5.0, (took, env.log()[-2000:])
    log = env.log()
    assert "nothing to flush yet" in log
    assert "SIGKILL" not in log and "killing" not in log.lower(), log[-2000:]
    assert json.loads((env.state / "prep" / "summary.json").read_text())["state"] == "queued"


@pytest.mark.timeout(60)
def test_sigterm_while_the_worker_imports_is_a_clean_stop(tmp_path: Path) -> None:
    """SIGTERM as soon as the worker's first handler is in place (its imports of
    scikit-learn and pandas still to come): the worker stops by itself, exit 10, and says
    so, instead of dying by the signal or vanishing without a word."""
    import os
    import subprocess
    import sys

    from searchd import protocol
    from searchd.settings import Settings
    state, jobs = tmp_path / "state", tmp_path / "jobs"
    jobs.mkdir()
    load_key(state, create=True)
    (state / "j").mkdir(mode=0o700)
    (state / "j" / "job.toml").write_text('[data]\nsource = "sklearn:iris"\n'
                                          '[models.knn]\nestimator = "KNeighborsClassifier"\n')
    settings = Settings(state_dir=state, jobs_dir=jobs, n_jobs=1)
    proc = subprocess.Popen([sys.executable, "-m", "searchd.worker", "--job", "j",
                             "--settings", protocol.encode_settings(settings)],
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            env={**os.environ, "SEARCHD_LOG_FORMAT": "%(message)s"})
    try:
        status = Path(f"/proc/{proc.pid}/status")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # SigCgt: the mask of caught signals, in hex
            caught = next((line for line in status.read_text().splitlines()
                           if line.startswith("SigCgt:")), "SigCgt: 0")
            if int(caught.split()[1], 16) & (1 << (signal.SIGTERM - 1)):
                break
            time.sleep(0.001)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=40)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == protocol.Exit.STOPPED, err
    assert "j: stopping: nothing to flush yet" in err, err


def test_max_memory_is_shared_by_every_core_with_the_default_n_jobs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """n_jobs = -1 (the default) is every core: each process gets max_memory / cores (it
    was divided by -1, and the floor of what the process maps + 256 MiB used instead)."""
    import dataclasses

    from test_random_search import job_settings

    from searchd import lifeline
    from searchd.worker.events import Events
    from searchd.worker.job import JobRun
    caps: list[int] = []
    monkeypatch.setattr(lifeline, "limit_address_space", lambda n: caps.append(n) or n)
    text = '[data]\nsource = "sklearn:iris"\n[models.knn]\nestimator = "KNeighborsClassifier"\n' \
        'grid = { n_neighbors = [1, 3] }\n'
    settings = dataclasses.replace(job_settings(tmp_path, text), n_jobs=-1, max_memory=2048)
    run = JobRun(tmp_path / "state" / "j", "j", settings, Events(None))
    run.prepare()
    assert run.runner is not None
    run.runner.close()
    assert caps == [2048 * 2**20 // (os.cpu_count() or 1)]


@pytest.mark.parametrize(("own", "daemon", "expected"), [
    (None, 1, 1), (-1, 1, 1), (-1, -1, "cores"), (None, -1, "cores"), (4, 1, 1),
    (1, -1, 1), (-2, 1, 1),
])
def test_a_jobs_n_jobs_never_passes_the_daemons(tmp_path: Path, own: int | None, daemon: int,
                                                expected: int | str) -> None:
    """A job's own n_jobs (-1 included: it asked for every core and got them past a daemon
    set to 1) is capped by the daemon's and by the machine's cores."""
    from searchd.worker.runner import job_n_jobs
    search = "" if own is None else f"[search]\nn_jobs = {own}\n"
    path = tmp_path / "j.toml"
    path.write_text('[data]\nsource = "sklearn:iris"\n' + search +
                    '[models.knn]\nestimator = "KNeighborsClassifier"\n'
                    'grid = { n_neighbors = [1] }\n')
    cores = os.cpu_count() or 1
    assert job_n_jobs(load_job(path, 10**6), daemon) == (cores if expected == "cores"
                                                         else min(int(expected), cores))
