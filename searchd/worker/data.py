"""Load a job's data: bundled scikit-learn datasets, ``make_*`` generators, CSV, Parquet, NPZ.

Everything is local: no dataset is fetched from the network. Data is bounded before it is
read (``max_data_bytes``): a generator's arrays from its parameters, an ``.npz`` member's
from its header, a CSV or Parquet file by its size on disk (a Parquet file's columns by its
footer) and the frame it becomes (:mod:`searchd.worker.tables`). CSV and Parquet give X as
a pandas DataFrame (column names, strings, missing values), the others arrays.
"""

from __future__ import annotations

import hashlib
import math
import os
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from searchd.errors import DataError
from searchd.jobs.limits import (
    GENERATORS,
    JobLimits,
    generator_bytes,
    size,
    split_bytes,
)
from searchd.jobs.messages import clip
from searchd.jobs.spec import JobSpec
from searchd.worker.columns import check_columns
from searchd.worker.datapaths import PATH_CHARS, Check, data_path, open_data, path_check
from searchd.worker.tables import read_table

BUNDLED = ("iris", "digits", "wine", "breast_cancer", "diabetes", "linnerud")
#: the daemon's default ``max_data_bytes``
MAX_DATA_BYTES = JobLimits().max_data_bytes

#: the targets scikit-learn's check_cv stratifies for a classifier (others get KFold)
STRATIFIED = ("binary", "multiclass")


@dataclass(frozen=True)
class Dataset:
    #: an array, or a pandas DataFrame for csv: and parquet: sources
    X_train: Any
    y_train: np.ndarray
    X_test: Any
    y_test: np.ndarray | None
    #: sha256 over the training and hold-out data (a file's: its bytes, the columns kept
    #: and the hold-out's rows): a checkpoint belongs to this data only
    digest: str


@dataclass(frozen=True)
class DataPlaces:
    """Where ``csv:``/``parquet:``/``npz:`` files may be read from: the job's jobs folder
    (``base_dir``) and the daemon's ``data_dirs``, never the state folder (not even inside
    those)."""

    data_dirs: tuple[Path, ...] = ()
    state_dir: Path | None = None
    #: the daemon's ``max_data_bytes``
    max_bytes: int = MAX_DATA_BYTES


def load_dataset(job: JobSpec, classification: bool, data_dirs: Sequence[Path] = (),
                 state_dir: Path | None = None, max_bytes: int = MAX_DATA_BYTES) -> Dataset:
    """The job's data, split into training and hold-out sets.

    ``data_dirs`` (the daemon's setting) and ``state_dir`` decide which files a
    ``csv:``/``parquet:``/``npz:`` source may name, besides those in the job's own folder;
    nothing larger than ``max_bytes`` is read, and the CV splits count against it too.
    """
    X, y, source_digest = _load(job, DataPlaces(tuple(data_dirs), state_dir, max_bytes))
    source, _, rest = job.data.source.partition(":")
    check_columns(job, X, clip(str(data_path(job, rest, "")), PATH_CHARS)
                  if source in ("csv", "parquet") else job.data.source)
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
    _check_splits(job, len(X), sum(nbytes(a) for a in (X, y, X_test, y_test) if a is not None),
                  max_bytes)
    h = hashlib.sha256()
    if source_digest is not None:  # the file's content, and which of its rows are held out
        h.update(source_digest.encode())
        for a in (X, X_test):
            if a is not None:
                h.update(np.asarray(a.index, dtype=np.int64).tobytes())
                h.update(b"|")
    else:
        for a in (X, y, X_test, y_test):
            if a is not None:
                h.update(np.ascontiguousarray(a).tobytes())
                h.update(str(a.shape).encode())
    return Dataset(X, y, X_test, y_test, h.hexdigest())


def nbytes(a: Any) -> int:
    """The bytes an array or a DataFrame holds (a frame's strings included)."""
    if isinstance(a, np.ndarray):
        return a.nbytes
    return int(a.memory_usage(deep=True, index=False).sum())


def _check_splits(job: JobSpec, n_train: int, data: int, max_bytes: int) -> None:
    """The CV splits' row indices are kept with the results: ``cv = 4000`` on 4,000 rows
    is 16 million of them. Refused before they are made."""
    folds = job.search.folds
    need = split_bytes(folds, n_train)
    if data + need > max_bytes:
        raise DataError(f"{job.path}: search.cv: {folds:,} folds of {n_train:,} training "
                        f"samples keep {size(need)} of row indices; with the data "
                        f"({size(data)}) that is more than max_data_bytes ({size(max_bytes)})")


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


def load_xy(job: JobSpec, places: DataPlaces = DataPlaces()) -> tuple[Any, np.ndarray]:
    """X (an array, or a DataFrame for csv: and parquet:) and y of the job's source."""
    X, y, _ = _load(job, places)
    return X, y


def _load(job: JobSpec, places: DataPlaces) -> tuple[Any, np.ndarray, str | None]:
    """X, y and, for a data file read into a frame, the digest of its content."""
    kind, _, rest = job.data.source.partition(":")
    where = f"{job.path}: data.source"
    if kind in ("csv", "parquet"):
        assert job.data.target is not None  # the spec insists on it
        check = path_check(job, places.data_dirs, places.state_dir)
        table = read_table(kind, data_path(job, rest, where), job.data.target,
                           job.data.features, job.data.drop, where, check, places.max_bytes)
        if len(table.X) < job.search.folds:
            raise DataError(f"{where}: {len(table.X)} samples are fewer than the "
                            f"{job.search.folds} folds")
        return table.X, table.y, table.digest
    if kind == "sklearn":
        X, y = _sklearn(rest, dict(job.data.params), where, places.max_bytes)
    else:
        check = path_check(job, places.data_dirs, places.state_dir)
        X, y = _npz(data_path(job, rest, where), where, check, places.max_bytes)
    # make_* generators may return sparse matrices, npz files anything: the fits need arrays
    if X.ndim != 2 or y.ndim not in (1, 2) or X.dtype == object or y.dtype == object:
        raise DataError(f"{where}: X must be a 2-D and y a 1-D or 2-D array of values, got "
                        f"shapes {X.shape} and {y.shape} ({X.dtype}, {y.dtype})")
    if len(X) != len(y):
        raise DataError(f"{where}: X has {len(X)} rows but y has {len(y)}")
    if len(X) < job.search.folds:
        raise DataError(f"{where}: {len(X)} samples are fewer than the {job.search.folds} folds")
    return X, y, None


def _too_large(where: str, what: str, need: int, max_bytes: int) -> DataError:
    return DataError(f"{where}: {what} {size(need)}, more than max_data_bytes "
                     f"({size(max_bytes)})")


def _sklearn(name: str, params: dict[str, Any], where: str,
             max_bytes: int = MAX_DATA_BYTES) -> tuple[np.ndarray, np.ndarray]:
    import sklearn.datasets as ds
    if name in BUNDLED:
        if params:
            raise DataError(f"{where}: sklearn:{name} takes no data.params")
        X, y = getattr(ds, f"load_{name}")(return_X_y=True)
        return X, y
    need = generator_bytes(name, params)
    if need is not None and hasattr(ds, name):
        if need > max_bytes:  # before the generator allocates anything
            raise _too_large(where, f"sklearn:{name} with these data.params would make", need,
                             max_bytes)
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
    if name.startswith("make_") and name.isidentifier() and hasattr(ds, name):
        # refused before it runs: its arrays could not be bounded from its parameters
        raise DataError(f"{where}: sklearn:{name} does not return (X, y) (generators of "
                        f"(X, y): {', '.join(GENERATORS)})")
    raise DataError(f"{where}: unknown dataset sklearn:{clip(name)} (bundled: "
                    f"{', '.join(BUNDLED)}; generators of (X, y): {', '.join(GENERATORS)})")


def _npz(path: Path, where: str, check: Check,
         max_bytes: int = MAX_DATA_BYTES) -> tuple[np.ndarray, np.ndarray]:
    """X and y of an ``.npz`` file: the file's size and its arrays' sizes (from their
    headers, before a byte of them is expanded) bounded by ``max_bytes``."""
    shown = clip(str(path), PATH_CHARS)
    fd = open_data(path, where, check)
    on_disk = os.fstat(fd).st_size
    if on_disk > max_bytes:  # a bare .npy would be read whole by np.load
        os.close(fd)
        raise _too_large(where, f"{shown} is", on_disk, max_bytes)
    with open(fd, "rb") as fh:
        try:
            loaded = np.load(fh, allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):  # a .npy file: one bare array
                raise DataError(f"{where}: {shown} is not an .npz archive of arrays X and y")
            with loaded as f:
                if "X" not in f or "y" not in f:
                    missing = " and ".join(k for k in ("X", "y") if k not in f)
                    raise DataError(f"{where}: {shown} must hold arrays named X and y "
                                    f"(it has no {missing})")
                zf = f.zip
                assert zf is not None  # open while the NpzFile is
                need = sum(_member_bytes(zf, k, where, shown) for k in ("X", "y"))
                if need > max_bytes:  # 456 kB of zeros can hold 940 MB of them
                    raise _too_large(where, f"{shown}: its arrays X and y take", need,
                                     max_bytes)
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


def _member_bytes(zf: zipfile.ZipFile, key: str, where: str, shown: str) -> int:
    """The bytes array ``key`` of an npz archive takes once loaded, from its .npy header."""
    name = f"{key}.npy" if f"{key}.npy" in zf.namelist() else key
    with zf.open(name) as m:
        version = np.lib.format.read_magic(m)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(m)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(m)
        else:
            raise DataError(f"{where}: {shown}: array {key} is in .npy format "
                            f"{version[0]}.{version[1]}; expected 1.0 or 2.0")
    return math.prod(shape) * dtype.itemsize
