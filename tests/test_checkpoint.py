"""Checkpoints: signatures, atomic writes, and hostile files that must never be unpickled."""

from __future__ import annotations

import errno
import json
import os
import pickle
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Env
from jobtexts import IRIS_THREE_TYPES as SMALL_JOB

from searchd.errors import CheckpointError
from searchd.state.files import atomic_write, clean_temp_files
from searchd.state.signing import dumps, load_key, loads, sign, verified_payload
from searchd.state.store import CheckpointStore


class Planted:
    """A pickle whose loading would create a file: proof of code execution."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def planted_bytes(marker: Path) -> bytes:
    return pickle.dumps(Planted(marker))


@pytest.fixture
def store(tmp_path: Path) -> CheckpointStore:
    key = load_key(tmp_path, create=True)
    d = tmp_path / "job"
    d.mkdir()
    return CheckpointStore(d, key, "job")


def test_key_is_private_and_stable(tmp_path: Path) -> None:
    k1 = load_key(tmp_path, create=True)
    assert (tmp_path / "searchd.key").stat().st_mode & 0o777 == 0o600
    assert load_key(tmp_path) == k1 and len(k1) == 32
    with pytest.raises(CheckpointError, match="no key"):
        load_key(tmp_path / "other")


def test_roundtrip_and_every_kind_of_tampering(tmp_path: Path) -> None:
    key = os.urandom(32)
    blob = dumps(key, "job/results", {"a": [1, 2, 3]})
    assert loads(key, "job/results", blob, "x") == {"a": [1, 2, 3]}
    flipped = bytearray(blob)
    flipped[len(blob) // 2] ^= 0x01
    cases = {
        "flipped byte": bytes(flipped),
        "truncated": blob[:-10],
        "zero-length": b"",
        "header only": blob[:20],
        "unsigned pickle": pickle.dumps({"a": 1}),
        "another key": dumps(os.urandom(32), "job/results", {"a": 1}),
        "another job": dumps(key, "other/results", {"a": 1}),
    }
    for what, bad in cases.items():
        with pytest.raises(CheckpointError):
            verified_payload(key, "job/results", bad)
        assert what


def test_planted_pickle_is_never_loaded(store: CheckpointStore, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = planted_bytes(marker)
    other_key = os.urandom(32)
    for blob in (evil, sign(other_key, "job/results", evil), sign(store.key, "job/x", evil)):
        store.path("results").write_bytes(blob)
        data, refused = store.read("results", quarantine=True)
        assert data is None and refused
        assert not marker.exists()
        assert not store.path("results").exists()  # moved aside
    reasons = sorted((store.dir / "quarantine").glob("*.reason"))
    assert len(reasons) == 3
    assert "signature" in reasons[0].read_text() or "header" in reasons[0].read_text()


def test_previous_generation_is_used_when_the_newest_is_bad(store: CheckpointStore) -> None:
    store.write("results", {"gen": 1})
    store.write("results", {"gen": 2})
    assert store.read("results")[0] == {"gen": 2}
    p = store.path("results")
    p.write_bytes(p.read_bytes()[:-5])  # truncated newest generation
    data, refused = store.read("results", quarantine=True)
    assert data == {"gen": 1} and len(refused) == 1
    # a crash between the two renames leaves .next as the newest complete generation
    store.write("results", {"gen": 3})
    os.replace(store.path("results"), store.dir / ".results.next")
    assert store.read("results")[0] == {"gen": 3}


def test_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "f.ckpt"
    atomic_write(target, b"old")

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError):
        atomic_write(target, b"new" * 1000)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.ckpt"]  # no temp file left
    monkeypatch.undo()
    (tmp_path / ".f.ckpt.tmp-123-abcd").write_bytes(b"partial")
    assert clean_temp_files(tmp_path) == 1


def _flip(p: Path) -> None:
    b = bytearray(p.read_bytes())
    b[len(b) // 2] ^= 0xFF
    p.write_bytes(bytes(b))


@pytest.mark.slow  # a planted pickle through the daemon stays in the quick tier (below)
@pytest.mark.timeout(180)
def test_hostile_checkpoints_are_refused_and_the_daemon_carries_on(env: Env) -> None:
    env.write_job("small.toml", SMALL_JOB)
    assert env.cli("run", "--drain", timeout=120).returncode == 0
    job = env.state / "small"
    marker = env.root / "pwned"
    _flip(job / "results.ckpt")
    (job / "results.prev.ckpt").write_bytes(planted_bytes(marker))
    m = job / "model-knn.ckpt"
    m.write_bytes(m.read_bytes()[: len(m.read_bytes()) // 3])

    v = env.cli("verify")
    assert v.returncode != 0
    for name in ("results.ckpt", "results.prev.ckpt", "model-knn.ckpt"):
        assert f"BAD {job / name}" in v.stdout, v.stdout
    assert "ok " in v.stdout  # the good model checkpoints are still good
    show = env.cli("show", "small")
    assert show.returncode != 0 and show.stderr.startswith("searchd: error: ")
    assert "Traceback" not in show.stderr
    exported = env.cli("export", "small", "--model", "knn", "-o", str(env.root / "k.pkl"))
    assert exported.returncode != 0 and "Traceback" not in exported.stderr
    assert not marker.exists()

    # the daemon moves them aside and recomputes what it cannot trust
    (job / "summary.json").unlink()
    run = env.cli("run", "--drain", timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert not marker.exists()
    assert "refused checkpoint" in run.stderr
    reasons = list((job / "quarantine").glob("*.reason"))
    assert len(reasons) >= 2
    assert env.cli("verify").returncode == 0
    [rec] = json.loads(env.cli("status", "--json", check=True).stdout)
    assert rec["state"] == "done" and rec["fits_done"] == 24


@pytest.mark.timeout(60)
def test_second_daemon_on_the_same_state_exits_naming_the_first(env: Env) -> None:
    env.write_job("small.toml", SMALL_JOB)
    first = env.start()
    env.wait_for(lambda: (env.state / "searchd.pid").exists(), 20, "the first daemon")
    second = subprocess.run([sys.executable, "-m", "searchd", "run", "--state", str(env.state),
                             "--jobs", str(env.jobs)], capture_output=True, text=True,
                            timeout=30)
    assert second.returncode != 0
    assert f"pid {first.pid}" in second.stderr and "already in use" in second.stderr
    assert second.stderr.count("\n") == 1  # one line, no traceback


@pytest.mark.slow  # a daemon start for each kind of bad key file
def test_key_file_problems_are_clear_errors(env: Env) -> None:
    env.write_job("small.toml", SMALL_JOB)
    assert env.cli("run", "--drain", timeout=120).returncode == 0
    key = env.state / "searchd.key"
    key.chmod(0o644)
    out = env.cli("run", "--drain")
    assert out.returncode != 0 and "chmod 600" in out.stderr and "Traceback" not in out.stderr
    assert env.cli("verify").returncode != 0
    key.chmod(0o600)
    saved = key.read_bytes()
    key.unlink()
    out = env.cli("run", "--drain")
    assert out.returncode != 0 and "key is missing but checkpoints exist" in out.stderr
    assert not key.exists()  # no silent new key that would orphan the checkpoints
    key.write_bytes(saved)
    key.chmod(0o600)
    assert env.cli("verify").returncode == 0


def test_the_supervisor_never_imports_scikit_learn() -> None:
    code = ("import sys, searchd.supervisor.daemon, searchd.cli.main, searchd.cli.commands; "
            "print(any(m == 'sklearn' or m.startswith('sklearn.') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == "False"


def test_a_checkpoint_of_plain_data_is_written_and_read_without_importing_scikit_learn(
        tmp_path: Path) -> None:
    """The versions a checkpoint records come from the packages' metadata: a reader such as
    ``searchd verify`` or a crash-test writer does not pay scikit-learn's import for them."""
    code = ("import sys; from pathlib import Path; "
            "from searchd.state.signing import load_key; "
            "from searchd.state.store import CheckpointStore; "
            "d = Path(sys.argv[1]); store = CheckpointStore(d, load_key(d, create=True), 'j'); "
            "store.write('results', {'gen': 1}); assert store.read('results')[0] == {'gen': 1}; "
            "print(sorted(m for m in ('sklearn', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                         text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_the_recorded_versions_are_the_imported_libraries_versions() -> None:
    import numpy
    import scipy
    import sklearn

    from searchd.state.signing import versions
    assert versions() == {"python": platform.python_version(), "sklearn": sklearn.__version__,
                          "numpy": numpy.__version__, "scipy": scipy.__version__}


def _tampered(kind: str, good: bytes, env: Env, marker: Path) -> bytes:
    """A results checkpoint spoiled in one of the ways an attacker or a bad disk would."""
    if kind == "flipped byte":
        b = bytearray(good)
        b[len(b) // 2] ^= 0x01
        return bytes(b)
    if kind == "truncated":
        return good[: len(good) - 100]
    if kind == "zero-length":
        return b""
    if kind == "unsigned pickle":
        return pickle.dumps({"models": {}, "splits": []})
    if kind == "another key":
        return dumps(os.urandom(32), "small/results", {"models": {}})
    if kind == "planted pickle":
        return planted_bytes(marker)
    raise AssertionError(kind)


TAMPER_KINDS = ["flipped byte", "truncated", "zero-length", "unsigned pickle", "another key",
                "another state directory", "planted pickle"]
#: each a daemon run: the README's test command takes the planted pickle, CI all of them
_EXTENDED = {"flipped byte", "truncated", "zero-length", "unsigned pickle", "another key",
             "another state directory"}
TAMPER_PARAMS = [pytest.param(k, marks=pytest.mark.slow) if k in _EXTENDED else k
                 for k in TAMPER_KINDS]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """The small job run to the end in state directory ``a`` or ``b`` (two keys), each on
    first use: ``finished("a")`` is the folder of ``jobs/`` and ``state/``."""
    root = tmp_path_factory.mktemp("finished")

    def get(sub: str) -> Path:
        if not (root / sub).exists():
            e = Env(root / sub, root / sub / "jobs", root / sub / "state")
            e.jobs.mkdir(parents=True)
            e.write_job("small.toml", SMALL_JOB)
            out = e.cli("run", "--drain", timeout=120)
            assert out.returncode == 0, out.stderr[-2000:]
        return root / sub
    return get


@pytest.mark.timeout(180)
@pytest.mark.xdist_group("tampered")  # one worker: one run of the `finished` fixture
@pytest.mark.parametrize("kind", TAMPER_PARAMS)
def test_a_tampered_checkpoint_is_quarantined_and_the_job_resumes(
        env: Env, kind: str, finished: Callable[[str], Path]) -> None:
    shutil.copytree(finished("a") / "state", env.state)
    shutil.copy(finished("a") / "jobs" / "small.toml", env.jobs)
    job = env.state / "small"
    marker = env.root / "pwned"
    target = job / "results.ckpt"
    if kind == "another state directory":
        # the same job run under another state directory (another key): copied over
        target.write_bytes((finished("b") / "state" / "small" / "results.ckpt").read_bytes())
    else:
        target.write_bytes(_tampered(kind, target.read_bytes(), env, marker))
    v = env.cli("verify")
    assert v.returncode != 0 and f"BAD {target}" in v.stdout, v.stdout
    (job / "summary.json").unlink()  # make the daemon take the job up again
    run = env.cli("run", "--drain", timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert not marker.exists()
    [reason] = list((job / "quarantine").glob("results.ckpt.*.reason"))
    assert reason.read_text().strip()
    assert "resumed" in run.stderr  # from the previous generation, not from scratch
    assert env.cli("verify").returncode == 0
    assert env.summary("small")["state"] == "done"
