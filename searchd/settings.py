"""Daemon settings: defaults, the TOML config file, environment and flags.

Precedence, lowest first: built-in defaults, the config file (``--config``,
``$SEARCHD_CONFIG``), then command-line flags. Unknown keys are errors.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config_paths import find_user_config
from .errors import SettingsError


@dataclass(frozen=True)
class Settings:
    """Everything the daemon and its workers can be configured with."""

    state_dir: Path = Path("state")
    jobs_dir: Path = Path("jobs")
    #: worker processes per job (joblib's n_jobs); a job's own n_jobs may ask for fewer
    n_jobs: int = -1
    #: seconds between two checkpoint flushes while results arrive
    checkpoint_interval: float = 5.0
    #: a job whose grids expand past this many candidates (per job) is rejected
    max_candidates: int = 100_000
    #: a job asking for more fits than this (candidates × folds) is rejected
    max_fits: int = 1_000_000
    #: the most bytes a job's data may take: a csv: file on disk, and the arrays once
    #: loaded (X, y and the CV splits' row indices), checked before anything is read
    max_data_bytes: int = 100 * 2**20
    #: a job that has run this long (paused time excluded) yields the slot to a queued
    #: job: it is stopped warmly and requeued behind the others (0 = never)
    max_job_seconds: float = 0.0
    #: job-file priorities are clipped to [-max_priority, max_priority]
    max_priority: int = 100
    #: extra top-level modules whose estimators job files may name (besides scikit-learn)
    allow_modules: tuple[str, ...] = ()
    #: folders ``csv:``/``npz:`` data may be read from, besides the jobs folder (never
    #: the state folder, even inside one of these)
    data_dirs: tuple[Path, ...] = ()
    log_level: str = "INFO"
    #: seconds between two scans of the jobs directory
    scan_interval: float = 1.0
    #: worker deaths in a row before a job is marked failed
    max_worker_deaths: int = 3
    #: base of the exponential backoff between worker restarts, seconds
    restart_backoff: float = 1.0
    #: MiB of address space a job may take, shared evenly by its worker and pool processes
    #: (each gets its share as RLIMIT_AS, so a runaway allocation fails as MemoryError and
    #: is recorded as that fit's error); 0 = no cap
    max_memory: int = 0
    #: seconds one fit (and its scoring) may run; one that runs longer is stopped and
    #: recorded as failed, and the search goes on; 0 = no limit
    max_fit_seconds: float = 0.0
    #: MiB of preprocessed training data each of a job's processes keeps, so that the
    #: candidates of a fold that share their preprocessing steps' parameters fit them once
    #: (deterministic steps only; 0 = refit them for every candidate)
    preprocess_cache_mb: float = 256.0
    # --- idle gate ---
    #: pause when other load exceeds this fraction of all CPUs
    max_load: float = 0.25
    #: seconds between two load samples
    sample_interval: float = 1.0
    #: busy samples in a row before pausing (an integer), or a grace period: seconds of
    #: busy samples, written as a duration ("10s", "1m")
    pause_after: int | str = 2
    #: seconds of quiet before resuming
    resume_after: float = 20.0
    #: pause while available memory is below this fraction of RAM
    min_free_memory: float = 0.10
    #: seconds a worker may stay suspended before it is stopped to free memory (0 = never)
    max_suspend: float = 600.0
    #: crontab expression of when work may run (None = always)
    run_window: str | None = None
    #: never pause for load (dedicated machines, CI)
    ignore_load: bool = False
    # --- workstation etiquette (these apply with ignore_load too) ---
    #: "pause" while the machine runs on battery, or "ignore"
    on_battery: str = "pause"
    #: pause while a CPU temperature sensor reads above this many °C (0 = off)
    max_temperature: float = 0.0
    #: pause while a process with one of these names runs (e.g. "zoom", "steam")
    exclusive_apps: tuple[str, ...] = ()
    #: pause while the keyboard or mouse was used within this many seconds (0 = off)
    pause_while_user_active: float = 0.0
    #: Dask scheduler address, e.g. tcp://host:8786 (None = local joblib)
    dask_scheduler: str | None = None
    # --- notifications ---
    #: a command (program and arguments, no shell) run when a job becomes done, failed or
    #: invalid; the job's id, state and best score are in its SEARCHD_* environment
    on_job_end: tuple[str, ...] = ()
    #: seconds on_job_end may run before it is killed (with its process group)
    on_job_end_timeout: float = 30.0
    #: keep ``state/<job>/report.html`` current (the worker draws its plots with
    #: matplotlib); ``searchd report`` draws a page on demand either way
    report: bool = True
    # --- results for the group ---
    #: publish each job's results (summary, cv_results, report, skops models; never
    #: pickles, keys or checkpoints) readable by the daemon's group (searchd.state.published)
    publish: bool = False
    #: where they go, one folder per job (None: ``<state_dir>/published``)
    publish_dir: Path | None = None

    def job_dir(self, job_id: str) -> Path:
        return self.state_dir / job_id

    def publish_root(self) -> Path:
        """The folder of the published results (``publish_dir``, or ``state/published``)."""
        return self.publish_dir if self.publish_dir is not None else self.state_dir / "published"


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}


_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


def parse_seconds(text: str) -> float | None:
    """'90s', '5m', '1h30m', '1d' → seconds; None when ``text`` is not such a duration."""
    compact = re.sub(r"\s", "", text.lower())
    parts = _DURATION.findall(compact)
    if not parts or "".join(f"{n}{u}" for n, u in parts) != compact:
        return None
    return sum(float(n) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[u] for n, u in parts)


def _coerce_etiquette(key: str, value: Any, source: str) -> Any:
    """The workstation-etiquette settings and ``pause_after``, which take durations."""
    if key == "pause_after":
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)  # a count from the command line
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and parse_seconds(value) is not None:
            return value.strip()
        raise SettingsError(f"{source}: {key}: expected a number of samples or a duration "
                            f"like \"10s\", got {value!r}")
    if key == "on_battery":
        if value not in ("pause", "ignore"):
            raise SettingsError(f"{source}: {key}: expected \"pause\" or \"ignore\", "
                                f"got {value!r}")
        return value
    if key == "exclusive_apps":
        if not isinstance(value, (list, tuple)) or not all(
                isinstance(v, str) and v and "/" not in v for v in value):
            raise SettingsError(f"{source}: {key}: expected a list of program names, "
                                f"got {value!r}")
        return tuple(value)
    # pause_while_user_active: seconds, or a duration string ("5m")
    seconds = parse_seconds(value) if isinstance(value, str) else value
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or \
            math.isnan(seconds) or seconds < 0:
        raise SettingsError(f"{source}: {key}: expected a duration like \"5m\" or 0 (off), "
                            f"got {value!r}")
    return float(seconds)


_ETIQUETTE = ("pause_after", "on_battery", "exclusive_apps", "pause_while_user_active")


def _coerce(key: str, value: Any, source: str) -> Any:
    """Check one setting's type and convert it; errors name the key and the source."""
    default = _FIELDS[key].default
    if key in _ETIQUETTE:
        return _coerce_etiquette(key, value, source)
    if key == "publish_dir":
        if value is not None and not isinstance(value, (str, Path)):
            raise SettingsError(f"{source}: {key}: expected a path, got {value!r}")
        return Path(value) if value else None  # "": the default, under state_dir
    if key in ("state_dir", "jobs_dir"):
        if not isinstance(value, (str, Path)):
            raise SettingsError(f"{source}: {key}: expected a path, got {value!r}")
        return Path(value)
    if key == "allow_modules":
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise SettingsError(f"{source}: {key}: expected a list of module names, got {value!r}")
        return tuple(value)
    if key == "data_dirs":
        if not isinstance(value, (list, tuple)) or not all(
                isinstance(v, (str, Path)) and str(v) for v in value):
            raise SettingsError(f"{source}: {key}: expected a list of folders, got {value!r}")
        return tuple(Path(v) for v in value)
    if key == "on_job_end":
        if not isinstance(value, (list, tuple)) or not all(
                isinstance(v, str) and "\0" not in v for v in value) or (value and not value[0]):
            raise SettingsError(f"{source}: {key}: expected a list: the program and its "
                                f"arguments (no shell), e.g. [\"notify-send\", \"searchd\"], "
                                f"got {value!r}")
        return tuple(value)
    if key in ("run_window", "dask_scheduler"):
        if value is not None and not isinstance(value, str):
            raise SettingsError(f"{source}: {key}: expected a string, got {value!r}")
        return value or None
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise SettingsError(f"{source}: {key}: expected true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise SettingsError(f"{source}: {key}: expected an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SettingsError(f"{source}: {key}: expected a number, got {value!r}")
        if math.isnan(value):  # NaN compares false to everything: a pause that never ends
            raise SettingsError(f"{source}: {key}: expected a number, got nan")
        if value < 0:
            raise SettingsError(f"{source}: {key}: must not be negative, got {value!r}")
        return float(value)
    if key == "log_level":
        if not isinstance(value, str) or value.upper() not in (
            "DEBUG", "INFO", "WARNING", "ERROR"
        ):
            raise SettingsError(f"{source}: {key}: expected DEBUG, INFO, WARNING or ERROR, "
                                f"got {value!r}")
        return value.upper()
    return value


def _check_ranges(s: Settings, source: str) -> None:
    if s.n_jobs == 0:
        raise SettingsError(f"{source}: n_jobs: 0 has no meaning (use -1 for all cores)")
    if not 0 < s.max_load <= 1:
        raise SettingsError(f"{source}: max_load: expected a fraction in (0, 1], got {s.max_load}")
    if not 0 <= s.min_free_memory < 1:
        raise SettingsError(
            f"{source}: min_free_memory: expected a fraction in [0, 1), got {s.min_free_memory}")
    if isinstance(s.pause_after, int) and s.pause_after < 1:
        raise SettingsError(f"{source}: pause_after: expected at least 1, got {s.pause_after}")
    if s.max_temperature and not 30 <= s.max_temperature <= 150:
        raise SettingsError(f"{source}: max_temperature: expected 0 (off) or °C in [30, 150], "
                            f"got {s.max_temperature:g}")
    if s.max_candidates < 1:
        raise SettingsError(f"{source}: max_candidates: expected at least 1, got "
                            f"{s.max_candidates}")
    for name in ("max_fits", "max_data_bytes"):
        if getattr(s, name) < 1:
            raise SettingsError(f"{source}: {name}: expected at least 1, got "
                                f"{getattr(s, name)}")
    if s.max_priority < 0:
        raise SettingsError(f"{source}: max_priority: must not be negative, got "
                            f"{s.max_priority}")
    if s.max_memory < 0:
        raise SettingsError(f"{source}: max_memory: must not be negative, got {s.max_memory}")
    if s.checkpoint_interval <= 0:
        raise SettingsError(f"{source}: checkpoint_interval: must be positive")
    if s.sample_interval <= 0:
        raise SettingsError(f"{source}: sample_interval: must be positive")
    if s.on_job_end_timeout <= 0:
        raise SettingsError(f"{source}: on_job_end_timeout: must be positive")


def settings_from(values: dict[str, Any], source: str, base: Settings | None = None) -> Settings:
    """Apply ``values`` (from a file or flags) over ``base``; unknown keys are errors."""
    changes: dict[str, Any] = {}
    for key, value in values.items():
        if key not in _FIELDS:
            raise SettingsError(f"{source}: unknown setting {key!r}")
        changes[key] = _coerce(key, value, source)
    settings = dataclasses.replace(base or Settings(), **changes)
    _check_ranges(settings, source)
    return settings


def load_config(path: Path) -> dict[str, Any]:
    """Read a daemon config file (TOML) into a flat dict of settings."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise SettingsError(f"{path}: config file not found") from None
    except OSError as e:  # a folder, no permission, ...
        raise SettingsError(f"{path}: cannot read: {e.strerror}") from None
    except UnicodeDecodeError:
        raise SettingsError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise SettingsError(f"{path}: not valid TOML: {e}") from None
    # An optional [searchd] table keeps the file readable; keys may also sit at top level.
    table = data.pop("searchd", {})
    if not isinstance(table, dict):
        raise SettingsError(f"{path}: [searchd] must be a table")
    return {**data, **table}


def resolve_settings(config: str | Path | None, flags: dict[str, Any]) -> Settings:
    """Defaults < environment < config file (``config`` or ``$SEARCHD_CONFIG``) < flags.

    Without either, the user service's ``$XDG_CONFIG_HOME/searchd/searchd.toml`` is read
    when it exists, as defaults *below* the environment: it is found, not asked for.
    """
    env: dict[str, Any] = {}
    if os.environ.get("SEARCHD_STATE"):
        env["state_dir"] = os.environ["SEARCHD_STATE"]
    if os.environ.get("SEARCHD_JOBS"):
        env["jobs_dir"] = os.environ["SEARCHD_JOBS"]
    config = config or os.environ.get("SEARCHD_CONFIG") or None
    found = None if config else find_user_config()
    base = settings_from(load_config(found), str(found)) if found else None
    settings = settings_from(env, "environment", base)
    if config:
        file_values = load_config(Path(config))
        settings = settings_from(file_values, str(config), settings)
    given = {k: v for k, v in flags.items() if v is not None}
    return settings_from(given, "command line", settings)


__all__ = ["Settings", "load_config", "parse_seconds", "resolve_settings", "settings_from"]
