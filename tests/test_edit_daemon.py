"""Living job files in the supervisor, stepped in-process (fakes from test_daemon_step): an
edit is applied in any state, a running worker restarts on it at once, a bad edit leaves the
job on its last good spec until the file is fixed."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_daemon_step import EPOCH, JOB, S, rig, running

from searchd import protocol
from searchd.protocol import Exit

pytestmark = pytest.mark.timeout(30)

WIDER = JOB.replace("[1, 3]", "[1, 3, 5]")


def test_edit_while_running_restarts_the_worker_on_the_new_spec(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        w = running(r)
        r.write(text=WIDER)
        r.scan_step()
        assert w.terms == ["edited"] and w.closed
        assert (r.state / "j" / "job.toml").read_text() == WIDER
        assert len(r.launcher.started) == 2 and r.worker is r.launcher.last
        rec = r.rec()
        assert rec.state == S.RUNNING and rec.fits_total == 6 and not rec.file_changed
        assert rec.last_edit["what"] == "grid changed knn" and not rec.last_edit["starts_over"]
        assert rec.last_edit["at"] == EPOCH + 1 + 1  # the second scan's wall clock
        r.worker.say(protocol.Reuse(reused=4, new_candidates=1, new_fits=2))  # type: ignore[union-attr]
        r.step()
        e = r.summary()["last_edit"]
        assert (e["reused"], e["new_candidates"], e["new_fits"]) == (4, 1, 2)


def test_an_edited_job_restarts_first_even_behind_older_jobs(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        w = running(r)
        r.write("old.toml", mtime=1.0)  # older file: it would run first
        r.write(text=WIDER)
        r.scan_step()
        assert w.terms == ["edited"] and r.worker is not None and r.worker.job_id == "j"


@pytest.mark.parametrize("end", ["done", "failed", "cancelled"])
def test_an_edit_queues_a_finished_job_again(tmp_path: Path, end: str) -> None:
    with rig(tmp_path) as r:
        w = running(r)
        if end == "done":
            w.progress(4).exit(Exit.DONE, protocol.Done())
        elif end == "failed":
            w.exit(Exit.FAILED, protocol.Failed(error="boom"))
        else:
            w.exit(Exit.STOPPED)
            w.stop_reason = "cancelled"
        r.step()
        assert r.rec().state == S(end)
        r.write(text=WIDER)
        r.scan_step()
        assert r.rec().state == S.RUNNING and len(r.launcher.started) == 2
        assert r.rec().deaths == 0


def test_bad_edit_keeps_the_last_good_spec_until_fixed(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        w = running(r)
        r.write(text=JOB.replace("[1, 3]", "5"))
        r.scan_step()
        rec = r.rec()
        assert not w.terms and r.worker is w and rec.state == S.RUNNING
        assert "models.knn.grid.n_neighbors: expected a list" in (rec.edit_error or "")
        assert rec.file_changed and (r.state / "j" / "job.toml").read_text() == JOB
        assert r.summary()["edit_error"] == rec.edit_error
        r.scan_step()  # the same bad file is not read again
        assert r.rec().edit_error and not w.terms
        r.write(text=WIDER)  # fixed
        r.scan_step()
        assert w.terms == ["edited"] and r.rec().edit_error is None
        assert not r.rec().file_changed
        assert (r.state / "j" / "job.toml").read_text() == WIDER


def test_context_change_is_named(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        running(r)
        r.write(text=WIDER.replace("cv = 2", "cv = 3"))
        r.scan_step()
        e = r.rec().last_edit
        assert e["starts_over"] and e["what"] == "search.cv changed: the job starts over"


def test_undoing_a_refused_edit_clears_its_error(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        w = running(r)
        r.write(text=JOB.replace("[1, 3]", "5"))
        r.scan_step()
        assert r.rec().edit_error
        r.write()  # back to the frozen version: nothing to apply, nothing refused
        r.scan_step()
        assert r.rec().edit_error is None and not r.rec().file_changed and not w.terms


def test_a_removed_type_leaves_the_record_at_the_edit(tmp_path: Path) -> None:
    two = JOB + """
[models.tree]
estimator = "DecisionTreeClassifier"
grid = { max_depth = [1, 2] }
"""
    with rig(tmp_path) as r:
        r.write(text=two)
        r.scan_step()
        w = r.worker
        assert w is not None
        w.say(protocol.Progress(models={n: {"fits_done": 0, "fits_total": 4, "state": "pending"}
                                        for n in ("knn", "tree")}))
        r.step()
        assert set(r.rec().models) == {"knn", "tree"}
        r.write(text=JOB)
        r.scan_step()
        assert set(r.rec().models) == {"knn"} and r.rec().last_edit["what"] == "removed tree"
