"""Issue 18, item 4: disk full, everywhere.

A job accepted while the disk is full is retried until its frozen copy is written, shown
in ``status`` meanwhile, and never drained away as if it were done; the key is written
atomically, so a full disk at the first start leaves no key rather than a 0-byte one. The
disk fills the way ``tests/faultinject/sitecustomize.py`` fills it for the real daemon:
every ``fsync`` fails with ENOSPC (in-process here, through that shim in the daemon test).
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, Env
from test_daemon_step import JOB, rig

from searchd import protocol
from searchd.errors import CheckpointError
from searchd.protocol import Exit
from searchd.state.files import KEY_FILE
from searchd.state.records import JobState
from searchd.state.signing import load_key

pytestmark = pytest.mark.timeout(60)

S = JobState


class Disk:
    """Every fsync fails with ENOSPC while ``full`` (as the fault-injection shim does)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.full = True
        real = os.fsync

        def fsync(fd: int) -> None:
            if self.full:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            real(fd)
        monkeypatch.setattr(os, "fsync", fsync)


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> Iterator[Disk]:
    d = Disk(monkeypatch)
    d.full = False
    yield d


def no_temp_files(folder: Path) -> bool:
    return not list(folder.glob(".*tmp-*"))


def test_a_job_accepted_on_a_full_disk_is_retried_shown_and_not_drained(
        tmp_path: Path, disk: Disk) -> None:
    with rig(tmp_path, drain=True) as r:
        disk.full = True
        r.write()
        for _ in range(5):
            r.scan_step()
        rec = r.rec()
        assert rec.state == S.QUEUED and not r.launcher.started
        assert rec.disk_error is not None and "No space left on device" in rec.disk_error
        assert r.summary()["disk_error"] == rec.disk_error  # what `status` shows
        assert not (r.state / "j" / "job.toml").exists() and no_temp_files(r.state / "j")
        assert not r.daemon.finished, "a drain must not exit while a job waits for the disk"
        r.write(text=JOB.replace("[1, 3]", "[1, 3, 5]"))  # an edit meanwhile: still retried
        r.scan_step()
        assert r.rec().state == S.QUEUED and r.rec().disk_error
    (tmp_path / "jobs").rename(tmp_path / "jobs-old")  # rig() makes jobs/ afresh
    with rig(tmp_path, drain=True) as r2:  # a restart on the full disk: still retried
        (r2.jobs / "j.toml").write_bytes((tmp_path / "jobs-old" / "j.toml").read_bytes())
        disk.full = True
        r2.scan_step()
        assert r2.rec().state == S.QUEUED and r2.rec().disk_error and not r2.daemon.finished
        disk.full = False  # space returns
        r2.scan_step()
        rec = r2.rec()
        assert rec.state == S.RUNNING and rec.disk_error is None and rec.fits_total == 6
        assert (r2.state / "j" / "job.toml").read_text() == JOB.replace("[1, 3]", "[1, 3, 5]")
        r2.worker.exit(Exit.DONE, protocol.Done())  # type: ignore[union-attr]
        r2.step()
        assert r2.rec().state == S.DONE and r2.daemon.finished and r2.daemon.exit_code == 0


def test_the_key_is_written_atomically_or_not_at_all(tmp_path: Path, disk: Disk) -> None:
    state = tmp_path / "state"
    disk.full = True
    for _ in range(2):  # each start fails the same clean way: nothing left behind
        with pytest.raises(CheckpointError) as e:
            load_key(state, create=True)
        assert str(e.value) == (f"{state / KEY_FILE}: cannot write the key: No space left on "
                                "device (nothing was left behind; the next start tries again)")
        assert os.listdir(state) == []
    disk.full = False
    key = load_key(state, create=True)
    assert len(key) == 32 and (state / KEY_FILE).read_bytes() == key
    assert load_key(state) == key and os.listdir(state) == [KEY_FILE]


def test_a_short_key_left_by_an_older_version_is_replaced_unless_it_signed_something(
        tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / KEY_FILE).write_bytes(b"")
    os.chmod(state / KEY_FILE, 0o600)
    with pytest.raises(CheckpointError, match="key is too short"):
        load_key(state)  # readers never replace it
    key = load_key(state, create=True)
    assert len(key) == 32 and load_key(state) == key
    (state / KEY_FILE).write_bytes(b"x" * 5)
    (state / "j").mkdir()
    (state / "j" / "results.ckpt").write_bytes(b"signed")
    with pytest.raises(CheckpointError, match=r"key is too short \(5 bytes\)"):
        load_key(state, create=True)  # checkpoints exist: the operator decides


@pytest.mark.timeout(120)
def test_the_real_daemon_on_a_full_disk_first_start_then_an_accept(env: Env) -> None:
    flag = env.root / "disk-fault"
    fault = {"PYTHONPATH": str(REPO / "tests" / "faultinject"),
             "SEARCHD_TEST_DISK_FAULT": str(flag)}
    flag.write_text("ENOSPC")
    env.write_job("small.toml", JOB)
    first = env.start("--drain", extra_env=fault)
    assert first.wait(timeout=30) != 0
    out = env.log()
    assert "searchd: error:" in out and "cannot write the key: No space left" in out
    assert "Traceback" not in out
    assert not (env.state / KEY_FILE).exists()
    flag.unlink()
    load_key(env.state, create=True)  # the disk was free for a moment: the key is made
    flag.write_text("ENOSPC")
    daemon = env.start("--drain", extra_env=fault)

    def waiting() -> bool:
        try:
            return "No space left" in (env.summary("small").get("disk_error") or "")
        except (FileNotFoundError, ValueError):
            return False
    env.wait_for(waiting, 30, "the disk error in the summary")
    time.sleep(2.0)
    assert daemon.poll() is None, "--drain exited while a job waited for the disk"
    status = env.cli("status", check=True).stdout
    assert "queued" in status and "waiting for disk: cannot keep the job's copy" in status
    flag.unlink()
    assert daemon.wait(timeout=60) == 0
    assert env.summary("small")["state"] == "done" and not env.summary("small")["disk_error"]
