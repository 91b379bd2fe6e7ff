"""The smaller commands: submit, cancel, validate's plan, errors as one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import Env, fits_logged
from jobtexts import IRIS_KNN3

from searchd.cli.main import ERROR_CHARS, one_line, parse_duration

JOB = IRIS_KNN3 + """[models.tree]
estimator = "DecisionTreeClassifier"
params = { random_state = 0 }
grid = { max_depth = { range = [1, 6] } }
"""

SLOW = """
[data]
source = "sklearn:digits"
[search]
cv = 5
[models.svc]
estimator = "SVC"
grid = { C = { logspace = [-2, 3, 5] }, gamma = { logspace = [-5, -1, 4] } }
"""


def test_validate_prints_the_plan(env: Env) -> None:
    path = env.write_job("plan.toml", JOB)
    out = env.cli("validate", str(path), check=True).stdout
    assert "knn" in out and "3 candidates" in out and "15 fits" in out
    assert "total: 8 candidates, 24 fits" in out
    plan = json.loads(env.cli("validate", str(path), "--json", check=True).stdout)
    assert plan["fits"] == 24 and [m["candidates"] for m in plan["models"]] == [3, 5]


def test_submit_copies_a_valid_job_and_refuses_a_bad_or_clashing_one(
        env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    from searchd.cli.main import main
    src = env.root / "mine.toml"
    src.write_text(JOB)
    out = env.cli("submit", str(src), check=True)
    assert "submitted mine" in out.stdout
    assert (env.jobs / "mine.toml").read_text() == JOB
    # the user's umask decides the mode, so a shared jobs/ stays readable for the daemon
    assert (env.jobs / "mine.toml").stat().st_mode & 0o044
    # the refusals in this process (a command costs 3 s of imports)
    src.write_text(JOB.replace("[1, 3, 5]", "[7]"))
    where = ["--state", str(env.state), "--jobs", str(env.jobs)]
    assert main(["submit", str(src), *where]) != 0
    assert "already submitted" in capsys.readouterr().err
    bad = env.root / "bad.toml"
    bad.write_text(JOB.replace("KNeighborsClassifier", "os.system"))
    assert main(["submit", str(bad), *where]) != 0
    assert "not allowed" in capsys.readouterr().err
    assert not (env.jobs / "bad.toml").exists()
    status = json.loads(env.cli("status", "--json", check=True).stdout)
    assert [r["id"] for r in status] == ["mine"] and status[0]["state"] == "queued"


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_cancel_a_running_job_keeps_its_results(env: Env) -> None:
    env.write_job("slow.toml", SLOW)
    daemon = env.start("--checkpoint-interval", "0.5")
    env.wait_for(lambda: fits_logged(env, "slow") >= 10, 60, "10 fits")
    out = env.cli("cancel", "slow", check=True)
    assert "cancel requested" in out.stdout
    env.wait_for(lambda: env.summary("slow").get("state") == "cancelled", 30, "cancelled")
    [rec] = json.loads(env.cli("status", "--json", check=True).stdout)
    assert rec["state"] == "cancelled" and rec["fits_done"] >= 10
    assert env.cli("cancel", "slow").returncode != 0  # nothing left to cancel
    time.sleep(2.5)  # the daemon does not start it again
    assert env.summary("slow")["state"] == "cancelled"
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=15) == 0
    show = env.cli("show", "slow", "--json", check=True)
    assert json.loads(show.stdout)["models"]["svc"]["fits_done"] >= 10
    # touching the job file queues it again, and it resumes from its results
    os.utime(env.jobs / "slow.toml")
    run = env.cli("run", "--drain", "--checkpoint-interval", "0.5", timeout=100)
    assert run.returncode == 0 and "resumed" in run.stderr
    assert env.summary("slow")["state"] == "done"


def test_cancel_without_a_daemon(env: Env) -> None:
    env.write_job("q.toml", JOB)
    daemon = env.start()
    env.wait_for(lambda: env.summary("q").get("state") in ("running", "done"), 30, "a start")
    os.killpg(daemon.pid, signal.SIGKILL)
    daemon.wait(timeout=10)
    if env.summary("q")["state"] == "done":
        pytest.skip("the job finished before it could be cancelled")
    out = env.cli("cancel", "q", check=True)
    assert "cancelled q" in out.stdout and env.summary("q")["state"] == "cancelled"


def test_errors_are_one_line(env: Env) -> None:
    for args in (["show", "nope"], ["export", "nope", "-o", "x.pkl"], ["cancel", "nope"],
                 ["validate", str(env.root / "missing.toml")]):
        out = env.cli(*args)
        assert out.returncode != 0 and out.stderr.startswith("searchd: error: "), args
        assert out.stderr.count("\n") == 1, out.stderr


def test_durations() -> None:
    assert parse_duration("90s") == 90 and parse_duration("2h") == 7200
    assert parse_duration("1h30m") == 5400
    with pytest.raises(Exception, match="duration"):
        parse_duration("soon")


def test_unwritable_state_is_one_line_not_a_traceback(env: Env) -> None:
    """An OSError the user can fix (a state folder that cannot be written) is one line."""
    blocker = env.root / "afile"
    blocker.write_text("not a folder")
    (env.state / "pause.json").mkdir(parents=True)  # pause cannot replace a folder
    for args, state in ((["run", "--drain"], blocker / "state"), (["pause"], env.state)):
        cmd = [sys.executable, "-m", "searchd", *args, "--state", str(state),
               "--jobs", str(env.jobs)]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=env.root)
        assert out.returncode == 1 and out.stderr.startswith("searchd: error: "), out.stderr
        assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr
        assert "[Errno" not in out.stderr and str(state)[:20] in out.stderr, out.stderr


def test_error_lines_are_clipped() -> None:
    line = one_line("x" * 10_000 + "\nsecond line")
    assert len(line) == ERROR_CHARS and "\n" not in line and line.endswith("…")
