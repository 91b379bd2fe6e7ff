"""``on_job_end`` for real: ``searchd run`` starts the configured command when a job ends,
with the job in its environment and its output in the log; one that hangs is killed with
its children after ``on_job_end_timeout``; a missing program is one logged error. (When it
fires, and with what, is stepped in test_daemon_step.)"""

from __future__ import annotations

import json
import signal
import stat
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import Env
from jobtexts import IRIS_KNN

pytestmark = pytest.mark.timeout(60)

#: records the SEARCHD_* variables (one JSON object per line) and says something on each
#: stream, to be seen in the daemon's log
RECORDER = """#!/bin/sh
"{python}" -c 'import json, os, sys
print(json.dumps({{k: v for k, v in os.environ.items() if k.startswith("SEARCHD_")}}))' \\
    >> "{out}"
echo "told $SEARCHD_JOB is $SEARCHD_JOB_STATE"
echo "a warning
on two lines" >&2
"""

#: writes its pid and its child's, then waits for ever
HANGER = """#!/bin/sh
sleep 300 &
echo "$$ $!" > "{out}"
wait
"""


def script(env: Env, name: str, text: str) -> Path:
    p = env.root / name
    p.write_text(text)
    p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return p


def config(env: Env, argv: list[str], timeout: float = 10.0) -> Path:
    cfg = env.root / "searchd.toml"
    cfg.write_text(f"on_job_end = {json.dumps(argv)}\non_job_end_timeout = {timeout}\n")
    return cfg


def test_the_command_gets_each_end_in_its_environment_and_its_output_is_logged(
        env: Env) -> None:
    out = env.root / "ends.jsonl"
    hook = script(env, "record.sh", RECORDER.format(python=sys.executable, out=out))
    env.write_job("iris.toml", IRIS_KNN)
    env.write_job("bad.toml", IRIS_KNN.replace("KNeighborsClassifier", "Nope"))
    run = env.cli("run", "--drain", "--config", str(config(env, [str(hook)])), timeout=50)
    assert run.returncode == 0, run.stderr
    ends = {e["SEARCHD_JOB"]: e for e in map(json.loads, out.read_text().splitlines())}
    assert sorted(ends) == ["bad", "iris"], "each end once"
    iris, bad = ends["iris"], ends["bad"]
    summary = env.summary("iris")
    assert iris["SEARCHD_JOB_STATE"] == "done" and iris["SEARCHD_BEST_MODEL"] == "knn"
    assert float(iris["SEARCHD_BEST_SCORE"]) == summary["models"]["knn"]["best_score"]
    assert (iris["SEARCHD_FITS_DONE"], iris["SEARCHD_FITS_TOTAL"]) == ("6", "6")
    assert not (env.state / "iris" / "report.html").exists()  # Env runs --no-report
    assert "SEARCHD_ERROR" not in iris
    assert iris["SEARCHD_STATE"] == str(env.state) and iris["SEARCHD_JOBS"] == str(env.jobs)
    assert bad["SEARCHD_JOB_STATE"] == "invalid" and "Nope" in bad["SEARCHD_ERROR"]
    assert bad["SEARCHD_BEST_SCORE"] == ""
    log = run.stderr
    assert "iris: on_job_end stdout: told iris is done\n" in log
    assert "bad: on_job_end stdout: told bad is invalid\n" in log
    assert "iris: on_job_end stderr: a warning\\non two lines\n" in log, "one line each"
    assert log.count("on_job_end: exit status 0") == 2
    # iris's command starts in the step that ends the drain: the daemon waits for it
    assert "waiting up to 10s for 1 on_job_end command(s)" in log
    env.assert_no_leftovers()


def test_a_hanging_command_is_killed_with_its_children_after_the_limit(env: Env) -> None:
    out = env.root / "pids"
    hook = script(env, "hang.sh", HANGER.format(out=out))
    env.write_job("bad.toml", "x = ")
    d = env.start("--config", str(config(env, [str(hook)], timeout=1.5)))
    env.wait_for(lambda: out.exists() and len(out.read_text().split()) == 2, 20,
                 "the command to start")
    started = time.monotonic()
    pids = [int(p) for p in out.read_text().split()]
    env.wait_for(lambda: "bad: on_job_end: killed by SIGKILL" in env.log(), 10,
                 "the command to be killed")
    assert time.monotonic() - started < 5
    assert "still running after 1.5s (on_job_end_timeout); killing it" in env.log()
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"
                   for p in pids), "the script and its child are gone"
    assert d.poll() is None, "the daemon goes on"
    d.send_signal(signal.SIGTERM)
    assert d.wait(timeout=15) == 0


def test_a_missing_program_is_one_logged_error(env: Env) -> None:
    env.write_job("bad.toml", "x = ")
    env.write_job("bad2.toml", "y = ")
    run = env.cli("run", "--drain", "--config",
                  str(config(env, [str(env.root / "no-such-program"), "x"])), timeout=50)
    assert run.returncode == 0, run.stderr
    for job in ("bad", "bad2"):
        lines = [ln.split(" searchd: ", 1)[1] for ln in run.stderr.splitlines()
                 if f" {job}: on_job_end" in ln]
        assert lines == [f"{job}: on_job_end: cannot run {env.root / 'no-such-program'}: "
                         "No such file or directory"]

