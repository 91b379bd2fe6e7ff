"""Job files (TOML or JSON) → a validated, frozen :class:`JobSpec`.

This module is pure Python (no scikit-learn import): the supervisor uses it to
check a job's shape and count its candidates without expanding any grid.
Estimator names are checked against the allow-list later, in
:mod:`searchd.estimators`, by the worker and by ``searchd validate``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import JobSpecError

JOB_ID = re.compile(r"^[A-Za-z0-9._-]+$")
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
SUFFIXES = (".toml", ".json")
HELPERS = ("range", "linspace", "logspace")

#: a parameter value as the job file states it: JSON-able, estimators as
#: ``{"estimator": name, "params": {...}}``
Value = Any


@dataclass(frozen=True)
class DataSpec:
    source: str
    #: keyword arguments of a ``sklearn:make_*`` generator
    params: Mapping[str, Value] = field(default_factory=dict)
    #: target column of a ``csv:`` source
    target: str | None = None
    #: hold-out share (float in (0, 1)) or size (int); None = no hold-out
    test_size: float | int | None = None
    seed: int = 0
    #: folder that relative paths resolve against
    base_dir: Path = Path(".")


@dataclass(frozen=True)
class SearchSpec:
    folds: int = 5
    shuffle: bool = False
    cv_seed: int | None = None
    scoring: tuple[str, ...] | None = None
    #: the scorer that picks the best candidate (the only one when scoring is a string)
    refit: str | None = None
    n_jobs: int | None = None
    backend: str = "local"

    @property
    def multimetric(self) -> bool:
        return self.scoring is not None and len(self.scoring) > 1


@dataclass(frozen=True)
class StepSpec:
    name: str
    estimator: str
    params: Mapping[str, Value] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    estimator: str
    params: Mapping[str, Value]
    #: expanded grids: a list of {parameter: [values]} as GridSearchCV takes them
    grid: tuple[Mapping[str, list[Value]], ...]
    n_candidates: int


@dataclass(frozen=True)
class JobSpec:
    id: str
    path: Path
    priority: int
    data: DataSpec
    search: SearchSpec
    preprocess: tuple[StepSpec, ...]
    models: tuple[ModelSpec, ...]
    #: sha256 of the job file's bytes
    digest: str

    @property
    def n_candidates(self) -> int:
        return sum(m.n_candidates for m in self.models)

    @property
    def fits_total(self) -> int:
        return self.n_candidates * self.search.folds

    def model(self, name: str) -> ModelSpec:
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(name)


def job_id_of(path: Path) -> str:
    return path.name[: -len(path.suffix)] if path.suffix else path.name


def read_job_file(path: Path) -> dict[str, Any]:
    """Parse a job file's bytes as TOML or JSON (by suffix); errors name the file."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise JobSpecError(f"{path}: cannot read: {e.strerror}") from None
    return parse_bytes(raw, path)


def parse_bytes(raw: bytes, path: Path) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise JobSpecError(f"{path}: not UTF-8 text") from None
    if path.suffix == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise JobSpecError(f"{path}: not valid TOML: {e}") from None
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise JobSpecError(f"{path}: not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise JobSpecError(f"{path}: expected a JSON object at the top level")
        return data
    raise JobSpecError(f"{path}: unknown job file type (expected .toml or .json)")


def load_job(path: Path, max_candidates: int, job_id: str | None = None,
             base_dir: Path | None = None) -> JobSpec:
    """Read and validate a job file. ``base_dir`` resolves relative data paths."""
    try:
        raw_bytes = path.read_bytes()
    except FileNotFoundError:
        raise JobSpecError(f"{path}: job file not found") from None
    except OSError as e:  # a folder, no permission, ...
        raise JobSpecError(f"{path}: cannot read: {e.strerror}") from None
    return parse_job(raw_bytes, path, max_candidates, job_id=job_id, base_dir=base_dir)


def parse_job(raw_bytes: bytes, path: Path, max_candidates: int, job_id: str | None = None,
              base_dir: Path | None = None) -> JobSpec:
    jid = job_id or job_id_of(path)
    if not JOB_ID.match(jid):
        raise JobSpecError(f"{path}: job id {jid!r} may only use letters, digits, '.', '_', '-'")
    doc = parse_bytes(raw_bytes, path)
    v = _Validator(path)
    v.keys(doc, "", {"priority", "data", "search", "preprocess", "models"})
    priority = v.integer(doc.get("priority", 0), "priority")
    data = v.data(v.table(doc.get("data"), "data", required=True),
                  base_dir or path.parent)
    search = v.search(v.table(doc.get("search", {}), "search"))
    preprocess = v.preprocess(doc.get("preprocess", []))
    models_doc = v.table(doc.get("models"), "models", required=True)
    if not models_doc:
        raise JobSpecError(f"{path}: models: at least one model type is needed")
    counted = [v.model(name, spec) for name, spec in models_doc.items()]
    total = sum(m.n_candidates for m, _ in counted)
    if total > max_candidates:
        sizes = ", ".join(f"{m.name}: {m.n_candidates:,}" for m, _ in counted)
        raise JobSpecError(
            f"{path}: models: the grids expand to {total:,} candidates ({sizes}), more than "
            f"max_candidates ({max_candidates:,})")
    # Only now, with the size known to be sane, are the value lists built.
    models = tuple(v.expand(m, raw) for m, raw in counted)
    return JobSpec(id=jid, path=path, priority=priority, data=data, search=search,
                   preprocess=preprocess, models=models,
                   digest=hashlib.sha256(raw_bytes).hexdigest())


def _count(n: float) -> int:
    return max(0, int(n))


def _range_len(start: Any, stop: Any, step: Any) -> int:
    """How many values range-like [start, stop, step] gives, without building them.

    Integer arithmetic for ints: ``len(range(...))`` overflows past sys.maxsize,
    and JSON integers are unbounded.
    """
    if all(isinstance(a, int) for a in (start, stop, step)):
        return max(0, -((start - stop) // step))
    return _count(math.ceil((stop - start) / step))


def _range_args(args: list[Any]) -> tuple[Any, Any, Any]:
    """Python's range() arguments: [stop], [start, stop] or [start, stop, step]."""
    if len(args) == 1:
        return 0, args[0], 1
    if len(args) == 2:
        return args[0], args[1], 1
    return args[0], args[1], args[2]


class _Validator:
    """Checks one job document; every error names the file, the key and the value."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, key: str, problem: str) -> JobSpecError:
        return JobSpecError(f"{self.path}: {key}: {problem}" if key else f"{self.path}: {problem}")

    def keys(self, table: Mapping[str, Any], where: str, allowed: set[str]) -> None:
        for k in table:
            if k not in allowed:
                at = f"{where}.{k}" if where else k
                raise self.fail(at, f"unknown key (expected one of {', '.join(sorted(allowed))})")

    def table(self, value: Any, key: str, required: bool = False) -> dict[str, Any]:
        if value is None:
            if required:
                raise self.fail(key, "missing (a table is required)")
            return {}
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a table, got {value!r}")
        return value

    def integer(self, value: Any, key: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"expected an integer, got {value!r}")
        return value

    def string(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(key, f"expected a non-empty string, got {value!r}")
        return value

    def data(self, d: dict[str, Any], base_dir: Path) -> DataSpec:
        self.keys(d, "data", {"source", "params", "target", "test_size", "seed"})
        source = self.string(d.get("source"), "data.source")
        kind = source.split(":", 1)[0]
        if kind not in ("sklearn", "csv", "npz") or ":" not in source:
            raise self.fail("data.source", f"expected sklearn:<name>, csv:<path> or npz:<path>, "
                            f"got {source!r}")
        params = {k: self.value(val, f"data.params.{k}")
                  for k, val in self.table(d.get("params"), "data.params").items()}
        target = d.get("target")
        if target is not None:
            target = self.string(target, "data.target")
        if kind == "csv" and target is None:
            raise self.fail("data.target", "a csv: source needs target = \"<column>\"")
        test_size = d.get("test_size")
        if test_size is not None:
            if isinstance(test_size, bool) or not isinstance(test_size, (int, float)) or (
                    isinstance(test_size, float) and not 0 < test_size < 1) or (
                    isinstance(test_size, int) and test_size < 1):
                raise self.fail("data.test_size", f"expected a fraction in (0, 1) or a count, "
                                f"got {test_size!r}")
        seed = self.integer(d.get("seed", 0), "data.seed")
        return DataSpec(source=source, params=params, target=target, test_size=test_size,
                        seed=seed, base_dir=base_dir)

    def search(self, d: dict[str, Any]) -> SearchSpec:
        self.keys(d, "search", {"cv", "scoring", "refit", "n_jobs", "backend"})
        cv = d.get("cv", 5)
        shuffle, cv_seed = False, None
        if isinstance(cv, dict):
            self.keys(cv, "search.cv", {"folds", "shuffle", "seed"})
            folds = self.integer(cv.get("folds", 5), "search.cv.folds")
            shuffle = cv.get("shuffle", False)
            if not isinstance(shuffle, bool):
                raise self.fail("search.cv.shuffle", f"expected true or false, got {shuffle!r}")
            cv_seed = self.integer(cv.get("seed", 0), "search.cv.seed") if shuffle else None
        else:
            folds = self.integer(cv, "search.cv")
        if folds < 2:
            raise self.fail("search.cv", f"expected at least 2 folds, got {folds}")
        scoring_raw = d.get("scoring")
        scoring: tuple[str, ...] | None
        if scoring_raw is None:
            scoring = None
        elif isinstance(scoring_raw, str):
            scoring = (scoring_raw,)
        elif isinstance(scoring_raw, list) and scoring_raw and all(
                isinstance(s, str) and s for s in scoring_raw):
            if len(set(scoring_raw)) != len(scoring_raw):
                raise self.fail("search.scoring", f"names a scorer twice: {scoring_raw!r}")
            scoring = tuple(scoring_raw)
        else:
            raise self.fail("search.scoring",
                            f"expected a scorer name or a list of names, got {scoring_raw!r}")
        refit = d.get("refit")
        if refit is not None:
            refit = self.string(refit, "search.refit")
            if scoring is None or refit not in scoring:
                raise self.fail("search.refit", f"{refit!r} is not one of the scoring names")
        elif scoring is not None and len(scoring) > 1:
            raise self.fail("search.refit", "several scorers need refit = \"<name>\" to pick "
                            "the best candidate")
        elif scoring is not None:
            refit = scoring[0]
        n_jobs = d.get("n_jobs")
        if n_jobs is not None:
            n_jobs = self.integer(n_jobs, "search.n_jobs")
            if n_jobs == 0:
                raise self.fail("search.n_jobs", "0 has no meaning (use -1 for all cores)")
        backend = d.get("backend", "local")
        if backend not in ("local", "dask"):
            raise self.fail("search.backend", f"expected \"local\" or \"dask\", got {backend!r}")
        return SearchSpec(folds=folds, shuffle=shuffle, cv_seed=cv_seed, scoring=scoring,
                          refit=refit, n_jobs=n_jobs, backend=backend)

    def preprocess(self, steps: Any) -> tuple[StepSpec, ...]:
        if not isinstance(steps, list):
            raise self.fail("preprocess", f"expected a list of steps ([[preprocess]]), "
                            f"got {steps!r}")
        out: list[StepSpec] = []
        for i, step in enumerate(steps):
            key = f"preprocess[{i}]"
            step = self.table(step, key, required=True)
            self.keys(step, key, {"name", "estimator", "params"})
            name = self.string(step.get("name"), f"{key}.name")
            if not NAME.match(name) or "__" in name or name == "model":
                raise self.fail(f"{key}.name", f"{name!r} is not a usable step name (letters, "
                                "digits, '_', '-', no '__', not 'model')")
            if name in {s.name for s in out}:
                raise self.fail(f"{key}.name", f"step {name!r} appears twice")
            est = self.string(step.get("estimator"), f"{key}.estimator")
            params = self.params(step.get("params"), f"{key}.params")
            out.append(StepSpec(name=name, estimator=est, params=params))
        return tuple(out)

    def params(self, d: Any, key: str) -> dict[str, Value]:
        return {k: self.value(v, f"{key}.{k}") for k, v in self.table(d, key).items()}

    def model(self, name: str, d: Any) -> tuple[ModelSpec, list[tuple[str, dict[str, Any]]]]:
        """Check a model type and count its candidates; its grids stay unexpanded."""
        key = f"models.{name}"
        if not NAME.match(name):
            raise self.fail(key, "a model type's name uses letters, digits, '_' and '-'")
        d = self.table(d, key, required=True)
        self.keys(d, key, {"estimator", "params", "grid"})
        est = self.string(d.get("estimator"), f"{key}.estimator")
        params = self.params(d.get("params"), f"{key}.params")
        grid_raw = d.get("grid", {})
        grids = grid_raw if isinstance(grid_raw, list) else [grid_raw]
        if not grids:
            raise self.fail(f"{key}.grid", "an empty list of grids has no candidates")
        total = 0
        raw: list[tuple[str, dict[str, Any]]] = []
        for i, g in enumerate(grids):
            gkey = f"{key}.grid" if not isinstance(grid_raw, list) else f"{key}.grid[{i}]"
            g = self.table(g, gkey, required=True)
            total += math.prod(self.grid_size(v, f"{gkey}.{p}") for p, v in g.items())
            raw.append((gkey, g))
        spec = ModelSpec(name=name, estimator=est, params=params, grid=(), n_candidates=total)
        return spec, raw

    def expand(self, spec: ModelSpec, raw: list[tuple[str, dict[str, Any]]]) -> ModelSpec:
        grid = tuple({p: self.grid_values(v, f"{gkey}.{p}") for p, v in g.items()}
                     for gkey, g in raw)
        return replace(spec, grid=grid)

    def grid_size(self, v: Any, key: str) -> int:
        if isinstance(v, list):
            if not v:
                raise self.fail(key, "an empty list gives no candidates")
            return len(v)
        if isinstance(v, dict) and len(v) == 1 and next(iter(v)) in HELPERS:
            kind, args = next(iter(v.items()))
            self.helper_args(kind, args, key)
            if kind == "range":
                try:
                    n = _range_len(*_range_args(args))
                except OverflowError:  # e.g. [0, 1e308, 1e-308]: a count past any float
                    raise self.fail(key, f"{{{kind} = {args!r}}} does not give a finite "
                                    "number of values") from None
            else:
                n = args[2]
            if n < 1:
                raise self.fail(key, f"{{{kind} = {args!r}}} gives no values")
            return int(n)
        raise self.fail(key, f"expected a list or a range, got {_show(v)}")

    def helper_args(self, kind: str, args: Any, key: str) -> None:
        if not isinstance(args, list) or not all(
                isinstance(a, (int, float)) and not isinstance(a, bool) for a in args):
            raise self.fail(key, f"{kind}: expected a list of numbers, got {args!r}")
        if kind == "range":
            if not 1 <= len(args) <= 3:
                raise self.fail(key, f"range: expected [stop], [start, stop] or "
                                f"[start, stop, step], got {args!r}")
            if len(args) == 3 and args[2] == 0:
                raise self.fail(key, "range: step must not be 0")
        elif len(args) != 3 or not isinstance(args[2], int) or isinstance(args[2], bool):
            raise self.fail(key, f"{kind}: expected [start, stop, count], got {args!r}")
        # NaN or inf (TOML nan/inf, JSON NaN/Infinity) would give NaN values or an
        # OverflowError instead of a message; so would ints or powers past a float.
        try:
            if kind == "range":  # huge ints are fine here: the count says no
                finite = all(math.isfinite(a) for a in args if isinstance(a, float))
            else:
                finite = all(math.isfinite(a) for a in args) and math.isfinite(
                    float(args[1]) - float(args[0])) and (
                    kind != "logspace" or math.isfinite(10.0 ** max(args[0], args[1])))
        except OverflowError:
            finite = False
        if not finite:
            raise self.fail(key, f"{kind}: expected finite numbers, got {args!r}")

    def grid_values(self, v: Any, key: str) -> list[Value]:
        if isinstance(v, list):
            return [self.value(x, f"{key}[{i}]") for i, x in enumerate(v)]
        kind, args = next(iter(v.items()))
        if kind == "range":
            start, stop, step = _range_args(args)
            if all(isinstance(a, int) for a in (start, stop, step)):
                return list(range(start, stop, step))
            n = _range_len(start, stop, step)
            return [start + i * step for i in range(n)]
        start, stop, n = args
        if n == 1:
            points = [float(start)]
        else:
            points = [start + (stop - start) * (i / (n - 1)) for i in range(n)]
        if kind == "logspace":
            return [10.0 ** p for p in points]
        return [float(p) for p in points]

    def value(self, v: Any, key: str) -> Value:
        """One parameter value: a scalar, None, a list, or an estimator."""
        if v is None or isinstance(v, (bool, int, str)):
            return v
        if isinstance(v, float):
            if not math.isfinite(v):
                raise self.fail(key, f"expected a finite number, got {v!r}")
            return v
        if isinstance(v, list):
            return [self.value(x, f"{key}[{i}]") for i, x in enumerate(v)]
        if isinstance(v, dict):
            if set(v) == {"none"}:
                if v["none"] is not True:
                    raise self.fail(key, "write None as {none = true}")
                return None
            if "estimator" in v:
                self.keys(v, key, {"estimator", "params"})
                return {"estimator": self.string(v["estimator"], f"{key}.estimator"),
                        "params": self.params(v.get("params"), f"{key}.params")}
            if len(v) == 1 and next(iter(v)) in HELPERS:
                raise self.fail(key, f"a {next(iter(v))} helper can only give a grid's values")
            raise self.fail(key, f"expected a value, {{none = true}} or {{estimator = ...}}, "
                            f"got {_show(v)}")
        raise self.fail(key, f"unsupported value {v!r}")


def _show(v: Any) -> str:
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {json.dumps(x)}" for k, x in v.items()) + "}"
    return json.dumps(v) if isinstance(v, (str, int, float, bool)) or v is None else repr(v)


def canonical(value: Any) -> str:
    """Canonical JSON: the content key of a candidate or a model spec."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
