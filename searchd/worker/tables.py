"""Tabular data files: ``csv:`` (pandas) and ``parquet:`` (pyarrow) → a DataFrame X and a y.

The file is opened once, safely (:func:`~searchd.worker.datapaths.open_data`), hashed and
parsed from the same descriptor: the data digest is the file's content, the columns kept
and the label's name, so a changed file is a changed evaluation context. Columns are read
as ``pandas.read_csv`` / ``pandas.read_parquet`` infer them (strings as pandas' string or
object columns, empty cells as missing), so a job's scores equal a scikit-learn pipeline's
on ``pandas.read_csv(path)``. Errors about the content name the file and the job's own
words (a column it asks for), never what the file holds: the daemon may read files the
job's author cannot.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from searchd.errors import DataError
from searchd.jobs.limits import CELL_BYTES, size
from searchd.jobs.messages import clip
from searchd.worker.datapaths import PATH_CHARS, Check, open_data

#: most columns a file may have
MAX_COLUMNS = 100_000
#: the pip extra that brings pyarrow
PARQUET_HINT = "pip install 'searchd[parquet]'"


@dataclass(frozen=True)
class Table:
    """A data file's features and label, and what they were made from."""

    X: Any  #: a pandas DataFrame (the kept feature columns, in the file's order)
    y: np.ndarray
    #: sha256 of the file's bytes, the kept columns and the label's name
    digest: str


def read_table(kind: str, path: Path, target: str, features: tuple[str, ...] | None,
               drop: tuple[str, ...], where: str, check: Check, max_bytes: int) -> Table:
    """Read ``path`` (``kind`` "csv" or "parquet"), bounded by ``max_bytes``: its size on
    disk, a Parquet file's uncompressed size from its footer before anything is decoded,
    and the frame's memory once parsed."""
    import pandas as pd

    shown = clip(str(path), PATH_CHARS)
    fd = open_data(path, where, check)
    with open(fd, "rb") as f:
        on_disk = os.fstat(f.fileno()).st_size
        if on_disk > max_bytes:
            raise _too_large(where, f"{shown} is", on_disk, max_bytes)
        file_digest, lines, width = _scan(f, where, shown)
        f.seek(0)
        if kind == "parquet":
            df = _parquet(f, where, shown, max_bytes)
        else:
            # bounded before pandas parses it: the header's columns, and its lines as
            # 8-byte cells (strings take more, and are counted once the frame is made)
            if width > MAX_COLUMNS:
                raise DataError(f"{where}: {shown}: its header has more than "
                                f"{MAX_COLUMNS:,} columns")
            need = lines * width * CELL_BYTES
            if need > max_bytes:
                raise _too_large(where, f"{shown}: its {lines:,} lines of {width:,} columns "
                                 "take (as 8-byte values)", need, max_bytes)
            df = _csv(f, where, shown)
    if df.shape[1] > MAX_COLUMNS:
        raise DataError(f"{where}: {shown}: more than {MAX_COLUMNS:,} columns")
    in_memory = int(df.memory_usage(deep=True, index=False).sum())
    if in_memory > max_bytes:
        raise _too_large(where, f"{shown}: its values take", in_memory, max_bytes)
    columns = [str(c) for c in df.columns]
    if len(set(columns)) != len(columns):
        raise DataError(f"{where}: {shown}: two columns have the same name")
    df.columns = pd.Index(columns)
    for key, names in (("data.target", (target,)), ("data.features", features or ()),
                       ("data.drop", drop)):
        for name in names:
            if name not in df.columns:
                raise DataError(f"{_key(where, key)}: {shown}: no column {clip(repr(name))} "
                                f"({len(columns):,} columns)")
    if features is not None and target in features:
        raise DataError(f"{_key(where, 'data.features')}: {clip(repr(target))} is the target")
    keep = list(features) if features is not None else \
        [c for c in columns if c != target and c not in drop]
    if not keep:
        raise DataError(f"{_key(where, 'data.features')}: no feature columns left in {shown}")
    y = _labels(df[target], where, shown, target)
    X = df[keep]
    h = hashlib.sha256(file_digest)
    h.update(repr((kind, keep, target)).encode())
    return Table(X, y, h.hexdigest())


def _key(where: str, key: str) -> str:
    """``<file>: data.source`` → ``<file>: <key>``."""
    return where.rpartition(": ")[0] + f": {key}" if ": " in where else key


def _too_large(where: str, what: str, need: int, max_bytes: int) -> DataError:
    return DataError(f"{where}: {what} {size(need)}, more than max_data_bytes "
                     f"({size(max_bytes)})")


def _scan(f: Any, where: str, shown: str) -> tuple[bytes, int, int]:
    """The file's sha256, its lines (as a CSV: the header excluded, a last line without
    a newline included) and the fields of its first line (commas + 1; quoted commas count
    too, which only overestimates)."""
    h = hashlib.sha256()
    newlines, width, last = 0, 0, b"\n"
    head = b""
    try:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            newlines += chunk.count(b"\n")
            if not width:
                head += chunk
                if b"\n" in head or len(head) > 16 << 20:
                    width = head.partition(b"\n")[0].count(b",") + 1
                    head = b""
            last = chunk[-1:]
    except OSError as e:
        raise DataError(f"{where}: {shown}: {e.strerror or e}") from None
    if not width:
        width = head.count(b",") + 1
    lines = newlines + (last != b"\n")
    return h.digest(), max(lines - 1, 0), width


def _csv(f: Any, where: str, shown: str) -> Any:
    import pandas as pd

    try:
        return pd.read_csv(f)
    except UnicodeDecodeError as e:
        raise DataError(f"{where}: {shown}: not UTF-8 text (byte {e.start}); "
                        "not a CSV file?") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{where}: {shown} is empty") from None
    except pd.errors.ParserError as e:  # pandas says where (line, fields), not what
        raise DataError(f"{where}: {shown}: not a CSV file: {clip(str(e).strip(), 300)}") \
            from None
    except (OSError, ValueError) as e:
        raise DataError(f"{where}: {shown}: not a readable CSV file "
                        f"({type(e).__name__})") from None
    except MemoryError:
        raise DataError(f"{where}: {shown}: too large for memory") from None


def _parquet(f: Any, where: str, shown: str, max_bytes: int) -> Any:
    try:
        import pyarrow
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{where}: parquet: sources need pyarrow ({PARQUET_HINT})") from None
    if _version(pyarrow.__version__) < (14, 0, 1):  # unpickled extension types: code
        raise DataError(f"{where}: parquet: sources need pyarrow 14.0.1 or later (older "
                        f"versions can run code from a file; {pyarrow.__version__} is "
                        f"installed: {PARQUET_HINT})")
    import pandas as pd

    try:
        meta = pq.ParquetFile(f).metadata
        need = max(sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups)),
                   meta.num_rows * meta.num_columns * CELL_BYTES)
        if need > max_bytes:  # a small compressed file can hold gigabytes
            raise _too_large(where, f"{shown}: its columns take", need, max_bytes)
        f.seek(0)
        return pd.read_parquet(f, engine="pyarrow")
    except DataError:
        raise
    except MemoryError:
        raise DataError(f"{where}: {shown}: too large for memory") from None
    except Exception as e:  # noqa: BLE001 - pyarrow's errors are many (ArrowInvalid, OSError, ...)
        raise DataError(f"{where}: {shown}: not a readable Parquet file "
                        f"({type(e).__name__})") from None


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for p in text.split(".")[:3]:
        digits = "".join(c for c in p if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def _labels(col: Any, where: str, shown: str, target: str) -> np.ndarray:
    """The label column as an array: numbers as they are (integral floats as int64), text
    as a NumPy string array (which memory-maps, unlike Python objects)."""
    import pandas as pd

    missing = col.isna().to_numpy()
    if missing.any():
        row = int(np.argmax(missing))
        raise DataError(f"{_key(where, 'data.target')}: {shown}: column "
                        f"{clip(repr(target))} has a missing value (data row {row + 1})")
    if pd.api.types.is_bool_dtype(col.dtype) or pd.api.types.is_numeric_dtype(col.dtype):
        y = col.to_numpy()
        if y.dtype.kind == "f" and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        return np.asarray(y)
    return np.asarray(col.astype(str).to_numpy(dtype=object).astype(str))


def rows(X: Any, index: np.ndarray) -> Any:
    """The rows ``index`` (positions) of an array or a DataFrame, as GridSearchCV takes a
    fold's samples (a frame by position, keeping its columns and dtypes)."""
    return X[index] if isinstance(X, np.ndarray) else X.iloc[index]
