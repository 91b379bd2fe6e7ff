"""Load a job's data: bundled scikit-learn datasets, ``make_*`` generators, CSV, NPZ.

Everything is local: no dataset is fetched from the network.
"""

from __future__ import annotations

import csv
import hashlib
import os
import stat
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from searchd.errors import DataError
from searchd.jobs.messages import clip
from searchd.jobs.spec import JobSpec

BUNDLED = ("iris", "digits", "wine", "breast_cancer", "diabetes", "linnerud")
#: longest CSV line read (a binary file or a device has lines of any length)
MAX_CSV_LINE = 16 << 20
#: longest path shown in an error message
PATH_CHARS = 1000


#: the targets scikit-learn's check_cv stratifies for a classifier (others get KFold)
STRATIFIED = ("binary", "multiclass")


@dataclass(frozen=True)
class Dataset:
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray | None
    y_test: np.ndarray | None
    #: sha256 over the training and hold-out arrays: a checkpoint belongs to this data only
    digest: str


@dataclass(frozen=True)
class DataPlaces:
    """Where ``csv:``/``npz:`` files may be read from: the job's jobs folder (``base_dir``)
    and the daemon's ``data_dirs``, never the state folder (not even inside those)."""

    data_dirs: tuple[Path, ...] = ()
    state_dir: Path | None = None


def load_dataset(job: JobSpec, classification: bool, data_dirs: Sequence[Path] = (),
                 state_dir: Path | None = None) -> Dataset:
    """The job's data, split into training and hold-out sets.

    ``data_dirs`` (the daemon's setting) and ``state_dir`` decide which files a
    ``csv:``/``npz:`` source may name, besides those in the job's own folder.
    """
    X, y = load_xy(job, DataPlaces(tuple(data_dirs), state_dir))
    kind = _check_labels(job, y) if classification else None
    X_test = y_test = None
    if job.data.test_size is not None:
        from sklearn.model_selection import train_test_split
        try:
            X, X_test, y, y_test = train_test_split(
                X, y, test_size=job.data.test_size, random_state=job.data.seed,
                stratify=y if kind in STRATIFIED else None)
        except ValueError as e:
            raise DataError(f"{job.path}: data.test_size: {e}") from None
        if len(X) < job.search.folds:  # load_xy checked all rows; the folds see fewer
            raise DataError(f"{job.path}: data.test_size: {len(X)} training samples are fewer "
                            f"than the {job.search.folds} folds")
    if kind in STRATIFIED:  # the splits will be stratified
        _, counts = np.unique(y, return_counts=True)
        if np.all(counts < job.search.folds):  # StratifiedKFold refuses to split then
            raise DataError(f"{job.path}: data.source: every class has fewer training samples "
                            f"(at most {counts.max()}) than the {job.search.folds} folds")
    h = hashlib.sha256()
    for a in (X, y, X_test, y_test):
        if a is not None:
            h.update(np.ascontiguousarray(a).tobytes())
            h.update(str(a.shape).encode())
    return Dataset(X, y, X_test, y_test, h.hexdigest())


def _check_labels(job: JobSpec, y: np.ndarray) -> str:
    """Classifiers need class labels: on continuous y every fit fails, and the stratified
    splits refuse it before the first one. Returns the kind of target."""
    from sklearn.utils.multiclass import type_of_target
    try:
        kind = type_of_target(y)
    except ValueError as e:  # NaN or inf among the labels, ...
        raise DataError(f"{job.path}: data.source: y: {clip(str(e), 300)}") from None
    if kind.startswith("continuous"):
        raise DataError(f"{job.path}: data.source: y holds continuous values, but "
                        f"models.{job.models[0].name} is a classifier (use a regressor, or "
                        "class labels)")
    return str(kind)


def load_xy(job: JobSpec, places: DataPlaces = DataPlaces()) -> tuple[np.ndarray, np.ndarray]:
    kind, _, rest = job.data.source.partition(":")
    where = f"{job.path}: data.source"
    if kind == "sklearn":
        X, y = _sklearn(rest, dict(job.data.params), where)
    elif kind == "csv":
        assert job.data.target is not None  # the spec insists on it
        X, y = _csv(_path(job, rest, where), job.data.target, where, _check(job, places))
    else:
        X, y = _npz(_path(job, rest, where), where, _check(job, places))
    # make_* generators may return sparse matrices, npz files anything: the fits need arrays
    if X.ndim != 2 or y.ndim not in (1, 2) or X.dtype == object or y.dtype == object:
        raise DataError(f"{where}: X must be a 2-D and y a 1-D or 2-D array of values, got "
                        f"shapes {X.shape} and {y.shape} ({X.dtype}, {y.dtype})")
    if len(X) != len(y):
        raise DataError(f"{where}: X has {len(X)} rows but y has {len(y)}")
    if len(X) < job.search.folds:
        raise DataError(f"{where}: {len(X)} samples are fewer than the {job.search.folds} folds")
    return X, y


def _path(job: JobSpec, rest: str, where: str) -> Path:
    try:
        p = Path(rest).expanduser()
    except RuntimeError:  # ~user of no such user
        raise DataError(f"{where}: {clip(rest, PATH_CHARS)}: no such home folder") from None
    return p if p.is_absolute() else job.data.base_dir / p


#: checks a path (as resolved) against the folders data may come from; raises DataError
Check = Callable[[Path, str, str], None]


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _check(job: JobSpec, places: DataPlaces) -> Check:
    """The check of one job: its jobs folder and ``data_dirs`` allowed, the state folder not.

    Paths are compared once every symbolic link and ``..`` is resolved, so neither a
    link in the jobs folder nor ``../state/...`` reaches a file outside. The message
    says which folders are allowed and nothing about the file (not even whether it exists).
    """
    allowed = [os.path.realpath(d) for d in (job.data.base_dir, *places.data_dirs)]
    state = None if places.state_dir is None else os.path.realpath(places.state_dir)

    def check(real: Path, shown: str, where: str) -> None:
        r = str(real)
        if state is not None and _under(r, state):
            raise DataError(f"{where}: {shown}: is in the state folder; searchd never reads "
                            "data from there")
        if not any(_under(r, a) for a in allowed):
            raise DataError(f"{where}: {shown}: data files are read only from the job's "
                            f"folder ({clip(str(job.data.base_dir), PATH_CHARS)}) and the "
                            "daemon's data_dirs (after resolving links and '..')")
    return check


def _open(path: Path, where: str, check: Check) -> int:
    """A file descriptor on the regular file ``path``; anything else is a DataError.

    The path must resolve into an allowed folder (``check``), before it is opened (an
    open alone can have effects, on a device) and again after, on the file actually
    opened (``/proc/self/fd``), so that a link swapped in between gains nothing.
    A FIFO would block the worker for ever and a device (``/dev/zero``) never ends, so
    both are refused by looking at the opened file (``O_NONBLOCK`` keeps the open
    itself from blocking).
    """
    shown = clip(str(path), PATH_CHARS)
    try:
        real = Path(os.path.realpath(path))
        check(real, shown, where)
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as e:
        raise DataError(f"{where}: {shown}: {e.strerror or e}") from None
    except ValueError:  # an embedded NUL
        raise DataError(f"{where}: {shown}: not a usable path") from None
    try:
        opened = Path(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:  # no /proc: the check before the open stands
        opened = real
    try:
        check(opened, shown, where)
    except DataError:
        os.close(fd)
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        what = "Is a directory" if stat.S_ISDIR(st.st_mode) else \
            "not a regular file (a FIFO, device or socket)"
        raise DataError(f"{where}: {shown}: {what}")
    return fd


def _sklearn(name: str, params: dict[str, Any], where: str) -> tuple[np.ndarray, np.ndarray]:
    import sklearn.datasets as ds
    if name in BUNDLED:
        if params:
            raise DataError(f"{where}: sklearn:{name} takes no data.params")
        X, y = getattr(ds, f"load_{name}")(return_X_y=True)
        return X, y
    if name.startswith("make_") and name.isidentifier() and hasattr(ds, name):
        try:
            out = getattr(ds, name)(**params)
        except (TypeError, ValueError, OverflowError) as e:
            raise DataError(f"{where}: sklearn:{name}: {clip(str(e), 400)}") from None
        except MemoryError:
            raise DataError(f"{where}: sklearn:{name}: the data would not fit in memory "
                            f"({clip(repr(params), 400)})") from None
        if not isinstance(out, tuple) or len(out) < 2:
            raise DataError(f"{where}: sklearn:{name} does not return (X, y)")
        return np.asarray(out[0]), np.asarray(out[1])
    raise DataError(f"{where}: unknown dataset sklearn:{clip(name)} (bundled: "
                    f"{', '.join(BUNDLED)}; or a sklearn.datasets make_* generator)")


def _lines(f: Any, path: str, where: str) -> Iterator[str]:
    """The file's lines, refusing one longer than MAX_CSV_LINE (a binary file has none)."""
    while line := f.readline(MAX_CSV_LINE):
        if len(line) == MAX_CSV_LINE and not line.endswith("\n"):
            raise DataError(f"{where}: {path}: a line is longer than {MAX_CSV_LINE:,} "
                            "characters; not a CSV file?")
        yield line


def _csv(path: Path, target: str, where: str, check: Check) -> tuple[np.ndarray, np.ndarray]:
    shown = clip(str(path), PATH_CHARS)
    with open(_open(path, where, check), newline="", encoding="utf-8-sig") as f:
        try:
            rows = list(csv.reader(_lines(f, shown, where)))
        except UnicodeDecodeError as e:
            raise DataError(f"{where}: {shown}: not UTF-8 text (byte {e.start}); "
                            "not a CSV file?") from None
        except csv.Error as e:  # NUL bytes, a field past csv.field_size_limit()
            raise DataError(f"{where}: {shown}: not a CSV file: {e}") from None
        except OSError as e:
            raise DataError(f"{where}: {shown}: {e.strerror or e}") from None
        except MemoryError:
            raise DataError(f"{where}: {shown}: too large for memory") from None
    if not rows:
        raise DataError(f"{where}: {shown} is empty")
    # Blank lines (a trailing newline too many) are no samples.
    header, body = rows[0], [r for r in rows[1:] if r]
    # Messages about the content say where (row, column number), never what: the
    # file may be one the job's author cannot read.
    for n, r in enumerate(rows[1:], start=2):
        if r and len(r) != len(header):
            raise DataError(f"{where}: {shown}: row {n} has {len(r)} fields, the header "
                            f"{len(header)}")
    if target not in header:
        raise DataError(f"{where}: {shown}: no column {clip(repr(target))} in its header "
                        f"({len(header)} columns)")
    t = header.index(target)
    try:
        X = np.array([[float(v) for i, v in enumerate(r) if i != t] for r in body])
    except ValueError:
        n, col = next((n, i + 1) for n, r in enumerate(body, start=2) for i, v in enumerate(r)
                      if i != t and not _is_number(v))
        raise DataError(f"{where}: {shown}: feature columns must be numeric; row {n}, "
                        f"column {col} is not a number") from None
    y_raw = [r[t] for r in body]
    try:
        y: np.ndarray = np.array([float(v) for v in y_raw])
        if np.all(y == np.round(y)):
            y = y.astype(np.int64)
    except ValueError:
        y = np.array(y_raw)
    return X, y


def _is_number(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


def _npz(path: Path, where: str, check: Check) -> tuple[np.ndarray, np.ndarray]:
    shown = clip(str(path), PATH_CHARS)
    with open(_open(path, where, check), "rb") as fh:
        try:
            loaded = np.load(fh, allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):  # a .npy file: one bare array
                raise DataError(f"{where}: {shown} is not an .npz archive of arrays X and y")
            with loaded as f:
                if "X" not in f or "y" not in f:
                    missing = " and ".join(k for k in ("X", "y") if k not in f)
                    raise DataError(f"{where}: {shown} must hold arrays named X and y "
                                    f"(it has no {missing})")
                X, y = f["X"], f["y"]
        except OSError as e:
            raise DataError(f"{where}: {shown}: {e.strerror or e}") from None
        except ValueError as e:  # e.g. object arrays: refused, they would need pickle
            raise DataError(f"{where}: {shown}: {clip(str(e), 400)}") from None
        except (EOFError, zipfile.BadZipFile, zlib.error) as e:  # empty, truncated, corrupt
            raise DataError(f"{where}: {shown}: not a readable .npz file: "
                            f"{clip(str(e) or type(e).__name__)}") from None
        except MemoryError:
            raise DataError(f"{where}: {shown}: too large for memory") from None
    if X.ndim != 2 or y.ndim not in (1, 2):
        raise DataError(f"{where}: {shown}: X must be 2-D and y 1-D or 2-D, got shapes "
                        f"{X.shape} and {y.shape}")
    return X, y
