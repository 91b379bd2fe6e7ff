"""Daemon settings: defaults < $SEARCHD_STATE/$SEARCHD_JOBS < config file < flags."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import pytest

from searchd.errors import SettingsError
from searchd.settings import Settings, load_config, resolve_settings, settings_from


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("SEARCHD_STATE", "SEARCHD_JOBS", "SEARCHD_CONFIG"):
        monkeypatch.delenv(var, raising=False)


def config(tmp_path: Path, text: str, name: str = "searchd.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def settings_error(cfg: str | Path | None, flags: dict[str, object] | None = None) -> str:
    with pytest.raises(SettingsError) as e:
        resolve_settings(cfg, flags or {})
    msg = str(e.value)
    assert "\n" not in msg
    return msg


# --- precedence ---------------------------------------------------------------------------------

def test_defaults() -> None:
    s = resolve_settings(None, {})
    assert s == Settings()
    assert s.state_dir == Path("state") and s.jobs_dir == Path("jobs")
    assert s.max_candidates == 100_000 and s.max_load == 0.25 and s.allow_modules == ()


def test_environment_over_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEARCHD_STATE", "/srv/state")
    monkeypatch.setenv("SEARCHD_JOBS", "/srv/jobs")
    s = resolve_settings(None, {})
    assert s.state_dir == Path("/srv/state") and s.jobs_dir == Path("/srv/jobs")


def test_empty_environment_variable_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEARCHD_STATE", "")
    assert resolve_settings(None, {}).state_dir == Path("state")


def test_config_over_environment_and_flags_over_config(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEARCHD_STATE", "/from/env")
    monkeypatch.setenv("SEARCHD_JOBS", "/jobs/from/env")
    cfg = config(tmp_path, 'state_dir = "/from/config"\nmax_load = 0.5\nn_jobs = 2\n')
    s = resolve_settings(cfg, {})
    assert s.state_dir == Path("/from/config")
    assert s.jobs_dir == Path("/jobs/from/env")  # not in the file: the environment stays
    assert (s.max_load, s.n_jobs) == (0.5, 2)
    s = resolve_settings(cfg, {"state_dir": "/from/flag", "max_load": 0.75, "n_jobs": None})
    assert s.state_dir == Path("/from/flag")
    assert s.max_load == 0.75
    assert s.n_jobs == 2  # a flag left at None does not override the file


def test_config_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config(tmp_path, "max_candidates = 50\n")
    monkeypatch.setenv("SEARCHD_CONFIG", str(cfg))
    assert resolve_settings(None, {}).max_candidates == 50
    other = config(tmp_path, "max_candidates = 60\n", "other.toml")
    assert resolve_settings(other, {}).max_candidates == 60  # --config wins


def test_searchd_table_and_top_level_keys(tmp_path: Path) -> None:
    cfg = config(tmp_path, 'log_level = "debug"\n[searchd]\nallow_modules = ["mymod"]\n'
                           "ignore_load = true\ncheckpoint_interval = 3\n")
    s = resolve_settings(cfg, {})
    assert s.log_level == "DEBUG"
    assert s.allow_modules == ("mymod",)
    assert s.ignore_load is True
    assert s.checkpoint_interval == 3.0 and isinstance(s.checkpoint_interval, float)
    assert load_config(cfg) == {"log_level": "debug", "allow_modules": ["mymod"],
                                "ignore_load": True, "checkpoint_interval": 3}


def test_all_settings_can_be_set(tmp_path: Path) -> None:
    cfg = config(tmp_path, """
state_dir = "s"
jobs_dir = "j"
n_jobs = 3
checkpoint_interval = 1.5
max_candidates = 7
allow_modules = ["a", "b"]
log_level = "WARNING"
scan_interval = 0.5
max_worker_deaths = 5
restart_backoff = 2
max_load = 1
sample_interval = 0.25
pause_after = 4
resume_after = 30
min_free_memory = 0
max_suspend = 0
run_window = "* 22-23,0-6 * * *"
ignore_load = true
dask_scheduler = "tcp://host:8786"
data_dirs = ["/data/a", "b"]
on_battery = "ignore"
max_temperature = 85
exclusive_apps = ["zoom", "steam"]
pause_while_user_active = "5m"
max_fits = 9
max_data_bytes = 1000
max_job_seconds = 60
max_priority = 5
max_memory = 2048
max_fit_seconds = 30
preprocess_cache_mb = 64
on_job_end = ["notify-send", "searchd"]
on_job_end_timeout = 5
publish = true
publish_dir = "/srv/results"
report = false
""")
    s = resolve_settings(cfg, {})
    assert s == Settings(
        state_dir=Path("s"), jobs_dir=Path("j"), n_jobs=3, checkpoint_interval=1.5,
        max_candidates=7, allow_modules=("a", "b"), log_level="WARNING", scan_interval=0.5,
        max_worker_deaths=5, restart_backoff=2.0, max_load=1.0, sample_interval=0.25,
        pause_after=4, resume_after=30.0, min_free_memory=0.0, max_suspend=0.0,
        run_window="* 22-23,0-6 * * *", ignore_load=True, dask_scheduler="tcp://host:8786",
        data_dirs=(Path("/data/a"), Path("b")), on_battery="ignore", max_temperature=85.0,
        exclusive_apps=("zoom", "steam"), pause_while_user_active=300.0, max_fits=9,
        max_data_bytes=1000, max_job_seconds=60.0, max_priority=5, max_memory=2048,
        max_fit_seconds=30.0, preprocess_cache_mb=64.0, on_job_end=("notify-send", "searchd"),
        on_job_end_timeout=5.0,
        publish=True, publish_dir=Path("/srv/results"), report=False)
    assert {f.name for f in dataclasses.fields(Settings)} == set(load_config(cfg))


def test_settings_are_frozen_and_pickle() -> None:
    s = settings_from({"state_dir": "/x", "allow_modules": ["m"]}, "test")
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.max_load = 0.5  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(s)) == s
    assert s.job_dir("digits") == Path("/x/digits")


def test_empty_run_window_means_always() -> None:
    assert settings_from({"run_window": ""}, "test").run_window is None


# --- errors -------------------------------------------------------------------------------------

def test_unknown_key_in_config(tmp_path: Path) -> None:
    cfg = config(tmp_path, "max_lod = 0.5\n")
    assert settings_error(cfg) == f"{cfg}: unknown setting 'max_lod'"


def test_unknown_key_in_searchd_table(tmp_path: Path) -> None:
    cfg = config(tmp_path, "[searchd]\nstate = 'x'\n")
    assert settings_error(cfg) == f"{cfg}: unknown setting 'state'"


def test_unknown_table_in_config(tmp_path: Path) -> None:
    cfg = config(tmp_path, "[idle]\nmax_load = 0.5\n")
    assert settings_error(cfg) == f"{cfg}: unknown setting 'idle'"


def test_unknown_flag() -> None:
    assert settings_error(None, {"colour": "red"}) == "command line: unknown setting 'colour'"


@pytest.mark.parametrize("line, message", [
    ('max_load = "high"', "max_load: expected a number, got 'high'"),
    ("max_load = true", "max_load: expected a number, got True"),
    ("n_jobs = 1.5", "n_jobs: expected an integer, got 1.5"),
    ("n_jobs = true", "n_jobs: expected an integer, got True"),
    ('max_candidates = "10"', "max_candidates: expected an integer, got '10'"),
    ('ignore_load = "yes"', "ignore_load: expected true or false, got 'yes'"),
    ("ignore_load = 1", "ignore_load: expected true or false, got 1"),
    ('allow_modules = "mymod"', "allow_modules: expected a list of module names, got 'mymod'"),
    ("allow_modules = [1]", "allow_modules: expected a list of module names, got [1]"),
    ('log_level = "LOUD"', "log_level: expected DEBUG, INFO, WARNING or ERROR, got 'LOUD'"),
    ("log_level = 10", "log_level: expected DEBUG, INFO, WARNING or ERROR, got 10"),
    ("state_dir = 5", "state_dir: expected a path, got 5"),
    ("run_window = 5", "run_window: expected a string, got 5"),
    ("resume_after = -1", "resume_after: must not be negative, got -1"),
    ("checkpoint_interval = nan", "checkpoint_interval: expected a number, got nan"),
    ("scan_interval = [1]", "scan_interval: expected a number, got [1]"),
    ('on_job_end = "notify-send searchd"', "on_job_end: expected a list: the program and its "
     'arguments (no shell), e.g. ["notify-send", "searchd"], got \'notify-send searchd\''),
    ('on_job_end = ["", "x"]', "on_job_end: expected a list: the program and its "
     'arguments (no shell), e.g. ["notify-send", "searchd"], got [\'\', \'x\']'),
])
def test_bad_value_type(tmp_path: Path, line: str, message: str) -> None:
    cfg = config(tmp_path, line + "\n")
    assert settings_error(cfg) == f"{cfg}: {message}"


@pytest.mark.parametrize("value, ok", [
    (0.0, False), (-0.1, False), (1.5, False), (1.0, True), (0.01, True),
])
def test_max_load_range(tmp_path: Path, value: float, ok: bool) -> None:
    cfg = config(tmp_path, f"max_load = {value}\n")
    if ok:
        assert resolve_settings(cfg, {}).max_load == value
    elif value < 0:
        assert settings_error(cfg) == f"{cfg}: max_load: must not be negative, got {value}"
    else:
        assert settings_error(cfg) == \
            f"{cfg}: max_load: expected a fraction in (0, 1], got {value}"


def test_max_load_flag_out_of_range() -> None:
    assert settings_error(None, {"max_load": 25.0}) == \
        "command line: max_load: expected a fraction in (0, 1], got 25.0"


@pytest.mark.parametrize("values, message", [
    ({"n_jobs": 0}, "n_jobs: 0 has no meaning (use -1 for all cores)"),
    ({"min_free_memory": 1.0}, "min_free_memory: expected a fraction in [0, 1), got 1.0"),
    ({"pause_after": 0}, "pause_after: expected at least 1, got 0"),
    ({"max_candidates": 0}, "max_candidates: expected at least 1, got 0"),
    ({"sample_interval": 0}, "sample_interval: must be positive"),
    ({"on_job_end_timeout": 0}, "on_job_end_timeout: must be positive"),
])
def test_out_of_range(values: dict[str, object], message: str) -> None:
    with pytest.raises(SettingsError) as e:
        settings_from(values, "flags")
    assert str(e.value) == f"flags: {message}"


def test_missing_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    assert settings_error(missing) == f"{missing}: config file not found"


def test_config_from_environment_missing(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEARCHD_CONFIG", str(tmp_path / "gone.toml"))
    assert settings_error(None) == f"{tmp_path / 'gone.toml'}: config file not found"


def test_invalid_toml(tmp_path: Path) -> None:
    cfg = config(tmp_path, "max_load = \n")
    assert settings_error(cfg).startswith(f"{cfg}: not valid TOML: ")


def test_config_is_a_directory(tmp_path: Path) -> None:
    assert settings_error(tmp_path) == f"{tmp_path}: cannot read: Is a directory"


def test_config_not_utf8(tmp_path: Path) -> None:
    cfg = tmp_path / "bin.toml"
    cfg.write_bytes(b"\xff\xfe = 1\n")
    assert settings_error(cfg) == f"{cfg}: not UTF-8 text"


def test_searchd_must_be_a_table(tmp_path: Path) -> None:
    cfg = config(tmp_path, "searchd = 5\n")
    assert settings_error(cfg) == f"{cfg}: [searchd] must be a table"


def test_settings_error_exit_code_and_pickle() -> None:
    with pytest.raises(SettingsError) as e:
        settings_from({"nope": 1}, "x")
    assert e.value.exit_code == 2
    again = pickle.loads(pickle.dumps(e.value))
    assert type(again) is SettingsError and str(again) == "x: unknown setting 'nope'"
