"""A real daemon applies edits: a bad edit of a paused job is refused (the job keeps its
spec and results), the fixed file restarts its worker on the new version, and the job
finishes with GridSearchCV's scores on the grid as edited, every fit computed once."""

from __future__ import annotations

import json

import pytest
from conftest import Env
from reference import assert_same_as_gridsearch

from searchd.state.read import load_results

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

JOB = """
[data]
source = "sklearn:digits"

[search]
cv = 4

[models.knn]
estimator = "KNeighborsClassifier"
grid = { n_neighbors = { range = [1, 91] }, weights = ["distance"] }  # 360 fits, some seconds
"""
FIXED = JOB.replace("[1, 91]", "[1, 97]")
BAD = JOB.replace('["distance"]', '"distance"')


def test_edit_of_a_running_job_bad_then_fixed(env: Env) -> None:
    env.write_job("j.toml", JOB)
    env.start("--checkpoint-interval", "0.5", "--n-jobs", "2")
    env.wait_for(lambda: env.summary("j").get("fits_done", 0) > 0, 60, "the first fits")
    env.cli("pause", check=True)
    env.wait_for(lambda: env.summary("j").get("state") == "paused", 20, "the pause")
    assert env.summary("j")["fits_done"] < 360, "the job finished before it was paused"

    env.write_job("j.toml", BAD)
    env.wait_for(lambda: env.summary("j").get("edit_error"), 20, "the refused edit")
    s = env.summary("j")
    assert s["state"] == "paused" and "models.knn.grid.weights" in s["edit_error"]
    assert (env.state / "j" / "job.toml").read_text() == JOB
    assert "edit refused, the job runs its last good spec" in env.cli("status").stdout

    env.write_job("j.toml", FIXED)
    env.wait_for(lambda: env.summary("j").get("last_edit"), 20, "the edit applied")
    assert (env.state / "j" / "job.toml").read_text() == FIXED
    assert env.summary("j")["edit_error"] is None
    env.cli("resume", check=True)
    env.wait_for(lambda: env.summary("j").get("state") == "done", 90, "the job done")

    [rec] = json.loads(env.cli("status", "--json", check=True).stdout)
    edit = rec["last_edit"]
    assert edit["what"] == "grid changed knn" and edit["reused"] > 0
    assert edit["new_candidates"] >= 6
    assert edit["reused"] + edit["new_fits"] == rec["fits_total"] == 96 * 4
    # nothing computed is computed again: the stopped worker's flush held every fit
    assert rec["fits_computed"] == rec["fits_total"], rec
    assert "fits reused" in env.cli("status").stdout
    assert assert_same_as_gridsearch(load_results("j", env.state), env.jobs / "j.toml") > 0
