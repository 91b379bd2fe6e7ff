"""Job files (TOML or JSON) → a validated, frozen :class:`JobSpec`.

This module is pure Python (no scikit-learn import): the supervisor uses it to
check a job's shape and count its candidates without expanding any grid.
Estimator names are checked against the allow-list later, in
:mod:`searchd.worker.estimators`, by the worker and by ``searchd validate``.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import stat
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from searchd.errors import JobSpecError

#: a job id, matched whole (``re.fullmatch``: ``$`` would let a trailing newline through)
JOB_ID = re.compile(r"[A-Za-z0-9._-]+")
#: names the state folder uses for itself: a job folder state/<id> must never be one of them
RESERVED_IDS = ("pause.json", "quarantine", "published", "lost+found")
#: prefixes and suffixes of the state folder's own files (searchd.key, searchd.lock, ...)
RESERVED_PREFIXES = ("searchd.",)
RESERVED_SUFFIXES = (".lock", ".pid", ".key")
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
#: step names a Pipeline refuses at fit (its own arguments) or that searchd uses itself
RESERVED_STEPS = ("model", "memory", "steps", "transform_input", "verbose")
#: a scikit-learn parameter name, or names joined by '__' (``scale__with_mean``)
PARAM = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
SUFFIXES = (".toml", ".json")
HELPERS = ("range", "linspace", "logspace")
#: the largest job file accepted: far above any real job (a 100,000-value grid written out
#: is ~1 MB), small enough that parsing a hostile file costs well under a second
MAX_JOB_BYTES = 1 << 20
#: the deepest nesting of tables and lists accepted (a real job needs about 10); deeper
#: documents are refused before anything recurses into them
MAX_DEPTH = 32
#: numpy's random seeds: what scikit-learn accepts as ``random_state``
MAX_SEED = 2**32 - 1
#: candidate counts stop growing here (a hostile grid's true product can have a million
#: digits); any job this large is refused anyway
SATURATED = 10**100
#: longest value quoted in an error message (a message is one line of a log or status)
SHOW_CHARS = 80

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


def job_id_problem(jid: str) -> str | None:
    """Why ``jid`` cannot be a job id (it names a folder in state/), or None.

    The id is also the name of the job's folder in state/, beside the daemon's own
    files: an id equal to one of those (``pause.json``, ``searchd.key``, any ``*.lock``)
    would make the daemon create a folder in their place, so such ids are refused.
    """
    if not JOB_ID.fullmatch(jid):
        return f"job id {_brief(jid)} may only use letters, digits, '.', '_', '-'"
    if jid[0] in ".-":  # '.', '..': the state folder or its parent; '-x': an option
        return f"job id {jid!r} may not start with {jid[0]!r}"
    low = jid.lower()  # a case-insensitive file system would make SEARCHD.KEY the key
    if (low in RESERVED_IDS or low.startswith(RESERVED_PREFIXES)
            or low.endswith(RESERVED_SUFFIXES)):
        return (f"job id {jid!r} is reserved: the state folder uses it for itself (no id may "
                f"be {', '.join(RESERVED_IDS)}, start with "
                f"{', '.join(RESERVED_PREFIXES)} or end in {', '.join(RESERVED_SUFFIXES)})")
    return None


def read_job_bytes(path: Path, follow_symlinks: bool = True) -> tuple[bytes, os.stat_result]:
    """A job file's bytes (at most :data:`MAX_JOB_BYTES`) and its stat; errors name the file.

    Only a regular file is read: a FIFO would block, a device never end. Opening
    with ``O_NONBLOCK`` and checking the open file (not the name) leaves no window
    for the name to be swapped for something else in between.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow_symlinks
                                                          else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise JobSpecError(f"{path}: job file not found") from None
    except OSError as e:  # ELOOP: a symlink under O_NOFOLLOW; EACCES, ...
        if e.errno == errno.ELOOP and not follow_symlinks:
            raise JobSpecError(f"{path}: {SYMLINK_REASON}") from None
        raise JobSpecError(f"{path}: cannot read: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise JobSpecError(f"{path}: cannot read: Is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise JobSpecError(f"{path}: not a regular file (a FIFO, device or socket)")
        if st.st_size > MAX_JOB_BYTES:
            raise JobSpecError(too_big(path, st.st_size))
        chunks: list[bytes] = []
        left = MAX_JOB_BYTES + 1  # the file may have grown since the fstat
        while left > 0 and (chunk := os.read(fd, left)):
            chunks.append(chunk)
            left -= len(chunk)
        raw = b"".join(chunks)
    except OSError as e:
        raise JobSpecError(f"{path}: cannot read: {e.strerror}") from None
    finally:
        os.close(fd)
    if len(raw) > MAX_JOB_BYTES:
        raise JobSpecError(too_big(path, len(raw)))
    return raw, st


SYMLINK_REASON = ("is a symbolic link; searchd reads only regular files in its jobs folder "
                  "(copy the file there, e.g. with `searchd submit`)")


def too_big(path: Path, size: int) -> str:
    return (f"{path}: {size:,} bytes is more than a job file may have "
            f"({MAX_JOB_BYTES:,} bytes)")


def read_job_file(path: Path) -> dict[str, Any]:
    """Parse a job file's bytes as TOML or JSON (by suffix); errors name the file."""
    raw, _ = read_job_bytes(path)
    return parse_bytes(raw, path)


def parse_bytes(raw: bytes, path: Path) -> dict[str, Any]:
    if len(raw) > MAX_JOB_BYTES:
        raise JobSpecError(too_big(path, len(raw)))
    try:
        # utf-8-sig: a byte-order mark some editors write is no reason to refuse a file
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise JobSpecError(f"{path}: not UTF-8 text") from None
    if path.suffix not in SUFFIXES:
        raise JobSpecError(f"{path}: unknown job file type (expected .toml or .json)")
    kind = "TOML" if path.suffix == ".toml" else "JSON"
    try:
        data = tomllib.loads(text) if kind == "TOML" else json.loads(text)
    except RecursionError:  # both parsers recurse per nesting level
        raise JobSpecError(f"{path}: not valid {kind}: nested deeper than {MAX_DEPTH} "
                           "levels") from None
    except ValueError as e:  # the decode errors, and ints past Python's 4,300 digits
        why = str(e)
        if "integer string conversion" in why:
            why = f"an integer has more than {sys.get_int_max_str_digits():,} digits"
        raise JobSpecError(f"{path}: not valid {kind}: {clip(why, 4 * SHOW_CHARS)}") from None
    if not isinstance(data, dict):
        raise JobSpecError(f"{path}: expected a JSON object at the top level")
    _check_depth(data, path)
    return data


def _check_depth(doc: dict[str, Any], path: Path) -> None:
    """Refuse nesting past MAX_DEPTH, without recursion, before anything recurses into it."""
    stack: list[tuple[Any, str, int]] = [(doc, "", 0)]
    while stack:
        node, key, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise JobSpecError(f"{path}: {clip(key, 2 * SHOW_CHARS)}: nested deeper than "
                               f"{MAX_DEPTH} levels")
        if isinstance(node, dict):
            stack.extend((v, f"{key}.{k}" if key else str(k), depth + 1)
                         for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, f"{key}[{i}]", depth + 1) for i, v in enumerate(node))


def load_job(path: Path, max_candidates: int, job_id: str | None = None,
             base_dir: Path | None = None) -> JobSpec:
    """Read and validate a job file. ``base_dir`` resolves relative data paths."""
    raw_bytes, _ = read_job_bytes(path)
    return parse_job(raw_bytes, path, max_candidates, job_id=job_id, base_dir=base_dir)


def parse_job(raw_bytes: bytes, path: Path, max_candidates: int, job_id: str | None = None,
              base_dir: Path | None = None) -> JobSpec:
    jid = job_id or job_id_of(path)
    problem = job_id_problem(jid)
    if problem:
        raise JobSpecError(f"{path}: {problem}")
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
    total = min(sum(m.n_candidates for m, _ in counted), SATURATED)
    if total > max_candidates:
        sizes = ", ".join(f"{m.name}: {_howmany(m.n_candidates)}" for m, _ in counted)
        raise JobSpecError(
            f"{path}: models: the grids expand to {_howmany(total)} candidates ({sizes}), "
            f"more than max_candidates ({max_candidates:,})")
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
        key = clip(key, 2 * SHOW_CHARS)  # keys come from the file too
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
            raise self.fail(key, f"expected a table, got {_brief(value)}")
        return value

    def integer(self, value: Any, key: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"expected an integer, got {_brief(value)}")
        return value

    def seed(self, value: Any, key: str) -> int:
        # checked here: the worker would only meet a bad one while splitting, and die
        seed = self.integer(value, key)
        if not 0 <= seed <= MAX_SEED:
            raise self.fail(key, f"expected a seed from 0 to {MAX_SEED}, got {_brief(seed)}")
        return seed

    def string(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(key, f"expected a non-empty string, got {_brief(value)}")
        return value

    def data(self, d: dict[str, Any], base_dir: Path) -> DataSpec:
        self.keys(d, "data", {"source", "params", "target", "test_size", "seed"})
        source = self.string(d.get("source"), "data.source")
        kind = source.split(":", 1)[0]
        if kind not in ("sklearn", "csv", "npz") or ":" not in source:
            raise self.fail("data.source", f"expected sklearn:<name>, csv:<path> or npz:<path>, "
                            f"got {_brief(source)}")
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
                                f"got {_brief(test_size)}")
        seed = self.seed(d.get("seed", 0), "data.seed")
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
                raise self.fail("search.cv.shuffle",
                                f"expected true or false, got {_brief(shuffle)}")
            cv_seed = self.seed(cv.get("seed", 0), "search.cv.seed") if shuffle else None
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
                raise self.fail("search.scoring", f"names a scorer twice: {_brief(scoring_raw)}")
            scoring = tuple(scoring_raw)
        else:
            raise self.fail("search.scoring",
                            f"expected a scorer name or a list of names, got {_brief(scoring_raw)}")
        refit = d.get("refit")
        if refit is not None:
            refit = self.string(refit, "search.refit")
            if scoring is None or refit not in scoring:
                raise self.fail("search.refit", f"{_brief(refit)} is not one of the scoring names")
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
            raise self.fail("search.backend",
                            f"expected \"local\" or \"dask\", got {_brief(backend)}")
        return SearchSpec(folds=folds, shuffle=shuffle, cv_seed=cv_seed, scoring=scoring,
                          refit=refit, n_jobs=n_jobs, backend=backend)

    def preprocess(self, steps: Any) -> tuple[StepSpec, ...]:
        if not isinstance(steps, list):
            raise self.fail("preprocess", f"expected a list of steps ([[preprocess]]), "
                            f"got {_brief(steps)}")
        out: list[StepSpec] = []
        for i, step in enumerate(steps):
            key = f"preprocess[{i}]"
            step = self.table(step, key, required=True)
            self.keys(step, key, {"name", "estimator", "params"})
            name = self.string(step.get("name"), f"{key}.name")
            if not NAME.fullmatch(name) or "__" in name or name in RESERVED_STEPS:
                raise self.fail(f"{key}.name", f"{_brief(name)} is not a usable step name "
                                "(letters, digits, '_', '-', no '__', not "
                                f"{', '.join(map(repr, RESERVED_STEPS))})")
            if name in {s.name for s in out}:
                raise self.fail(f"{key}.name", f"step {_brief(name)} appears twice")
            est = self.string(step.get("estimator"), f"{key}.estimator")
            params = self.params(step.get("params"), f"{key}.params")
            out.append(StepSpec(name=name, estimator=est, params=params))
        return tuple(out)

    def params(self, d: Any, key: str) -> dict[str, Value]:
        return {self.param_name(k, key): self.value(v, f"{key}.{k}")
                for k, v in self.table(d, key).items()}

    def param_name(self, name: str, where: str) -> str:
        # Whether the estimator has the parameter is the worker's check; this one only
        # keeps names that no estimator can have (dunders, spaces, ...) out of it.
        if not PARAM.fullmatch(name):
            raise self.fail(f"{where}.{name}", f"{_brief(name)} is not a parameter name "
                            "(letters, digits and '_', starting with a letter)")
        return name

    def model(self, name: str, d: Any) -> tuple[ModelSpec, list[tuple[str, dict[str, Any]]]]:
        """Check a model type and count its candidates; its grids stay unexpanded."""
        key = f"models.{name}"
        if not NAME.fullmatch(name):
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
            size = 1
            for p, v in g.items():  # saturating: a hostile grid's product is no concern
                self.param_name(p, gkey)
                size = min(size * self.grid_size(v, f"{gkey}.{p}"), SATURATED)
            total = min(total + size, SATURATED)
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
                    raise self.fail(key, f"{{{kind} = {_brief(args)}}} does not give a finite "
                                    "number of values") from None
            else:
                n = args[2]
            if n < 1:
                raise self.fail(key, f"{{{kind} = {_brief(args)}}} gives no values")
            return int(n)
        raise self.fail(key, f"expected a list or a range, got {_show(v)}")

    def helper_args(self, kind: str, args: Any, key: str) -> None:
        if not isinstance(args, list) or not all(
                isinstance(a, (int, float)) and not isinstance(a, bool) for a in args):
            raise self.fail(key, f"{kind}: expected a list of numbers, got {_brief(args)}")
        if kind == "range":
            if not 1 <= len(args) <= 3:
                raise self.fail(key, f"range: expected [stop], [start, stop] or "
                                f"[start, stop, step], got {_brief(args)}")
            if len(args) == 3 and args[2] == 0:
                raise self.fail(key, "range: step must not be 0")
        elif len(args) != 3 or not isinstance(args[2], int) or isinstance(args[2], bool):
            raise self.fail(key, f"{kind}: expected [start, stop, count], got {_brief(args)}")
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
            raise self.fail(key, f"{kind}: expected finite numbers, got {_brief(args)}")

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
                raise self.fail(key, f"expected a finite number, got {_brief(v)}")
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
        raise self.fail(key, f"unsupported value {_brief(v)}")


def _show(v: Any) -> str:
    """A value as the job file might have written it, clipped for a one-line message."""
    if isinstance(v, dict):
        return clip("{" + ", ".join(f"{k} = {json.dumps(x)}" for k, x in v.items()) + "}")
    return clip(json.dumps(v) if isinstance(v, (str, int, float, bool)) or v is None
                 else repr(v))


def _brief(v: Any) -> str:
    """repr(v), clipped for a one-line message."""
    return clip(repr(v))


def clip(s: str, limit: int = SHOW_CHARS) -> str:
    """At most ``limit`` characters, on one line: control characters escaped."""
    if not s.isprintable():
        s = s.encode("unicode_escape").decode("ascii")
    return s if len(s) <= limit else s[:limit] + "..."


def _howmany(n: int) -> str:
    """A candidate count for a message; ``f"{n:,}"`` fails past 4,300 digits."""
    return f"{n:,}" if n < SATURATED else "more than 10^100"


def canonical(value: Any) -> str:
    """Canonical JSON: the content key of a candidate or a model spec."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
