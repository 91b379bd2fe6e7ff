"""The notebook API: :func:`submit` a job (with its data), read its :func:`status`, and
:func:`wait` for it; ``searchd.load_results(...).to_frame()`` reads what it found.

``submit`` is the CLI's ``submit`` (validated first, written atomically into the jobs
folder, ``searchd.cli.commands.submit_job``), from a dict, a TOML text or a job file, with
``X``/``y`` written beside the job: a DataFrame as Parquet when pyarrow is installed,
arrays as ``.npz``. The folders are found as the CLI finds them (flags, then
``$SEARCHD_STATE``/``$SEARCHD_JOBS``, a config file, the user service's config).
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from searchd.errors import JobSpecError, NotFoundError, SearchdError

#: states a job stays in until someone acts: :func:`wait` returns on them
FINAL = ("done", "failed", "invalid", "cancelled")
#: a job's name when none is given and none can be taken from a file
DEFAULT_PREFIX = "job"


def _settings(state_dir: Any, jobs_dir: Any, config: Any) -> Any:
    from searchd.settings import resolve_settings

    return resolve_settings(config, {"state_dir": state_dir, "jobs_dir": jobs_dir})


def submit(job: dict[str, Any] | str | Path, X: Any = None, y: Any = None, *,
           jobs_dir: str | Path | None = None, state_dir: str | Path | None = None,
           name: str | None = None, config: str | Path | None = None) -> str:
    """Validate ``job`` and put it in the jobs folder; returns the job's id.

    ``job`` is a dict (as the job file's tables), a TOML text, or the path of a job
    file. With ``X`` and ``y`` (numpy arrays, or a pandas DataFrame and Series) the data
    is written next to the job and ``[data]`` points at it (``source``, ``target``; its
    other keys — ``test_size``, ``seed``, ``features``, ... — stay); the job is then
    written as JSON. Nothing is left behind when the job is refused.
    """
    from searchd.cli.commands import submit_job
    from searchd.jobs.ids import job_id_problem
    from searchd.jobs.reading import parse_bytes, read_job_bytes

    settings = _settings(state_dir, jobs_dir, config)
    raw, suffix, doc = _job_text(job)
    if isinstance(job, Path) or (isinstance(job, str) and _is_path(job)):
        path = Path(job)
        raw, _ = read_job_bytes(path)
        suffix, name = path.suffix, name or path.stem
    if X is not None or y is not None:
        if X is None or y is None:
            raise SearchdError("submit: give both X and y, or neither")
        if doc is None:
            doc = parse_bytes(raw, Path(f"job{suffix}"))
        doc = copy.deepcopy(doc)
        data_bytes, data_suffix, data_keys = _data_file(X, y)
        digest = hashlib.sha256(data_bytes).hexdigest()[:12]
    name = name or f"{DEFAULT_PREFIX}-{hashlib.sha256(raw).hexdigest()[:10]}"
    problem = job_id_problem(name)
    if problem:
        raise JobSpecError(f"submit: name {name!r}: {problem}")
    jobs = settings.jobs_dir
    if not jobs.is_dir():
        raise NotFoundError(f"{jobs}: jobs directory not found")
    written: Path | None = None
    if X is not None:
        assert doc is not None
        data_name = f"{name}-data-{digest}{data_suffix}"  # new data: a new file, a new job
        given = doc.get("data")
        table = {k: v for k, v in (given if isinstance(given, dict) else {}).items()
                 if k not in ("source", "target", "params")}
        if data_suffix == ".npz":  # no columns to choose from
            table = {k: v for k, v in table.items() if k not in ("features", "drop")}
        doc["data"] = {**table, "source": f"{data_suffix[1:]}:{data_name}", **data_keys}
        raw, suffix = (json.dumps(doc, indent=2) + "\n").encode(), ".json"
        written = jobs / data_name
        if not written.exists():
            _write(written, data_bytes)
        else:
            written = None  # the same bytes already there (the name is their digest)
    file = jobs / f"{name}{suffix}"
    if file.exists() and file.read_bytes() != raw:
        _drop(written)
        raise SearchdError(f"{file}: a different job {name!r} is already submitted; "
                           "give another name, or remove it first")
    try:
        spec, _ = submit_job(raw, file, settings)
    except BaseException:
        _drop(written)
        raise
    return spec.id


def _is_path(text: str) -> bool:
    return "\n" not in text and text.endswith((".toml", ".json"))


def _job_text(job: Any) -> tuple[bytes, str, dict[str, Any] | None]:
    """The job's bytes, its suffix and (for a dict or TOML text) its document."""
    if isinstance(job, dict):
        return (json.dumps(job, indent=2) + "\n").encode(), ".json", job
    if isinstance(job, Path) or (isinstance(job, str) and _is_path(job)):
        return b"", Path(job).suffix, None
    if isinstance(job, str):
        try:
            doc = tomllib.loads(job)
        except tomllib.TOMLDecodeError as e:
            raise JobSpecError(f"submit: not valid TOML: {e}") from None
        return job.encode(), ".toml", doc
    raise JobSpecError(f"submit: a job is a dict, a TOML text or a path, got "
                       f"{type(job).__name__}")


def _data_file(X: Any, y: Any) -> tuple[bytes, str, dict[str, Any]]:
    """The bytes of the data file, its suffix and the ``[data]`` keys that read it."""
    import numpy as np

    frame = hasattr(X, "columns") and hasattr(X, "iloc")
    if frame:
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            if not all(dt.kind in "biuf" for dt in X.dtypes):
                raise SearchdError("submit: a DataFrame with non-numeric columns is written "
                                   "as Parquet, which needs pyarrow (pip install "
                                   "'searchd[parquet]')") from None
        else:
            import pandas as pd

            df = X.copy()
            df.columns = [str(c) for c in df.columns]
            target = str(getattr(y, "name", None) or "target")
            while target in df.columns:
                target += "_"
            df[target] = np.asarray(y) if not isinstance(y, pd.Series) else y.to_numpy()
            buf = io.BytesIO()
            df.reset_index(drop=True).to_parquet(buf, index=False)
            return buf.getvalue(), ".parquet", {"target": target}
    buf = io.BytesIO()
    np.savez(buf, X=np.asarray(X), y=np.asarray(y))
    return buf.getvalue(), ".npz", {}


def _write(path: Path, data: bytes) -> None:
    from searchd.state.files import atomic_write

    try:
        atomic_write(path, data, mode=0o666)  # the umask decides, as for the job file
    except OSError as e:
        raise SearchdError(f"{path}: cannot write: {e.strerror or e}") from None


def _drop(path: Path | None) -> None:
    if path is not None:
        path.unlink(missing_ok=True)


def status(job_id: str | None = None, *, state_dir: str | Path | None = None,
           jobs_dir: str | Path | None = None, config: str | Path | None = None) -> Any:
    """``searchd status --json``: a list of every job's status, or the one of ``job_id``
    (a dict with ``id``, ``state``, ``fits_done``, ``fits_total``, ``error``, ``models``...)."""
    from searchd.cli.commands import job_records, status_json

    settings = _settings(state_dir, jobs_dir, config)
    found = [status_json(r) for r in job_records(settings)]
    if job_id is None:
        return found
    for s in found:
        if s["id"] == job_id:
            return s
    raise NotFoundError(f"job {job_id!r}: not in {settings.jobs_dir} nor {settings.state_dir}")


def wait(job_id: str, timeout: float | None = None, *, state_dir: str | Path | None = None,
         jobs_dir: str | Path | None = None, config: str | Path | None = None,
         poll: float = 1.0, progress: bool | None = None,
         sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Block until the job is done, failed, invalid or cancelled; returns its status.

    ``timeout`` (seconds) raises :class:`TimeoutError` when it passes first. With tqdm
    installed a progress bar of the fits is shown (``progress = False``: none).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    bar = None
    try:
        while True:
            s = status(job_id, state_dir=state_dir, jobs_dir=jobs_dir, config=config)
            bar = _progress(bar, s, progress)
            if s["state"] in FINAL:
                return s  # type: ignore[no-any-return]
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id!r}: still {s['state']} after {timeout} s "
                                   f"({s['fits_done']}/{s['fits_total']} fits)")
            left = poll if deadline is None else max(0.0, min(poll, deadline - time.monotonic()))
            sleep(left)
    finally:
        if bar is not None:
            bar.close()


def _progress(bar: Any, s: dict[str, Any], wanted: bool | None) -> Any:
    """A tqdm bar of the fits (tqdm.auto: a widget in a notebook), when tqdm is there."""
    if wanted is False:
        return None
    if bar is None:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return None
        bar = tqdm(total=s["fits_total"] or None, desc=s["id"], unit="fit")
    if s["fits_total"] and bar.total != s["fits_total"]:
        bar.total = s["fits_total"]
    bar.n = s["fits_done"] or 0
    bar.set_postfix_str(s["state"], refresh=False)
    bar.refresh()
    return bar
