"""A corpus of bad job files: each ends `invalid` with its reason; a good job completes."""

from __future__ import annotations

import json

import pytest
from conftest import Env
from jobtexts import IRIS_KNN

GOOD = IRIS_KNN

BAD = {
    "syntax.toml": ("[data\nsource = 1", "not valid TOML"),
    "syntax_json.json": ('{"data": {"source": "sklearn:iris"},', "not valid JSON"),
    "unknown_est.toml": (GOOD.replace("KNeighborsClassifier", "KNeighboursClassifier"),
                         "unknown estimator 'KNeighboursClassifier'"),
    "os_system.toml": (GOOD.replace("KNeighborsClassifier", "os.system"),
                       "module 'os' is not allowed"),
    "eval.toml": (GOOD.replace("KNeighborsClassifier", "builtins.eval"),
                  "module 'builtins' is not allowed"),
    "private.toml": (GOOD.replace("KNeighborsClassifier",
                                  "sklearn.neighbors._classification.KNeighborsClassifier"),
                     "private"),
    "not_estimator.toml": (GOOD.replace("KNeighborsClassifier", "sklearn.model_selection.KFold"),
                           "not a public scikit-learn estimator"),
    "unknown_param.toml": (GOOD.replace("n_neighbors", "n_neighbours"),
                           "models.knn.grid.n_neighbours"),
    "scalar_grid.toml": (GOOD.replace("[1, 3]", "5"),
                         "models.knn.grid.n_neighbors: expected a list or a range, got 5"),
    "huge.toml": (GOOD.replace("[1, 3]", "{ range = [1, 1000000000000] }"), "max_candidates"),
    "missing_data.toml": (GOOD.replace('"sklearn:iris"', '"csv:nowhere.csv"\ntarget = "y"'),
                          "nowhere.csv"),
    "missing_column.toml": (GOOD.replace('"sklearn:iris"', '"csv:data.csv"\ntarget = "label"'),
                            "no column 'label'"),
}


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_each_bad_job_is_invalid_with_its_reason_while_a_good_one_completes(env: Env) -> None:
    (env.jobs / "data.csv").write_text("a,b,y\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n9,1,0\n2,2,1\n")
    for name, (text, _) in BAD.items():
        env.write_job(name, text)
    env.write_job("good.toml", GOOD)
    run = env.cli("run", "--drain", timeout=150)
    assert run.returncode == 0, run.stderr[-3000:]  # invalid jobs are not failures
    status = {r["id"]: r for r in json.loads(env.cli("status", "--json", check=True).stdout)}
    assert status["good"]["state"] == "done" and status["good"]["fits_done"] == 6
    for name, (_, reason) in BAD.items():
        rec = status[name.rsplit(".", 1)[0]]
        assert rec["state"] == "invalid", (name, rec)
        assert reason in rec["error"], (name, rec["error"])
        assert name in rec["error"], (name, rec["error"])  # the error names the file
    # validate gives the same one-line errors and a non-zero exit (a sample: each call
    # imports scikit-learn, and the reasons come from the same code as the daemon's)
    for name in ("syntax.toml", "os_system.toml", "unknown_param.toml", "missing_data.toml"):
        reason = BAD[name][1]
        out = env.cli("validate", str(env.jobs / name))
        assert out.returncode != 0 and reason in out.stderr, (name, out.stderr)
        assert out.stderr.startswith("searchd: error: ") and "Traceback" not in out.stderr
    text = env.cli("status", check=True).stdout
    assert "invalid" in text and "max_candidates" in text
