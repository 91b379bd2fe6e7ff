"""Issue 17, parts 2-5: no job file and no planted file may reach other files or stop the daemon.

Each test attacks for real: data paths that lead into the state folder or out of the allowed
folders (absolute, ``..``, symbolic links, a link swapped in after the check), job files named
after the state folder's own files, planted ``summary.json`` files and links inside ``state/``,
and ``export -o`` onto links, devices, FIFOs, folders and hard links.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from conftest import Env
from jobtexts import IRIS_KNN

from searchd.cli.export import write_output
from searchd.errors import CheckpointError, DataError, JobSpecError, SearchdError, SettingsError
from searchd.jobs.folder import scan
from searchd.jobs.ids import job_id_problem
from searchd.jobs.load import load_job, parse_job
from searchd.settings import settings_from
from searchd.state import records
from searchd.state.files import (
    UnsafePathError,
    make_private_dir,
    open_private_append,
    read_private,
    secure_state_dir,
)
from searchd.state.records import JobRecord, JobState, all_summaries, write_summary
from searchd.state.signing import MAGIC, load_key
from searchd.state.store import CheckpointStore
from searchd.worker import data as data_mod
from searchd.worker.data import load_dataset

SECRET = "SECRET-7f3a"
#: a CSV that would load fine: if a refused path were read, the job would be accepted
SECRET_CSV = f"{SECRET},y\n" + "".join(f"{i},{i % 2}\n" for i in range(12))

JOB = IRIS_KNN


def csv_job(source: str) -> str:
    return JOB.replace('source = "sklearn:iris"', f'source = "{source}"\ntarget = "y"')


@pytest.fixture
def place(tmp_path: Path) -> Path:
    """root/{jobs, state, outside, data}: a secret file in each place data must not come from."""
    for d in ("jobs", "state/other", "outside", "data"):
        (tmp_path / d).mkdir(parents=True)
    for f in ("outside/secret.csv", "state/other/secret.csv", "data/ok.csv", "jobs/ok.csv"):
        (tmp_path / f).write_text(SECRET_CSV)
    return tmp_path


def _load(place: Path, source: str, data_dirs: tuple[Path, ...] = (),
          name: str = "x.toml") -> None:
    path = place / "jobs" / name
    path.write_text(csv_job(source))
    spec = load_job(path, 100)
    load_dataset(spec, True, data_dirs=data_dirs, state_dir=place / "state")


def _refused(place: Path, source: str, why: str, data_dirs: tuple[Path, ...] = ()) -> str:
    with pytest.raises(DataError) as e:
        _load(place, source, data_dirs)
    msg = str(e.value)
    assert msg.startswith((f"{place / 'jobs' / 'x.toml'}: data.source: ",
                           f"{place / 'jobs' / 'x.toml'}: data.target: ")), msg
    assert why in msg, msg
    assert "\n" not in msg and SECRET not in msg, msg
    return msg


# --- 2. data files only where the daemon allows ------------------------------------------------

OUTSIDE = "data files are read only from the job's folder"
IN_STATE = "is in the state folder; searchd never reads data from there"


@pytest.mark.parametrize("make, why", [
    (lambda r: f"csv:{r / 'outside' / 'secret.csv'}", OUTSIDE),
    (lambda r: "csv:../outside/secret.csv", OUTSIDE),
    (lambda r: "csv:sub/../../outside/secret.csv", OUTSIDE),
    (lambda r: f"csv:{r / 'state' / 'other' / 'secret.csv'}", IN_STATE),
    (lambda r: "csv:../state/other/secret.csv", IN_STATE),
    (lambda r: "csv:/etc/passwd", OUTSIDE),
    (lambda r: "npz:/proc/self/environ", OUTSIDE),
    (lambda r: f"csv:{r / 'outside' / 'missing.csv'}", OUTSIDE),  # no existence oracle
])
def test_data_paths_out_of_the_allowed_folders_are_refused(place: Path, make, why: str) -> None:
    (place / "jobs" / "sub").mkdir()
    _refused(place, make(place), why)


@pytest.mark.parametrize("target, why", [
    ("outside/secret.csv", OUTSIDE), ("state/other/secret.csv", IN_STATE),
    ("state", IN_STATE), ("outside", OUTSIDE)])
def test_links_in_the_jobs_folder_are_resolved_before_the_check(place: Path, target: str,
                                                                 why: str) -> None:
    (place / "jobs" / "link").symlink_to(place / target)
    source = "csv:link" if target.endswith(".csv") else "csv:link/other/secret.csv" \
        if target == "state" else "csv:link/secret.csv"
    _refused(place, source, why)


def test_the_state_folder_stays_closed_inside_data_dirs(place: Path) -> None:
    # data_dirs names the folder that holds the state folder: the state folder stays refused
    _refused(place, f"csv:{place / 'state' / 'other' / 'secret.csv'}", IN_STATE,
             data_dirs=(place,))
    # and the state folder inside the jobs folder too
    (place / "jobs" / "state").mkdir()
    (place / "jobs" / "state" / "s.csv").write_text(SECRET_CSV)
    path = place / "jobs" / "x.toml"
    path.write_text(csv_job("csv:state/s.csv"))
    with pytest.raises(DataError, match="is in the state folder"):
        load_dataset(load_job(path, 100), True, state_dir=place / "jobs" / "state")


def test_data_dirs_and_the_jobs_folder_are_readable(place: Path) -> None:
    _load(place, "csv:ok.csv")
    _load(place, f"csv:{place / 'data' / 'ok.csv'}", data_dirs=(place / "data",))
    (place / "jobs" / "to-data.csv").symlink_to(place / "data" / "ok.csv")
    _load(place, "csv:to-data.csv", data_dirs=(place / "data",))
    _refused(place, "csv:to-data.csv", OUTSIDE)  # without data_dirs, the link's target is out


def test_a_link_swapped_in_after_the_check_is_caught_on_the_opened_file(
        place: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The race: the path resolves inside when checked, then is a link out when opened."""
    (place / "jobs" / "race.csv").symlink_to(place / "state" / "other" / "secret.csv")
    real = os.path.realpath
    monkeypatch.setattr(data_mod.os.path, "realpath",
                        lambda p: str(p) if str(p).endswith("race.csv") else real(p))
    flags: list[int] = []
    opener = os.open

    def open_following(p: object, f: int, *a: object) -> int:  # as if the link came later
        flags.append(f)
        return opener(p, f & ~os.O_NOFOLLOW, *a)  # type: ignore[arg-type]
    monkeypatch.setattr(data_mod.os, "open", open_following)
    _refused(place, "csv:race.csv", IN_STATE)
    assert flags[-1] & os.O_NOFOLLOW  # and the real open would not follow it at all


@pytest.mark.parametrize("text, why", [
    (f"a,{SECRET}\n1,{SECRET}\n", "no column 'y' (2 columns)"),
    (f"{SECRET},y\n1,0\n2,{SECRET},9\n", "Expected 2 fields in line 3, saw 3"),
    (f"{SECRET},y\n1,0\n{SECRET},\n", "has a missing value (data row 2)"),
])
def test_content_errors_show_nothing_of_the_file(place: Path, text: str, why: str) -> None:
    (place / "jobs" / "ok.csv").write_text(text)
    _refused(place, "csv:ok.csv", why)  # no SECRET: neither the header nor a value


def test_data_dirs_setting() -> None:
    s = settings_from({"data_dirs": ["/srv/data", "rel"]}, "test")
    assert s.data_dirs == (Path("/srv/data"), Path("rel"))
    assert settings_from({}, "test").data_dirs == ()
    for bad in ("/srv/data", [1], [""], None):
        with pytest.raises(SettingsError, match="data_dirs: expected a list of folders"):
            settings_from({"data_dirs": bad}, "test")


def test_validate_refuses_what_the_worker_refuses(env: Env,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from searchd.cli.main import main  # in this process: a command costs 3 s of imports
    (env.root / "data").mkdir()
    (env.root / "data" / "d.csv").write_text(SECRET_CSV)
    (env.state / "j").mkdir(parents=True)
    (env.state / "j" / "s.csv").write_text(SECRET_CSV)
    (env.jobs / "link.csv").symlink_to(env.state / "j" / "s.csv")
    for name, source, why in [("steal", "csv:link.csv", IN_STATE),
                              ("out", f"csv:{env.root / 'data' / 'd.csv'}", OUTSIDE)]:
        job = env.write_job(f"{name}.toml", csv_job(source))
        code = main(["validate", str(job), "--state", str(env.state), "--jobs", str(env.jobs)])
        out, err = capsys.readouterr()
        assert code != 0 and why in err, err
        assert SECRET not in err + out and len(err.splitlines()) == 1
    config = env.root / "searchd.toml"
    config.write_text(f'data_dirs = ["{env.root / "data"}"]\n')
    ok = env.cli("validate", str(env.jobs / "out.toml"), "--config", str(config))
    assert ok.returncode == 0, ok.stderr


# --- 3. job ids -------------------------------------------------------------------------------

#: job file names (bytes: any name a file system allows) that must never become a state folder
HOSTILE_NAMES = [b"pause.json.toml", b"searchd.key.toml", b"searchd.lock.toml",
                 b"searchd.pid.toml", b"SEARCHD.KEY.json", b"searchd.anything.toml",
                 b"quarantine.toml", b"published.json", b"other.lock.toml", b"x.pid.toml",
                 b"x.key.json", b"-x.toml", b"--help.toml", b"-.json", b".hidden.toml",
                 b"..toml", b"nl\n.toml", b"tab\t.toml", b"\xff\xfe.toml", b"sp ace.toml",
                 b"a" * 250 + b".toml"]


def _id(name: bytes) -> str:
    return os.fsdecode(name).rsplit(".", 1)[0]


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=repr)
def test_hostile_ids_are_refused(name: bytes, tmp_path: Path) -> None:
    jid = _id(name)
    if len(jid) < 250:
        assert job_id_problem(jid) is not None, jid
        path = tmp_path / os.fsdecode(name)
        with pytest.raises(JobSpecError) as e:
            parse_job(JOB.encode(), path, 100)
        assert str(e.value).startswith(f"{path}: job id ")
    else:
        assert job_id_problem(jid) is None  # a long name is fine: the file system decides


def test_ids_are_matched_whole() -> None:
    assert job_id_problem("good\n") is not None
    assert job_id_problem("good") is None and job_id_problem("a.b-c_1") is None
    assert job_id_problem("searchd") is None  # only searchd.<anything> is the daemon's


def test_scan_rejects_hostile_names_and_state_clashes(tmp_path: Path) -> None:
    jobs, state = tmp_path / "jobs", tmp_path / "state"
    jobs.mkdir()
    state.mkdir()
    for name in HOSTILE_NAMES:
        with open(os.fsencode(jobs) + b"/" + name, "wb") as f:
            f.write(JOB.encode())
    (jobs / "clash.toml").write_text(JOB)
    (state / "clash").write_text("a planted file where the job's folder would go")
    (jobs / "good.toml").write_text(JOB)
    found, rejected = scan(jobs, state)
    assert set(found) == {"good", "a" * 250}
    assert len(rejected) == len(HOSTILE_NAMES)  # the clash, plus all but the long one
    assert all("\n" not in reason for _, reason in rejected)
    assert any("clash" in str(p) and "is not a folder" in r for p, r in rejected)


def test_validate_and_submit_refuse_reserved_ids(env: Env,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    # in this process (each a subprocess cost 3 s of imports); test_cli runs them as commands
    from searchd.cli.main import main
    for name in ("pause.json.toml", "searchd.key.toml", "-x.toml"):
        src = env.root / name
        src.write_text(JOB)
        for cmd in ("validate", "submit"):
            code = main([cmd, str(src), "--state", str(env.state), "--jobs", str(env.jobs)])
            err = capsys.readouterr().err
            assert code != 0 and "job id" in err, (name, cmd, err)
            assert len(err.strip().splitlines()) == 1, err
    assert sorted(os.listdir(env.jobs)) == []


# --- 4. the state folder is not trusted blindly -----------------------------------------------

def _plant(state: Path, folder: str, doc: object) -> None:
    load_key(state, create=True)  # an existing state folder, as a planter would find it
    (state / folder).mkdir(parents=True, exist_ok=True)
    (state / folder / "summary.json").write_text(json.dumps(doc))


PLANTED: dict[str, object] = {
    "escape": {"id": "../../outside", "state": "done"},
    "intid": {"id": 5, "state": "queued", "fits_done": "many"},
    "badmodels": {"id": "badmodels", "state": "done", "models": "not a table"},
    "badentry": {"id": "badentry", "state": "done", "models": {
        "m": 5, "n": {"state": "done", "fits_done": "x", "best_score": "high",
                      "best_params": [1], "fits_total": 4}}},
    "badstate": {"state": "exploded", "priority": [1], "mtime": "yesterday"},
    "array": [1, 2, 3],
}


def test_records_come_from_folder_names_and_bad_fields_are_dropped(tmp_path: Path) -> None:
    state = tmp_path / "a" / "b" / "state"
    for folder, doc in PLANTED.items():
        _plant(state, folder, doc)
    (tmp_path / "elsewhere").mkdir()
    _plant(tmp_path, "elsewhere", {"state": "done"})
    (state / "linked").symlink_to(tmp_path / "elsewhere")
    _plant(state, "quarantine", {"state": "done"})
    recs = {r.id: r for r in all_summaries(state)}
    assert set(recs) == set(PLANTED)  # folder names; no link, not quarantine
    assert recs["escape"].state == JobState.DONE and recs["intid"].fits_done == 0
    assert recs["badmodels"].models == {}
    assert recs["badentry"].models == {"n": {"state": "done", "fits_total": 4}}
    assert recs["badstate"].state == JobState.QUEUED and recs["badstate"].priority == 0
    for rec in recs.values():
        write_summary(state, rec)
        assert json.loads((state / rec.id / "summary.json").read_text())["id"] == rec.id
    assert not (tmp_path / "outside").exists() and not (tmp_path / "a" / "outside").exists()
    assert json.loads((tmp_path / "elsewhere" / "summary.json").read_text()) == {"state": "done"}
    with pytest.raises(SearchdError):
        write_summary(state, JobRecord(id="../x"))


def test_private_folders_never_follow_links(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (tmp_path / "job").symlink_to(victim)
    make_private_dir(tmp_path / "job")  # the link is replaced by a real folder
    assert (tmp_path / "job").is_dir() and not (tmp_path / "job").is_symlink()
    assert victim.is_dir() and list(victim.iterdir()) == []
    (tmp_path / "open").mkdir(mode=0o777)
    os.chmod(tmp_path / "open", 0o777)
    make_private_dir(tmp_path / "open")
    assert stat.S_IMODE((tmp_path / "open").stat().st_mode) == 0o700
    (tmp_path / "file").write_text("x")
    with pytest.raises(UnsafePathError, match="is not a folder"):
        make_private_dir(tmp_path / "file")


def test_secure_state_dir_closes_open_folders_at_start(tmp_path: Path) -> None:
    state = tmp_path / "state"
    for d in ("state", "state/job", "state/job/quarantine"):
        (tmp_path / d).mkdir()
        os.chmod(tmp_path / d, 0o777)
    (state / "searchd.key").write_bytes(b"k" * 32)
    secure_state_dir(state)
    for d in ("state", "state/job", "state/job/quarantine"):
        assert stat.S_IMODE((tmp_path / d).stat().st_mode) == 0o700, d


def test_a_mistyped_state_folder_is_refused_untouched(tmp_path: Path) -> None:
    """--state pointing at someone's folder (not empty, no searchd.key) changes nothing."""
    home = tmp_path / "home"
    (home / "photos").mkdir(parents=True)
    os.chmod(home / "photos", 0o755)
    with pytest.raises(CheckpointError, match="not a searchd state folder"):
        secure_state_dir(home)
    assert stat.S_IMODE((home / "photos").stat().st_mode) == 0o755
    assert sorted(os.listdir(home)) == ["photos"]
    secure_state_dir(tmp_path / "fresh")  # an absent or empty folder becomes one


def test_fits_log_quarantine_and_checkpoints_are_never_followed(tmp_path: Path) -> None:
    job = tmp_path / "state" / "job"
    job.mkdir(parents=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    (job / "fits.log").symlink_to(victim)
    fd = open_private_append(job / "fits.log")
    os.write(fd, b"x")
    os.close(fd)
    assert victim.read_text() == "keep me\n" and (job / "fits.log").read_bytes() == b"x"
    # quarantine through a link: the refused file must land in the job's own quarantine
    outside = tmp_path / "outside"
    outside.mkdir()
    (job / "quarantine").symlink_to(outside)
    (job / "results.ckpt").write_bytes(MAGIC + b"\0" * 40)
    os.mkfifo(job / "results.prev.ckpt")  # would block a reader that does not check
    (job / ".results.next").symlink_to(victim)
    store = CheckpointStore(job, b"k" * 32, "job")
    data, refused = store.read("results", quarantine=True)
    assert data is None and len(refused) == 3
    assert list(outside.iterdir()) == [] and victim.read_text() == "keep me\n"
    moved = sorted(p.name for p in (job / "quarantine").iterdir())
    assert len(moved) == 6 and not (job / "quarantine").is_symlink()
    with pytest.raises(UnsafePathError):
        read_private(job / "quarantine")


def test_status_show_and_verify_survive_a_planted_state(env: Env) -> None:
    env.cli("status").check_returncode()  # no state folder yet
    for folder, doc in PLANTED.items():
        _plant(env.state, folder, doc)
    run = env.cli("run", "--drain", timeout=60)
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr[-3000:]
    (env.state / "quarantine").mkdir()
    (env.state / "quarantine" / "x.ckpt").write_bytes(b"junk")
    assert not (env.root.parent / "outside").exists() and not (env.root / "outside").exists()
    status = env.cli("status", "--json", check=True)
    assert {r["id"] for r in json.loads(status.stdout)} == set(PLANTED)
    for job in ("badmodels", "badentry", "intid"):
        out = env.cli("show", job)
        assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    assert env.cli("status").returncode == 0
    verify = env.cli("verify", "--json", check=True)
    assert "quarantine" not in verify.stdout  # the daemon's own folder is no job
    assert env.cli("verify", "../x").returncode != 0


# --- 3 + 4 through the daemon: hostile names, a data theft, planted links, a restart ------------

@pytest.mark.slow  # each part is checked in this process above; the whole, in the extended tier
@pytest.mark.timeout(180)
def test_the_daemon_serves_and_restarts_whatever_the_job_names(env: Env, tmp_path: Path) -> None:
    for name in HOSTILE_NAMES[:-1]:
        with open(os.fsencode(env.jobs) + b"/" + name, "wb") as f:
            f.write(JOB.encode())
    load_key(env.state, create=True)  # an existing state folder
    (env.state / "clash").write_text("planted")
    (env.jobs / "clash.toml").write_text(JOB)
    (env.jobs / "key.csv").symlink_to(env.state / "searchd.key")  # made before any worker
    env.write_job("steal.toml", csv_job("csv:key.csv"))
    env.write_job("good.toml", JOB)
    first = env.cli("run", "--drain", timeout=80)
    assert first.returncode == 0 and "Traceback" not in first.stderr, first.stderr[-3000:]
    for name in HOSTILE_NAMES[:-1]:
        shown = os.fsdecode(name).encode("unicode_escape").decode()
        assert "ignored: " in first.stderr and shown.split(".")[0][:20] in first.stderr, name
    assert "\nnl\n" not in first.stderr  # a newline in a name cannot forge a log line
    status = {r["id"]: r for r in json.loads(env.cli("status", "--json", check=True).stdout)}
    assert status["good"]["state"] == "done"
    assert status["steal"]["state"] == "invalid" and IN_STATE in status["steal"]["error"]
    entries = set(os.listdir(env.state))
    assert entries <= {"searchd.key", "searchd.lock", "searchd.pid", "good", "steal", "clash",
                       "a" * 250}, entries
    for f in ("searchd.key", "searchd.lock", "searchd.pid", "clash"):
        assert (env.state / f).is_file() and not (env.state / f).is_symlink(), f
    # the restart, with a new job whose state folder was prepared by an attacker
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    planted = env.state / "good2"
    planted.mkdir()
    os.chmod(planted, 0o777)
    (planted / "fits.log").symlink_to(victim)
    (planted / "quarantine").symlink_to(outside)
    (planted / "results.ckpt").write_bytes(MAGIC + b"\0" * 40)
    env.write_job("good2.toml", JOB)
    second = env.cli("run", "--drain", timeout=80)
    assert second.returncode == 0 and "Traceback" not in second.stderr, second.stderr[-3000:]
    status = {r["id"]: r for r in json.loads(env.cli("status", "--json", check=True).stdout)}
    assert status["good"]["state"] == "done" and status["good2"]["state"] == "done"
    assert victim.read_text() == "keep me\n" and list(outside.iterdir()) == []
    assert stat.S_IMODE(planted.stat().st_mode) == 0o700
    assert len(list((planted / "quarantine").glob("results.ckpt.*.reason"))) == 1
    for cmd in (("pause",), ("resume",)):
        assert env.cli(*cmd).returncode == 0
    # export onto what is there already (part 5 through the CLI)
    target = env.root / "model.pkl"
    target.write_bytes(b"old")
    os.chmod(target, 0o640)
    out = env.cli("export", "good", "-o", str(target), check=True)
    assert f"→ {target} (" in out.stdout and " bytes)" in out.stdout
    assert stat.S_IMODE(target.stat().st_mode) == 0o640 and target.stat().st_size > 100
    (env.root / "link.pkl").symlink_to(victim)
    out = env.cli("export", "good", "-o", str(env.root / "link.pkl"))
    assert out.returncode != 0 and "symbolic link" in out.stderr
    assert victim.read_text() == "keep me\n"


# --- 5. export -o -----------------------------------------------------------------------------

def test_export_writes_only_regular_files(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    (tmp_path / "link").symlink_to(victim)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    os.link(victim, tmp_path / "hard")
    cases = {"link": "symbolic link", "dangling": "symbolic link", "fifo": "is a FIFO",
             "dir": "is a folder", "hard": "has 2 hard links"}
    try:
        os.mknod(tmp_path / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        cases["null"] = "is a device"
    except PermissionError:
        pass  # not root: no device node to attack with
    for name, why in cases.items():
        before = os.lstat(tmp_path / name)
        with pytest.raises(SearchdError, match=why):
            write_output(tmp_path / name, b"model")
        after = os.lstat(tmp_path / name)
        assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode), name
    assert victim.read_text() == "keep me\n" and not (tmp_path / "nowhere").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*cases, "victim"])


def test_export_keeps_the_mode_and_replaces_atomically(tmp_path: Path) -> None:
    out = tmp_path / "m.pkl"
    out.write_bytes(b"old")
    os.chmod(out, 0o604)
    before = out.stat().st_ino
    write_output(out, b"new model")
    assert out.read_bytes() == b"new model"
    assert stat.S_IMODE(out.stat().st_mode) == 0o604
    assert out.stat().st_ino != before  # a new file put in place, never half-written
    write_output(tmp_path / "fresh.pkl", b"x")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "fresh.pkl").stat().st_mode) == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh.pkl", "m.pkl"]


def test_records_module_has_no_hidden_id_path() -> None:
    """summary_path is the one way to a record's file, and it refuses non-ids."""
    for bad in ("..", "../x", "a/b", "", "quarantine", "pause.json"):
        with pytest.raises(SearchdError):
            records.summary_path(Path("state"), bad)
