"""Results for the group (issue 21, item 3): with ``publish = true`` the daemon publishes per
job the summary, cv_results as JSON and CSV, the report and the best models as skops files,
readable by its group (folders 2750, files 0640), never a pickle, the key or a checkpoint;
a user who cannot read the private state reads them through ``status``, ``show``,
``report`` and ``export --format skops``.

One real daemon run (``run --drain``, a tiny iris job) is shared by the module; the reader
is simulated in-process (the private-state check patched), and, as root, by a forked child
that really runs as another uid (the kernel's permission checks, not a patch)."""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
import shutil
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import Env

from searchd.cli.main import main
from searchd.errors import SettingsError
from searchd.settings import Settings
from searchd.state import published as pub
from searchd.state.files import KEY_FILE, secure_state_dir
from searchd.worker.publishing import Publisher

pytestmark = [pytest.mark.timeout(120), pytest.mark.report,
              pytest.mark.xdist_group("published")]  # one run of the module fixture

JOB = """
[data]
source = "sklearn:iris"
test_size = 0.2
seed = 0
[search]
cv = 3
[models.knn]
estimator = "KNeighborsClassifier"
grid = { n_neighbors = [1, 3, 5] }
[models.lr]
estimator = "LogisticRegression"
params = { max_iter = 300 }
grid = { C = [0.1, 1.0] }
"""
NOTICE = "reading the published results in "


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("published")
    env = Env(root=root, jobs=root / "jobs", state=root / "state", report=True)
    env.jobs.mkdir()
    env.write_job("iris.toml", JOB)
    cfg = root / "searchd.toml"
    cfg.write_text("publish = true\ncheckpoint_interval = 0.5\n")
    try:
        out = env.cli("run", "--drain", "--config", str(cfg), timeout=100)
        assert out.returncode == 0, out.stderr[-3000:]
        yield env
    finally:
        env.reap()


def published_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*"))


# --- what is published, and how ----------------------------------------------------------------

def test_published_folders_2750_files_0640_state_0710_the_rest_private(ran: Env) -> None:
    root = ran.state / "published"
    folder = root / "iris"
    assert stat.S_IMODE(ran.state.stat().st_mode) == 0o710  # the group passes, never lists
    assert stat.S_IMODE((ran.state / KEY_FILE).stat().st_mode) == 0o600
    assert stat.S_IMODE((ran.state / "iris").stat().st_mode) == 0o700
    for p in (root, folder):
        assert stat.S_IMODE(p.stat().st_mode) == 0o2750, p
        assert p.stat().st_gid == ran.state.stat().st_gid
    names = {p.name for p in folder.iterdir()}
    assert names == {"summary.json", "results.json", "report.html", "knn.cv_results.json",
                     "knn.cv_results.csv", "lr.cv_results.json", "lr.cv_results.csv",
                     "knn.skops", "lr.skops"}
    for p in published_files(root):
        if p.is_file():
            assert stat.S_IMODE(p.stat().st_mode) == 0o640, p
            assert p.stat().st_gid == folder.stat().st_gid, p


def test_nothing_secret_is_published(ran: Env) -> None:
    key = (ran.state / KEY_FILE).read_bytes()
    magic = {".json": (b"{", b"["), ".csv": (b"mean_fit_time",), ".html": (b"<!DOCTYPE",),
             ".skops": (b"PK\x03\x04",)}
    for p in published_files(ran.state / "published"):
        if p.is_dir():
            continue
        assert pub.allowed_name(p.name, root=p.parent.name == "published"), p
        data = p.read_bytes()
        assert not data.startswith(b"\x80"), f"{p}: a pickle"
        assert p.suffix not in (".ckpt", ".pkl", ".pickle", ".joblib", ".key"), p
        assert data.startswith(magic[p.suffix]), p
        assert key not in data and key.hex().encode() not in data, f"{p}: holds the key"
    # the skops files are zips of JSON and arrays: no pickle inside either
    import zipfile
    for p in (ran.state / "published" / "iris").glob("*.skops"):
        with zipfile.ZipFile(p) as z:
            for name in z.namelist():
                assert not z.read(name).startswith(b"\x80"), (p, name)


@pytest.mark.slow  # the folder test above checks what is published and its modes
def test_published_results_match_the_private_ones(
        ran: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import skops.io as sio
    folder = ran.state / "published" / "iris"
    show = json.loads(cli(capsys, "show", "iris", "--json", "--state", str(ran.state))[1])
    for name in ("knn", "lr"):
        cv = json.loads((folder / f"{name}.cv_results.json").read_text())
        assert cv == show["models"][name]["cv_results"]
        lines = (folder / f"{name}.cv_results.csv").read_text().splitlines()
        assert len(lines) == 1 + len(cv["params"]) and "rank_test_score" in lines[0]
        out = tmp_path / f"{name}.pkl"
        assert cli(capsys, "export", "iris", "--model", name, "-o", str(out), "--state",
                   str(ran.state))[0] == 0
        private = pickle.loads(out.read_bytes())
        shared = sio.loads((folder / f"{name}.skops").read_bytes(),
                           trusted=sio.get_untrusted_types(
                               data=(folder / f"{name}.skops").read_bytes()))
        from sklearn.datasets import load_iris
        X = load_iris().data
        assert np.array_equal(private.predict(X), shared.predict(X))
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["state"] == "done" and summary == ran.summary("iris")
    results = json.loads((folder / "results.json").read_text())
    assert results["best"] in ("knn", "lr")
    assert results["models"]["knn"]["best_score"] == show["models"]["knn"]["best_score"]
    assert (folder / "report.html").read_bytes() == (ran.state / "iris" / "report.html"
                                                      ).read_bytes()


# --- a member of the group reads them ----------------------------------------------------------

def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    got = capsys.readouterr()
    return code, got.out, got.err


def test_a_reader_without_the_private_state_goes_through_the_published_folder(
        ran: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    state, jobs = str(ran.state), str(ran.jobs)
    private = {}
    for args in (["status", "--json"], ["show", "iris", "--json"]):
        private[args[0]] = json.loads(cli(capsys, *args, "--state", state, "--jobs", jobs)[1])
    monkeypatch.setattr(pub, "private_unreadable", lambda state_dir: True)
    notice = (f"searchd: {NOTICE}{ran.state / 'published'}: the private state is not "
              "readable by you\n")
    code, out, err = cli(capsys, "status", "--state", state, "--jobs", jobs)
    assert code == 0 and err == notice and "iris" in out and "done" in out
    code, out, err = cli(capsys, "status", "--json", "--state", state, "--jobs", jobs)
    assert code == 0 and json.loads(out) == private["status"]
    code, out, err = cli(capsys, "show", "iris", "--json", "--state", state)
    assert code == 0 and err == notice
    shown = json.loads(out)
    for name, m in private["show"]["models"].items():
        for k in ("state", "best_params", "best_score", "test_score", "cv_results",
                  "fits_done", "fits_total"):
            assert shown["models"][name][k] == m[k], (name, k)
    code, out, err = cli(capsys, "show", "iris", "--state", state)
    assert code == 0 and "best CV score" in out
    report = tmp_path / "r.html"
    code, out, err = cli(capsys, "report", "iris", "-o", str(report), "--state", state)
    assert code == 0 and report.read_bytes() == (ran.state / "published" / "iris" /
                                                  "report.html").read_bytes()
    model = tmp_path / "m.skops"
    code, out, err = cli(capsys, "export", "iris", "--format", "skops", "-o", str(model),
                         "--state", state)
    best = json.loads((ran.state / "published" / "iris" / "results.json").read_text())["best"]
    assert code == 0 and f"exported iris/{best} (skops)" in out
    assert model.read_bytes() == (ran.state / "published" / "iris" / f"{best}.skops"
                                  ).read_bytes()
    code, out, err = cli(capsys, "export", "iris", "-o", str(tmp_path / "m.pkl"),
                         "--state", state)
    assert code != 0 and "only skops models are published" in err
    assert not (tmp_path / "m.pkl").exists()
    code, out, err = cli(capsys, "show", "nope", "--state", state)
    assert code != 0 and "no job 'nope'" in err


def test_no_published_folder_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "state").mkdir()
    monkeypatch.setattr(pub, "private_unreadable", lambda state_dir: True)
    code, out, err = cli(capsys, "status", "--state", str(tmp_path / "state"), "--jobs",
                         str(tmp_path))
    assert code != 0 and "the private state is not readable by you, and no results are " \
                         "published in" in err


def test_private_unreadable_sees_a_key_it_may_not_open(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    state.mkdir()
    assert not pub.private_unreadable(state)  # no key yet: nothing to say
    (state / KEY_FILE).write_bytes(b"k" * 32)
    assert not pub.private_unreadable(state)
    real_open = open

    def refusing(path: object, *a: object, **k: object) -> object:
        if str(path).endswith(KEY_FILE):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *a, **k)  # type: ignore[call-overload]

    monkeypatch.setattr("builtins.open", refusing)
    assert pub.private_unreadable(state)


def run_as(uid: int, gid: int, cwd: Path, argv: list[str]) -> dict[str, object]:
    """Run ``main(argv)`` in a forked child that is ``uid`` with group ``gid`` only (no
    other group), in ``cwd``; what it could open, its exit code and its output."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 99
        try:
            os.close(r)
            os.chdir(cwd)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            # the parent's config folders are under private ones; this user has none
            os.environ["XDG_CONFIG_HOME"] = os.environ["HOME"] = "/nonexistent"
            out = io.StringIO()
            sys.stdout = sys.stderr = out
            opened = {}
            for path in ("state/" + KEY_FILE, "state/iris/summary.json",
                         "state/iris/results.ckpt", "state/published/iris/summary.json"):
                try:
                    open(path, "rb").close()
                    opened[path] = "readable"
                except OSError as e:
                    opened[path] = type(e).__name__
            logging.disable(logging.CRITICAL)
            code = main(argv)
            os.write(w, json.dumps({"opened": opened, "code": code,
                                    "out": out.getvalue()}).encode())
        except BaseException:  # noqa: BLE001 - the child reports everything to the parent
            import traceback
            os.write(w, json.dumps({"error": traceback.format_exc()}).encode())
        finally:
            os._exit(code if isinstance(code, int) else 98)
    os.close(w)
    deadline = time.monotonic() + 30
    while not os.waitpid(pid, os.WNOHANG)[0]:
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise AssertionError("the child reader hung")
        time.sleep(0.05)
    with os.fdopen(r, "rb") as f:
        got: dict[str, object] = json.loads(f.read().decode() or "{}")
    assert got and "error" not in got, got.get("error", "the child said nothing")
    return got


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another uid")
def test_another_uid_in_the_group_reads_the_published_results_and_nothing_else(
        ran: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Forked children become an unused uid, with the daemon's group (the state folder's)
    or without it: the kernel, not a patch, decides what they may read."""
    import pwd
    # the same command once here, so that every module it needs is imported: the child may
    # not read the interpreter's own files (they may sit in a private home)
    with monkeypatch.context() as m:
        m.setattr(pub, "private_unreadable", lambda state_dir: True)
        assert cli(capsys, "status", "--json", "--state", str(ran.state), "--jobs",
                   str(ran.jobs))[0] == 0
    uid = next(u for u in range(61000, 62000) if not _uid_used(pwd, u))
    ran.root.chmod(0o711)  # the test's own folder: others may pass (as /var/lib is)
    argv = ["status", "--json", "--state", "state", "--jobs", "jobs"]
    member = run_as(uid, ran.state.stat().st_gid, ran.root, argv)
    assert member["opened"] == {
        "state/" + KEY_FILE: "PermissionError", "state/iris/summary.json": "PermissionError",
        "state/iris/results.ckpt": "PermissionError",
        "state/published/iris/summary.json": "readable"}
    text = str(member["out"])
    assert member["code"] == 0, text
    assert NOTICE + "state/published: the private state is not readable by you" in text
    rows = json.loads(text[text.index("["):])
    assert [r["id"] for r in rows] == ["iris"] and rows[0]["state"] == "done"
    stranger = run_as(uid, uid, ran.root, argv)  # not in the group: nothing at all
    assert set(dict(stranger["opened"]).values()) == {"PermissionError"}  # type: ignore[arg-type]
    assert stranger["code"] != 0 and "nor are the published results in state/published " \
        "(they are for the daemon's group)" in str(stranger["out"])


def _uid_used(pwd: object, uid: int) -> bool:
    try:
        pwd.getpwuid(uid)  # type: ignore[attr-defined]
    except KeyError:
        return False
    return True


# --- the pieces ----------------------------------------------------------------------------------

def test_publish_file_modes_names_and_atomic_replace(tmp_path: Path) -> None:
    old = os.umask(0o077)  # the unit's UMask=0077 must not close the group's access
    try:
        folder = pub.job_folder(tmp_path / "pub", "j")
        pub.publish_file(folder, "summary.json", b"{}\n")
        pub.publish_file(folder, "summary.json", b'{"a": 1}\n')
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "pub").stat().st_mode) == 0o2750
    assert stat.S_IMODE(folder.stat().st_mode) == 0o2750
    assert stat.S_IMODE((folder / "summary.json").stat().st_mode) == 0o640
    assert (folder / "summary.json").read_bytes() == b'{"a": 1}\n'
    assert os.listdir(folder) == ["summary.json"]  # no temp file left
    for bad in ("model-knn.ckpt", "searchd.key", "knn.pkl", "../x.json", "results.pickle"):
        with pytest.raises(ValueError):
            pub.publish_file(folder, bad, b"x")
    with pytest.raises(ValueError):
        pub.job_folder(tmp_path / "pub", "..")


def test_a_link_where_a_published_folder_belongs_is_replaced_not_followed(
        tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    (tmp_path / "pub").mkdir()
    (tmp_path / "pub" / "j").symlink_to(target)
    folder = pub.job_folder(tmp_path / "pub", "j")
    assert not folder.is_symlink() and stat.S_IMODE(target.stat().st_mode) == 0o700


def test_secure_state_dir_keeps_checkpoints_private_when_publishing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "job").mkdir(parents=True, mode=0o755)
    (state / "job" / "summary.json").write_text("{}")
    pub.job_folder(state / "published", "job")
    secure_state_dir(state, publish_inside=True)
    assert stat.S_IMODE(state.stat().st_mode) == 0o710
    assert stat.S_IMODE((state / "job").stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "published").stat().st_mode) == 0o2750
    assert stat.S_IMODE((state / "published" / "job").stat().st_mode) == 0o2750
    secure_state_dir(state)  # publishing off again: everything private
    for p in (state, state / "job", state / "published", state / "published" / "job"):
        assert stat.S_IMODE(p.stat().st_mode) & 0o077 == 0, p


def test_publish_dir_inside_the_state_folder_is_refused(tmp_path: Path) -> None:
    s = Settings(state_dir=tmp_path / "state", publish=True)
    assert pub.publishes_inside(s)
    assert not pub.publishes_inside(Settings(state_dir=tmp_path / "state"))
    assert not pub.publishes_inside(Settings(state_dir=tmp_path / "s", publish=True,
                                             publish_dir=tmp_path / "results"))
    for bad in (tmp_path / "state" / "other", tmp_path / "state", tmp_path):
        with pytest.raises(SettingsError, match="inside \\(or above\\) the state folder"):
            pub.publishes_inside(Settings(state_dir=tmp_path / "state", publish=True,
                                          publish_dir=bad))


def test_without_skops_the_models_are_skipped_and_it_is_logged_once(
        ran: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    state = tmp_path / "state"
    shutil.copytree(ran.state, state, ignore=shutil.ignore_patterns("published", "*.lock"))
    monkeypatch.setitem(sys.modules, "skops.io", None)  # import skops.io: ImportError
    caplog.set_level(logging.INFO, "searchd.worker.publishing")
    p = Publisher(state, "iris", tmp_path / "out")
    assert p.publish() and p.publish()
    assert caplog.text.count("skops is not installed") == 1
    names = {f.name for f in (tmp_path / "out" / "iris").iterdir()}
    assert not any(n.endswith(".skops") for n in names) and "knn.cv_results.csv" in names
    results = json.loads((tmp_path / "out" / "iris" / "results.json").read_text())
    assert results["models"]["knn"]["model"] is None


def test_the_system_config_publishes_and_the_default_does_not() -> None:
    from searchd.settings import load_config, settings_from
    repo = Path(__file__).resolve().parent.parent
    for folder in (repo / "systemd", repo / "searchd" / "service_files"):
        s = settings_from(load_config(folder / "searchd.toml"), "system config")
        assert s.publish and s.publish_dir is None
        assert "StateDirectoryMode=0710" in (folder / "searchd.service").read_text()
    assert not Settings().publish


def test_the_worker_gets_an_absolute_publish_dir() -> None:
    from searchd.supervisor.handle import _absolute
    s = _absolute(Settings(publish=True, publish_dir=Path("results")))
    assert s.publish_dir == Path("results").absolute()
    assert _absolute(Settings()).publish_dir is None
