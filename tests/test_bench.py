"""The benchmark suite keeps working: ``python -m bench.run --quick`` runs every figure once
(in four runs of a few figures each, side by side under pytest-xdist).

This checks that the suite runs and reports, not the figures (the machine running the tests
is too noisy for them; BENCHMARKS.md has the real runs).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import REPO

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]  # CI runs them after the README's


def _ours(root: Path) -> list[psutil.Process]:
    """Processes started under ``root`` (the bench's daemons and their workers)."""
    found = []
    for p in psutil.process_iter(["cmdline", "cwd"]):
        text = " ".join(p.info["cmdline"] or []) + " " + (p.info["cwd"] or "")
        if str(root) in text and p.pid != os.getpid():
            found.append(p)
    return found


def _bench_quick(tmp_path: Path, only: str) -> tuple[dict[str, Any], str]:
    """``python -m bench.run --quick --only ONLY``: its JSON report and its output."""
    out = tmp_path / "bench.json"
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # the bench's folders, for the reaping
    p = subprocess.Popen([sys.executable, "-m", "bench.run", "--quick", "--only", only,
                          "--json", str(out)],
                         cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, start_new_session=True)
    try:
        text, _ = p.communicate(timeout=540)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGINT)  # its finally blocks stop the daemons it started
        text, _ = p.communicate(timeout=30)
        raise AssertionError(f"bench.run --quick took over 9 minutes:\n{text[-3000:]}") from None
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        for leftover in _ours(tmp_path):
            leftover.kill()
    assert p.returncode == 0, text[-5000:]
    report = json.loads(out.read_text())
    assert report["quick"] is True
    return report, text


# the --quick figures in four runs, so that pytest-xdist spreads them over its workers
def test_quick_paired_figures(tmp_path: Path) -> None:
    report, text = _bench_quick(tmp_path, "tiny,medium,many")
    for name in ("tiny", "medium", "many"):
        assert report[name]["problems"] == [], name  # scores identical to GridSearchCV
        assert report[name]["pairs"] and report[name]["pairs"][0]["ratio_search"] > 0
    assert "scores identical to GridSearchCV: yes" in text
    assert "(1) search time ratio, tiny" in text  # the figures table was printed


def test_quick_storage_figures(tmp_path: Path) -> None:
    report, _ = _bench_quick(tmp_path, "big,checkpoint")
    assert report["big"]["sd"]["search_seconds"] > 0
    assert report["checkpoint"]


def test_quick_daemon_figures(tmp_path: Path) -> None:
    report, _ = _bench_quick(tmp_path, "first-fit,kill")
    assert report["first_fit"]
    assert report["kill"]["state"] == "done" and len(report["kill"]["kills"]) == 2


def test_quick_machine_figures(tmp_path: Path) -> None:
    report, _ = _bench_quick(tmp_path, "idle,footprint")
    assert report["footprint"]
    assert "idle" in report  # latency trials, or why they were skipped (a busy machine)


def test_quick_runs_every_figure_but_the_search_kinds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO))
    from bench.run import FIGURES, QUICK_SKIPS
    tested = {"tiny", "medium", "many", "big", "checkpoint", "first-fit", "kill", "idle",
              "footprint"}
    assert set(FIGURES) - set(QUICK_SKIPS) == tested
