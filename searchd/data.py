"""Load a job's data: bundled scikit-learn datasets, ``make_*`` generators, CSV, NPZ.

Everything is local: no dataset is fetched from the network.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError
from .spec import JobSpec

BUNDLED = ("iris", "digits", "wine", "breast_cancer", "diabetes", "linnerud")


@dataclass(frozen=True)
class Dataset:
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray | None
    y_test: np.ndarray | None
    #: sha256 over the training and hold-out arrays: a checkpoint belongs to this data only
    digest: str


def load_dataset(job: JobSpec, classification: bool) -> Dataset:
    X, y = load_xy(job)
    X_test = y_test = None
    if job.data.test_size is not None:
        from sklearn.model_selection import train_test_split
        try:
            X, X_test, y, y_test = train_test_split(
                X, y, test_size=job.data.test_size, random_state=job.data.seed,
                stratify=y if classification else None)
        except ValueError as e:
            raise DataError(f"{job.path}: data.test_size: {e}") from None
        if len(X) < job.search.folds:  # load_xy checked all rows; the folds see fewer
            raise DataError(f"{job.path}: data.test_size: {len(X)} training samples are fewer "
                            f"than the {job.search.folds} folds")
    h = hashlib.sha256()
    for a in (X, y, X_test, y_test):
        if a is not None:
            h.update(np.ascontiguousarray(a).tobytes())
            h.update(str(a.shape).encode())
    return Dataset(X, y, X_test, y_test, h.hexdigest())


def load_xy(job: JobSpec) -> tuple[np.ndarray, np.ndarray]:
    kind, _, rest = job.data.source.partition(":")
    where = f"{job.path}: data.source"
    if kind == "sklearn":
        X, y = _sklearn(rest, dict(job.data.params), where)
    elif kind == "csv":
        assert job.data.target is not None  # the spec insists on it
        X, y = _csv(_path(job, rest), job.data.target, where)
    else:
        X, y = _npz(_path(job, rest), where)
    if len(X) != len(y):
        raise DataError(f"{where}: X has {len(X)} rows but y has {len(y)}")
    if len(X) < job.search.folds:
        raise DataError(f"{where}: {len(X)} samples are fewer than the {job.search.folds} folds")
    return X, y


def _path(job: JobSpec, rest: str) -> Path:
    p = Path(rest).expanduser()
    return p if p.is_absolute() else job.data.base_dir / p


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
        except (TypeError, ValueError) as e:
            raise DataError(f"{where}: sklearn:{name}: {e}") from None
        if not isinstance(out, tuple) or len(out) < 2:
            raise DataError(f"{where}: sklearn:{name} does not return (X, y)")
        return np.asarray(out[0]), np.asarray(out[1])
    raise DataError(f"{where}: unknown dataset sklearn:{name} (bundled: {', '.join(BUNDLED)}; "
                    "or a sklearn.datasets make_* generator)")


def _csv(path: Path, target: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except OSError as e:
        raise DataError(f"{where}: {path}: {e.strerror}") from None
    if not rows:
        raise DataError(f"{where}: {path} is empty")
    # Blank lines (a trailing newline too many) are no samples.
    header, body = rows[0], [r for r in rows[1:] if r]
    for n, r in enumerate(rows[1:], start=2):
        if r and len(r) != len(header):
            raise DataError(f"{where}: {path}: a row has {len(r)} fields, the header "
                            f"{len(header)} (row {n}: {','.join(r)})")
    if target not in header:
        raise DataError(f"{where}: {path}: no column {target!r} (columns: {', '.join(header)})")
    t = header.index(target)
    try:
        X = np.array([[float(v) for i, v in enumerate(r) if i != t] for r in body])
    except ValueError as e:
        raise DataError(f"{where}: {path}: feature columns must be numeric: {e}") from None
    y_raw = [r[t] for r in body]
    try:
        y: np.ndarray = np.array([float(v) for v in y_raw])
        if np.all(y == np.round(y)):
            y = y.astype(np.int64)
    except ValueError:
        y = np.array(y_raw)
    return X, y


def _npz(path: Path, where: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):  # a .npy file: one bare array
            raise DataError(f"{where}: {path} is not an .npz archive of arrays X and y")
        with loaded as f:
            if "X" not in f or "y" not in f:
                raise DataError(f"{where}: {path} must hold arrays named X and y "
                                f"(has {', '.join(f.files)})")
            X, y = f["X"], f["y"]
    except OSError as e:
        raise DataError(f"{where}: {path}: {e.strerror or e}") from None
    except ValueError as e:  # e.g. object arrays: refused, they would need pickle
        raise DataError(f"{where}: {path}: {e}") from None
    if X.ndim != 2 or y.ndim not in (1, 2):
        raise DataError(f"{where}: {path}: X must be 2-D and y 1-D or 2-D, got shapes "
                        f"{X.shape} and {y.shape}")
    return X, y
