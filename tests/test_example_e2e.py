"""The README's main job end to end through the CLI, checked against GridSearchCV."""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, Env
from reference import assert_same_as_gridsearch

import searchd
from searchd.settings import Settings
from searchd.state.files import secure_state_dir


@pytest.mark.report  # as the README's first command runs it
@pytest.mark.timeout(240)
def test_example_job_end_to_end(env: Env) -> None:
    shutil.copy(REPO / "jobs" / "example.toml", env.jobs / "example.toml")
    run = env.cli("run", "--drain", "--ignore-load", "--checkpoint-interval", "1", timeout=200)
    assert run.returncode == 0, run.stderr[-3000:]
    # joblib's resource tracker cleaned up after the worker: no semaphore or memory-map
    # folder of its pool is left in /dev/shm, and it said nothing about leaks
    [worker_pid] = re.findall(r"started worker pid (\d+)", run.stderr)
    shm = Path("/dev/shm")
    if shm.is_dir():
        env.wait_for(lambda: not [n for n in os.listdir(shm) if f"-{worker_pid}-" in n
                                  or f"_{worker_pid}_" in n], 10, "/dev/shm to be clean")
    assert "leaked" not in run.stderr and "Traceback" not in run.stderr

    # state/ holds signed checkpoints and a readable summary
    job_dir = env.state / "example"
    assert (job_dir / "results.ckpt").exists()
    for m in ("knn", "rf", "lr", "nb"):
        assert (job_dir / f"model-{m}.ckpt").exists()
    assert "<svg" in (job_dir / "report.html").read_text()
    summary = json.loads((job_dir / "summary.json").read_text())
    assert summary["state"] == "done"
    assert summary["fits_done"] == summary["fits_total"] == 170
    assert (env.state / "searchd.key").stat().st_mode & 0o777 == 0o600

    status = env.cli("status", "--json", check=True)
    [rec] = json.loads(status.stdout)
    assert rec["id"] == "example" and rec["state"] == "done" and rec["error"] is None
    assert rec["fits_done"] == rec["fits_total"] == 170 and rec["fits_computed"] == 170
    assert set(rec["models"]) == {"knn", "rf", "lr", "nb"}
    assert all(m["state"] == "done" and m["best_score"] > 0.8 for m in rec["models"].values())
    text = env.cli("status", check=True).stdout
    assert "example" in text and "100%" in text and "#" in text

    show = json.loads(env.cli("show", "example", "--json", check=True).stdout)
    cv = show["models"]["rf"]["cv_results"]
    assert {"params", "mean_test_score", "std_test_score", "rank_test_score",
            "split0_test_score", "split4_test_score", "mean_fit_time"} <= set(cv)
    assert show["models"]["rf"]["test_score"]["accuracy"] > 0.9
    assert "best CV score" in env.cli("show", "example", check=True).stdout

    out = env.root / "rf.pkl"
    env.cli("export", "example", "--model", "rf", "-o", str(out), check=True)
    script = (f"import pickle; from sklearn.datasets import load_digits; "
              f"X, y = load_digits(return_X_y=True); "
              f"m = pickle.load(open({str(out)!r}, 'rb')); "
              f"print((m.predict(X) == y).mean())")
    acc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, check=True)
    assert float(acc.stdout) > 0.9

    from searchd.cli.main import main  # the other formats in this process (imports: 3 s each)
    for fmt in ("joblib", "skops"):
        assert main(["export", "example", "--format", fmt, "-o", str(env.root / f"m.{fmt}"),
                     "--state", str(env.state)]) == 0
    import skops.io as sio
    model = sio.load(env.root / "m.skops",
                     trusted=sio.get_untrusted_types(file=env.root / "m.skops"))
    assert hasattr(model, "predict")

    assert env.cli("verify").returncode == 0

    results = searchd.load_results("example", env.state)
    rf = results["rf"]
    with open(out, "rb") as f:
        exported = pickle.load(f)
    assert type(rf.best_estimator_) is type(exported)
    assert rf.best_params_ == show["models"]["rf"]["best_params"]
    assert np.isfinite(results.best.best_score_)


@pytest.mark.slow  # GridSearchCV on the example costs half a minute; CI runs it
@pytest.mark.timeout(240)
def test_example_job_equals_gridsearch(env: Env) -> None:
    shutil.copy(REPO / "jobs" / "example.toml", env.jobs / "example.toml")
    run = env.cli("run", "--drain", timeout=200)
    assert run.returncode == 0, run.stderr[-3000:]
    results = searchd.load_results("example", env.state)
    # value by value, to the bit, against GridSearchCV on the same splits (4 model types)
    assert assert_same_as_gridsearch(results, env.state / "example" / "job.toml") == 170


def test_a_fresh_clone_gives_the_first_command_a_state_folder_it_takes(tmp_path: Path) -> None:
    """The README's first command runs the daemon on its default state folder, ./state, of
    a fresh clone: whatever the repository keeps there, the daemon must take it (a tracked
    state/.gitkeep made it refuse: "not a searchd state folder ... and not empty")."""
    git = shutil.which("git")
    if git is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    assert Settings().state_dir == Path("state")
    listed = subprocess.run([git, "ls-files", "-z", "--", "state"], cwd=REPO,
                            capture_output=True, check=True, timeout=30).stdout
    state = tmp_path / "state"
    state.mkdir()
    for name in filter(None, listed.decode().split("\0")):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, tmp_path / name)
    secure_state_dir(state)  # CheckpointError if the daemon would refuse it
