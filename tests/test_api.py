"""Issue 19: the notebook API — searchd.submit (a dict, TOML text or path, with X/y written
beside the job), status, wait, and load_results(...).to_frame()."""

from __future__ import annotations

import json
import shutil
import threading
import time
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import Env
from sklearn.datasets import load_iris

import searchd
from searchd.errors import JobSpecError, NotFoundError, SearchdError
from searchd.settings import Settings
from searchd.state.records import JobRecord, JobState, write_summary
from searchd.state.signing import load_key
from searchd.worker.events import Events
from searchd.worker.job import JobRun

pytestmark = [pytest.mark.timeout(60)]

REPO = Path(__file__).resolve().parent.parent

MIXED = REPO / "jobs" / "mixed.toml"
CSV = REPO / "jobs" / "data" / "mixed.csv"
IRIS = """
[data]
source = "sklearn:iris"
[search]
cv = 3
[models.knn]
estimator = "KNeighborsClassifier"
grid = { n_neighbors = [1, 5] }
"""


@pytest.fixture
def dirs(tmp_path: Path) -> dict[str, Path]:
    d = {"jobs_dir": tmp_path / "jobs", "state_dir": tmp_path / "state"}
    for p in d.values():
        p.mkdir()
    return d


def run_like_the_daemon(dirs: dict[str, Path], job_id: str) -> None:
    """What the daemon does with an accepted job, in this process: freeze it, run it."""
    state, jobs = dirs["state_dir"], dirs["jobs_dir"]
    load_key(state, create=True)
    (state / job_id).mkdir()
    src = next(p for p in jobs.iterdir() if p.stem == job_id and p.suffix in (".toml", ".json"))
    shutil.copy(src, state / job_id / f"job{src.suffix}")
    settings = Settings(state_dir=state, jobs_dir=jobs, n_jobs=1, report=False)
    assert JobRun(state / job_id, job_id, settings, Events(None)).run() == 0


@pytest.mark.timeout(120)  # a whole job in this process: seconds, more on a loaded machine
def test_submit_a_dataframe_then_load_results_to_frame(dirs: dict[str, Path]) -> None:
    """The mixed job as a dict, its data a DataFrame: written as Parquet beside the job, and
    the search finds what the CSV job finds (same rows, same columns, same scores)."""
    pytest.importorskip("pyarrow")
    df = pd.read_csv(CSV)
    doc = tomllib.loads(MIXED.read_text())
    del doc["data"]["source"], doc["data"]["target"]
    jid = searchd.submit(doc, df.drop(columns=["label"]), df["label"], name="nb", **dirs)
    assert jid == "nb"
    job = json.loads((dirs["jobs_dir"] / "nb.json").read_text())
    source = job["data"]["source"]
    assert source.startswith("parquet:nb-data-") and job["data"]["target"] == "label"
    assert job["data"]["drop"] == ["score"] and job["data"]["test_size"] == 0.2
    written = pd.read_parquet(dirs["jobs_dir"] / source.partition(":")[2])
    assert written.equals(df)
    assert not list(dirs["jobs_dir"].glob(".*"))  # no temporary files left
    run_like_the_daemon(dirs, "nb")
    frame = searchd.load_results("nb", dirs["state_dir"])["lr"].to_frame()
    assert list(frame["param_C"]) == [0.1, 0.1, 1.0, 1.0] and len(frame) == 4
    assert {"mean_test_score", "rank_test_score", "split2_test_score"} <= set(frame.columns)
    both = searchd.load_results("nb", dirs["state_dir"]).to_frame()
    assert list(both.columns[:2]) == ["model", "mean_fit_time"] and set(both["model"]) == {"lr"}
    # the same as the CSV job on the same rows (tests/test_tabular.py checks that one
    # against scikit-learn)
    from test_tabular import reference
    theirs = reference(df.drop(columns=["label", "score"]), df["label"])
    mine = {(p["C"], p["cols__num__simpleimputer__strategy"]): s
            for p, s in zip(frame["params"], frame["mean_test_score"], strict=True)}
    for p, s in zip(theirs.cv_results_["params"], theirs.cv_results_["mean_test_score"],
                    strict=True):
        assert mine[(p["model__C"], p["cols__num__simpleimputer__strategy"])] == s


def test_submit_arrays_a_toml_text_and_a_path(dirs: dict[str, Path], tmp_path: Path) -> None:
    X, y = load_iris(return_X_y=True)
    jid = searchd.submit(IRIS, X, y, name="arrays", **dirs)
    job = json.loads((dirs["jobs_dir"] / f"{jid}.json").read_text())
    assert job["data"]["source"].startswith("npz:arrays-data-") and "target" not in job["data"]
    with np.load(dirs["jobs_dir"] / job["data"]["source"][4:]) as f:
        assert np.array_equal(f["X"], X) and np.array_equal(f["y"], y)
    # a TOML text without data: written as it is, named by its content unless named
    jid = searchd.submit(IRIS, **dirs)
    assert jid.startswith("job-") and (dirs["jobs_dir"] / f"{jid}.toml").read_text() == IRIS
    assert searchd.submit(IRIS, **dirs) == jid  # the same job again: the same id
    path = tmp_path / "from-file.toml"
    path.write_text(IRIS)
    assert searchd.submit(path, **dirs) == "from-file"
    assert searchd.submit(str(path), **dirs) == "from-file"
    assert (dirs["jobs_dir"] / "from-file.toml").read_text() == IRIS


def test_a_refused_job_leaves_nothing_behind(dirs: dict[str, Path]) -> None:
    X, y = load_iris(return_X_y=True)
    bad = IRIS.replace("n_neighbors", "n_neighbours")
    with pytest.raises(JobSpecError, match="has no parameter 'n_neighbours'"):
        searchd.submit(bad, X, y, name="bad", **dirs)
    assert list(dirs["jobs_dir"].iterdir()) == []
    with pytest.raises(JobSpecError, match="not valid TOML"):
        searchd.submit("[data\n", **dirs)
    with pytest.raises(JobSpecError, match="name 'a/b'"):
        searchd.submit(IRIS, name="a/b", **dirs)
    with pytest.raises(SearchdError, match="give both X and y"):
        searchd.submit(IRIS, X, **dirs)
    searchd.submit(IRIS, name="taken", **dirs)
    with pytest.raises(SearchdError, match="job 'taken' already exists as"):
        searchd.submit(IRIS.replace("[1, 5]", "[1, 3]"), X, y, name="taken", **dirs)
    assert sorted(p.name for p in dirs["jobs_dir"].iterdir()) == ["taken.toml"]


def _record(dirs: dict[str, Path], state: JobState, done: int) -> None:
    write_summary(dirs["state_dir"], JobRecord(id="w", state=state, fits_done=done,
                                               fits_total=6))


def test_status_and_wait_follow_the_state_folder(dirs: dict[str, Path]) -> None:
    """A stepped daemon: summaries written from a thread, as the daemon writes them."""
    searchd.submit(IRIS, name="w", **dirs)
    assert searchd.status("w", **dirs)["state"] == "queued"  # not picked up yet
    assert [s["id"] for s in searchd.status(**dirs)] == ["w"]
    with pytest.raises(NotFoundError, match="job 'nope'"):
        searchd.status("nope", **dirs)
    with pytest.raises(TimeoutError, match=r"job 'w': still queued after 0.2 s \(0/0 fits\)"):
        searchd.wait("w", timeout=0.2, poll=0.05, progress=False, **dirs)

    def daemon() -> None:
        for state, done in ((JobState.RUNNING, 2), (JobState.RUNNING, 4), (JobState.DONE, 6)):
            time.sleep(0.2)
            _record(dirs, state, done)
    t = threading.Thread(target=daemon)
    start = time.monotonic()
    t.start()
    s = searchd.wait("w", timeout=20, poll=0.05, **dirs)
    t.join()
    assert s["state"] == "done" and s["fits_done"] == 6 and time.monotonic() - start >= 0.6
    _record(dirs, JobState.INVALID, 0)
    assert searchd.wait("w", timeout=1, progress=False, **dirs)["state"] == "invalid"


def test_the_api_is_public() -> None:
    assert {"submit", "status", "wait", "load_results"} <= set(searchd.__all__)
    assert all(callable(getattr(searchd, n)) for n in ("submit", "status", "wait"))


def test_wait_draws_a_tqdm_bar_when_tqdm_is_there(dirs: dict[str, Path],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tqdm")
    searchd.submit(IRIS, name="w", **dirs)
    _record(dirs, JobState.DONE, 6)
    searchd.wait("w", **dirs)
    assert "6/6" in capsys.readouterr().err




@pytest.mark.timeout(120)
def test_a_notebook_session_against_a_real_daemon(env: Env) -> None:
    """submit a DataFrame, a daemon runs it, wait returns done, to_frame reads the rows."""
    df = pd.read_csv(CSV).iloc[:150]
    job = {"search": {"cv": 3, "scoring": "accuracy"},
           "preprocess": [{"name": "cols", "estimator": "ColumnTransformer", "params": {
               "transformers": [
                   {"name": "cat", "columns": {"dtype": "object"},
                    "steps": [{"estimator": "SimpleImputer",
                               "params": {"strategy": "most_frequent"}},
                              {"estimator": "OneHotEncoder",
                               "params": {"handle_unknown": "ignore"}}]},
                   {"name": "num", "columns": {"dtype": "number"},
                    "estimator": "SimpleImputer"}]}}],
           "models": {"tree": {"estimator": "DecisionTreeClassifier",
                               "params": {"random_state": 0},
                               "grid": {"max_depth": [2, 3]}}}}
    X, y = df.drop(columns=["label"]), df["label"]
    jid = searchd.submit(job, X, y, name="nb", jobs_dir=env.jobs, state_dir=env.state)
    daemon = env.start("--drain")
    s = searchd.wait(jid, timeout=90, poll=0.2, progress=False, jobs_dir=env.jobs,
                     state_dir=env.state)
    assert s["state"] == "done" and s["fits_done"] == s["fits_total"] == 6, env.log()
    assert daemon.wait(timeout=30) == 0
    frame = searchd.load_results(jid, env.state)["tree"].to_frame()
    assert list(frame["param_max_depth"]) == [2, 3]
    assert frame["mean_test_score"].between(0, 1).all()
