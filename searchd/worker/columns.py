"""A job file's column transformers (checked by :mod:`searchd.jobs.columns`) → the
``(name, transformer, columns)`` tuples ``ColumnTransformer(transformers=...)`` takes.

``steps`` become a pipeline named as ``make_pipeline`` names it (lower-cased class
names: ``num__simpleimputer__strategy``) unless the job names its steps; a dtype
selector becomes ``make_column_selector``. Every estimator is built by the allow-list
(:func:`searchd.worker.estimators.build_estimator`), so its parameters pass the audit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from sklearn.compose import make_column_selector
from sklearn.pipeline import Pipeline, make_pipeline

from searchd.errors import DataError, JobSpecError
from searchd.jobs.columns import SPECIAL
from searchd.jobs.messages import clip
from searchd.jobs.spec import JobSpec, Value

#: (estimator name, params, where) → the built estimator
Build = Callable[[str, Mapping[str, Value], str], Any]


def is_transformer(value: Any) -> bool:
    """Whether a job-file value is one column transformer's table."""
    return isinstance(value, dict) and "columns" in value and "name" in value


def are_transformers(value: Any) -> bool:
    """Whether a built ``transformers`` value is the (name, transformer, columns) tuples
    :func:`transformer` makes."""
    return isinstance(value, list) and bool(value) and all(
        isinstance(t, tuple) and len(t) == 3 for t in value)


def transformer(value: Mapping[str, Any], build: Build, where: str) -> tuple[str, Any, Any]:
    name = value["name"]
    if "steps" in value:
        built = [(s.get("name"), build(s["estimator"], s.get("params", {}),
                                       f"{where}.steps[{i}]"))
                 for i, s in enumerate(value["steps"])]
        if all(n is None for n, _ in built):
            est: Any = make_pipeline(*(e for _, e in built))
        else:
            names = [n or type(e).__name__.lower() for n, e in built]
            if len(set(names)) != len(names):
                raise JobSpecError(f"{where}.steps: two steps have the same name "
                                   f"({', '.join(names)}); name them")
            est = Pipeline(list(zip(names, (e for _, e in built), strict=True)))
    elif value["estimator"] in SPECIAL:
        est = value["estimator"]
    else:
        est = build(value["estimator"], value.get("params", {}), where)
    return name, est, selection(value["columns"])


def selection(columns: Value) -> Any:
    """Column names as they are; a selector table as ``make_column_selector``."""
    if isinstance(columns, list):
        return list(columns)
    return make_column_selector(pattern=columns.get("pattern"),
                                dtype_include=columns.get("dtype"),
                                dtype_exclude=columns.get("exclude"))


def check_columns(job: JobSpec, X: Any, shown: str) -> None:
    """Every column a transformer names must be one of the data's (a typo would fail every
    fit); names and dtype selectors need a DataFrame (a csv: or parquet: source)."""
    frame = hasattr(X, "columns")
    have = {str(c) for c in X.columns} if frame else set()
    for key, t in _tables(job):
        cols = t["columns"]
        if not frame:
            raise DataError(f"{job.path}: {key}.columns: columns by name or dtype need a csv: "
                            "or parquet: source (the data is an array)")
        if isinstance(cols, list):
            for c in cols:
                if c not in have:
                    raise DataError(f"{job.path}: {key}.columns: {shown}: no column "
                                    f"{clip(repr(c))} among the features ({len(have):,} "
                                    "columns)")


def _tables(job: JobSpec) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(key, table) of every column transformer the job file gives, wherever it sits."""
    for i, s in enumerate(job.preprocess):
        yield from _walk(dict(s.params), f"preprocess[{i}].params")
    for m in job.models:
        yield from _walk(dict(m.params), f"models.{m.name}.params")
        for g, grid in enumerate(m.grid):
            for k, values in grid.items():
                if isinstance(values, list):
                    yield from _walk(values, f"models.{m.name}.grid[{g}].{k}")


def _walk(value: Any, key: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    if is_transformer(value):
        yield key, value
        for i, s in enumerate(value.get("steps", [])):
            yield from _walk(s, f"{key}.steps[{i}]")
        yield from _walk(value.get("params", {}), f"{key}.params")
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _walk(v, f"{key}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(v, f"{key}[{i}]")
