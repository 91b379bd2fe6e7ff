"""A job document → the checked parts of a JobSpec; errors name the file, the key and the value.

Pure Python (no scikit-learn import): the supervisor uses it to check a job's shape and count
its candidates without expanding any grid. Estimator names and parameters are checked later,
in :mod:`searchd.worker.estimators`, by the worker and by ``searchd validate``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from searchd.errors import JobSpecError
from searchd.jobs import columns
from searchd.jobs.distributions import (
    NAMES,
    distribution_problem,
    looks_like_distribution,
    parse_distribution,
)
from searchd.jobs.grids import HELPERS, GridValues
from searchd.jobs.messages import SHOW_CHARS, brief, clip, show
from searchd.jobs.spec import DataSpec, ModelSpec, SearchKind, SearchSpec, StepSpec, Value

NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
#: step names a Pipeline refuses at fit (its own arguments) or that searchd uses itself
RESERVED_STEPS = ("model", "memory", "steps", "transform_input", "verbose")
#: a scikit-learn parameter name, or names joined by '__' (``scale__with_mean``)
PARAM = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
#: numpy's random seeds: what scikit-learn accepts as ``random_state``
MAX_SEED = 2**32 - 1
#: candidate counts stop growing here (a hostile grid's true product can have a million
#: digits); any job this large is refused anyway
SATURATED = 10**100
#: a model type's keys that choose and tune its search, by the search kinds that take them
SEARCH_KEYS = {"n_iter": ("random",), "seed": ("random", "halving"),
               "factor": ("halving",), "resource": ("halving",), "min_resources": ("halving",),
               "max_resources": ("halving",), "aggressive_elimination": ("halving",),
               "n_candidates": ("halving",)}


class Validator(GridValues):
    """Checks one job document; every error names the file, the key and the value."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.multimetric = False  #: set by ``search``: halving refuses several scorers

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
            raise self.fail(key, f"expected a table, got {brief(value)}")
        return value

    def integer(self, value: Any, key: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"expected an integer, got {brief(value)}")
        return value

    def seed(self, value: Any, key: str) -> int:
        # checked here: the worker would only meet a bad one while splitting, and die
        seed = self.integer(value, key)
        if not 0 <= seed <= MAX_SEED:
            raise self.fail(key, f"expected a seed from 0 to {MAX_SEED}, got {brief(seed)}")
        return seed

    def string(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(key, f"expected a non-empty string, got {brief(value)}")
        return value

    def data(self, d: dict[str, Any], base_dir: Path) -> DataSpec:
        self.keys(d, "data", {"source", "params", "target", "test_size", "seed", "features",
                              "drop"})
        source = self.string(d.get("source"), "data.source")
        kind = source.split(":", 1)[0]
        if kind not in ("sklearn", "csv", "parquet", "npz") or ":" not in source:
            raise self.fail("data.source", f"expected sklearn:<name>, csv:<path>, "
                            f"parquet:<path> or npz:<path>, got {brief(source)}")
        params = {k: self.value(val, f"data.params.{k}")
                  for k, val in self.table(d.get("params"), "data.params").items()}
        target = d.get("target")
        if target is not None:
            target = self.string(target, "data.target")
        if kind in ("csv", "parquet") and target is None:
            raise self.fail("data.target", f"a {kind}: source needs target = \"<column>\"")
        features = None if d.get("features") is None else \
            self.columns(d["features"], "data.features", kind)
        drop = () if d.get("drop") is None else self.columns(d["drop"], "data.drop", kind)
        if features is not None and drop:
            raise self.fail("data.drop", "give features or drop, not both")
        test_size = d.get("test_size")
        if test_size is not None:
            if isinstance(test_size, bool) or not isinstance(test_size, (int, float)) or (
                    isinstance(test_size, float) and not 0 < test_size < 1) or (
                    isinstance(test_size, int) and test_size < 1):
                raise self.fail("data.test_size", f"expected a fraction in (0, 1) or a count, "
                                f"got {brief(test_size)}")
        seed = self.seed(d.get("seed", 0), "data.seed")
        return DataSpec(source=source, params=params, target=target, test_size=test_size,
                        seed=seed, base_dir=base_dir, features=features, drop=drop)

    def columns(self, v: Any, key: str, kind: str) -> tuple[str, ...]:
        """``data.features`` / ``data.drop``: column names of a csv: or parquet: file."""
        if kind not in ("csv", "parquet"):
            raise self.fail(key, "is for csv: and parquet: sources (columns of a file)")
        if not isinstance(v, list) or not v or not all(isinstance(c, str) and c for c in v):
            raise self.fail(key, f"expected a list of column names, got {brief(v)}")
        if len(set(v)) != len(v):
            raise self.fail(key, f"names a column twice: {brief(v)}")
        return tuple(v)

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
                                f"expected true or false, got {brief(shuffle)}")
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
                raise self.fail("search.scoring", f"names a scorer twice: {brief(scoring_raw)}")
            scoring = tuple(scoring_raw)
        else:
            raise self.fail("search.scoring",
                            f"expected a scorer name or a list of names, got {brief(scoring_raw)}")
        refit = d.get("refit")
        if refit is not None:
            refit = self.string(refit, "search.refit")
            if scoring is None or refit not in scoring:
                raise self.fail("search.refit", f"{brief(refit)} is not one of the scoring names")
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
                            f"expected \"local\" or \"dask\", got {brief(backend)}")
        self.multimetric = scoring is not None and len(scoring) > 1
        return SearchSpec(folds=folds, shuffle=shuffle, cv_seed=cv_seed, scoring=scoring,
                          refit=refit, n_jobs=n_jobs, backend=backend)

    def preprocess(self, steps: Any) -> tuple[StepSpec, ...]:
        if not isinstance(steps, list):
            raise self.fail("preprocess", f"expected a list of steps ([[preprocess]]), "
                            f"got {brief(steps)}")
        out: list[StepSpec] = []
        for i, step in enumerate(steps):
            key = f"preprocess[{i}]"
            step = self.table(step, key, required=True)
            self.keys(step, key, {"name", "estimator", "params"})
            name = self.string(step.get("name"), f"{key}.name")
            if not NAME.fullmatch(name) or "__" in name or name in RESERVED_STEPS:
                raise self.fail(f"{key}.name", f"{brief(name)} is not a usable step name "
                                "(letters, digits, '_', '-', no '__', not "
                                f"{', '.join(map(repr, RESERVED_STEPS))})")
            if name in {s.name for s in out}:
                raise self.fail(f"{key}.name", f"step {brief(name)} appears twice")
            est = self.string(step.get("estimator"), f"{key}.estimator")
            params = self.params(step.get("params"), f"{key}.params")
            out.append(StepSpec(name=name, estimator=est, params=params))
        return tuple(out)

    def params(self, d: Any, key: str) -> dict[str, Value]:
        # a ColumnTransformer's transformers are tables of their own (jobs/columns.py)
        return {self.param_name(k, key): columns.transformers(v, f"{key}.{k}", self)
                if k == "transformers" and columns.is_transformers(v)
                else self.value(v, f"{key}.{k}")
                for k, v in self.table(d, key).items()}

    def param_name(self, name: str, where: str) -> str:
        # Whether the estimator has the parameter is the worker's check; this one only
        # keeps names that no estimator can have (dunders, spaces, ...) out of it.
        if not PARAM.fullmatch(name):
            raise self.fail(f"{where}.{name}", f"{brief(name)} is not a parameter name "
                            "(letters, digits and '_', starting with a letter)")
        return name

    def model(self, name: str, d: Any) -> tuple[ModelSpec, list[tuple[str, dict[str, Any]]]]:
        """Check a model type and count its candidates; its grids stay unexpanded."""
        key = f"models.{name}"
        if not NAME.fullmatch(name):
            raise self.fail(key, "a model type's name uses letters, digits, '_' and '-'")
        d = self.table(d, key, required=True)
        kind = d.get("search", "grid")
        if kind not in ("grid", "random", "halving"):
            raise self.fail(f"{key}.search", f"expected \"grid\", \"random\" or \"halving\", "
                            f"got {brief(kind)}")
        for k, kinds in SEARCH_KEYS.items():
            if k in d and kind not in kinds:
                wanted = " or ".join(f'"{x}"' for x in kinds)
                raise self.fail(f"{key}.{k}", f"is for search = {wanted}, not \"{kind}\"")
        self.keys(d, key, {"estimator", "params", "grid", "search",
                           *(k for k, kinds in SEARCH_KEYS.items() if kind in kinds)})
        est = self.string(d.get("estimator"), f"{key}.estimator")
        params = self.params(d.get("params"), f"{key}.params")
        grid_raw = d.get("grid", {})
        grids = grid_raw if isinstance(grid_raw, list) else [grid_raw]
        if not grids:
            raise self.fail(f"{key}.grid", "an empty list of grids has no candidates")
        total, sampled = 0, False
        raw: list[tuple[str, dict[str, Any]]] = []
        for i, g in enumerate(grids):
            gkey = f"{key}.grid" if not isinstance(grid_raw, list) else f"{key}.grid[{i}]"
            g = self.table(g, gkey, required=True)
            size = 1
            for p, v in g.items():  # saturating: a hostile grid's product is no concern
                self.param_name(p, gkey)
                if looks_like_distribution(v) and kind == "grid" and next(iter(v)) in NAMES:
                    raise self.fail(f"{gkey}.{p}", f"a distribution ({show(v)}) needs "
                                    "search = \"random\" or \"halving\"")
                if looks_like_distribution(v) and kind != "grid":
                    problem = distribution_problem(v)
                    if problem:
                        raise self.fail(f"{gkey}.{p}", problem)
                    sampled = True
                    continue
                size = min(size * self.grid_size(v, f"{gkey}.{p}"), SATURATED)
            total = min(total + size, SATURATED)
            raw.append((gkey, g))
        search = self.search_kind(d, key, kind, sampled, {p for _, g in raw for p in g})
        n = total
        if search.kind == "random":
            n = search.n_iter if sampled else min(search.n_iter, total)
        elif search.sampled:
            n = self.first_round(search, n_all=None if sampled else total)
        spec = ModelSpec(name=name, estimator=est, params=params, grid=(), n_candidates=n,
                         search=search)
        return spec, raw

    def search_kind(self, d: dict[str, Any], key: str, kind: str, sampled: bool,
                    searched: set[str]) -> SearchKind:
        """The model type's search and its arguments, checked as scikit-learn checks them."""
        if kind == "grid":
            return SearchKind()
        seed = self.seed(d.get("seed", 0), f"{key}.seed")
        if kind == "random":
            n_iter = self.integer(d.get("n_iter", 10), f"{key}.n_iter")
            if n_iter < 1:
                raise self.fail(f"{key}.n_iter", f"expected at least 1, got {n_iter}")
            return SearchKind(kind="random", n_iter=n_iter, seed=seed)
        if self.multimetric:
            raise self.fail(f"{key}.search", "halving ranks candidates by one scorer; "
                            "search.scoring lists several (scikit-learn's halving searches "
                            "refuse multi-metric scoring too)")
        factor = d.get("factor", 3)
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or \
                not math.isfinite(factor) or factor <= 1:
            raise self.fail(f"{key}.factor", f"expected a number above 1, got {brief(factor)}")
        resource = self.string(d.get("resource", "n_samples"), f"{key}.resource")
        if resource != "n_samples":
            self.param_name(resource, f"{key}.resource")
            if resource in searched:
                raise self.fail(f"{key}.resource", f"{brief(resource)} is searched by the grid; "
                                "the resource must be another parameter")
        n_candidates = d.get("n_candidates", "exhaust" if sampled else None)
        if n_candidates is not None and n_candidates != "exhaust":
            n_candidates = self.integer(n_candidates, f"{key}.n_candidates")
            if n_candidates < 1:
                raise self.fail(f"{key}.n_candidates",
                                f"expected \"exhaust\" or at least 1, got {n_candidates}")
        default_min = "smallest" if n_candidates is not None else "exhaust"
        min_r = d.get("min_resources", default_min)
        if min_r not in ("exhaust", "smallest"):
            min_r = self.integer(min_r, f"{key}.min_resources")
            if min_r < 1:
                raise self.fail(f"{key}.min_resources", f"expected \"exhaust\", \"smallest\" "
                                f"or at least 1, got {min_r}")
        max_r = d.get("max_resources", "auto")
        if max_r != "auto":
            max_r = self.integer(max_r, f"{key}.max_resources")
            if max_r < 1:
                raise self.fail(f"{key}.max_resources",
                                f"expected \"auto\" or at least 1, got {max_r}")
        elif resource != "n_samples":
            raise self.fail(f"{key}.max_resources", f"resource = {brief(resource)} needs an "
                            "integer max_resources (\"auto\" is the number of samples)")
        if isinstance(min_r, int) and isinstance(max_r, int) and min_r > max_r:
            raise self.fail(f"{key}.min_resources",
                            f"{min_r} is more than max_resources ({max_r})")
        if min_r == "exhaust" and n_candidates == "exhaust":
            raise self.fail(f"{key}.n_candidates", "n_candidates and min_resources cannot "
                            "both be \"exhaust\"")
        aggressive = d.get("aggressive_elimination", False)
        if not isinstance(aggressive, bool):
            raise self.fail(f"{key}.aggressive_elimination",
                            f"expected true or false, got {brief(aggressive)}")
        return SearchKind(kind="halving", seed=seed, factor=factor, resource=resource,
                          min_resources=min_r, max_resources=max_r,
                          aggressive_elimination=aggressive, n_candidates=n_candidates)

    @staticmethod
    def first_round(search: SearchKind, n_all: int | None) -> int:
        """A random halving's first-round candidates, when the data does not decide them
        (``n_all``: the grid's size when every value is a list); else 0."""
        n = search.n_candidates
        if n == "exhaust":
            min_r = 1 if search.min_resources == "smallest" and \
                search.resource != "n_samples" else search.min_resources
            if not (isinstance(search.max_resources, int) and isinstance(min_r, int)):
                return 0
            n = search.max_resources // min_r
        assert isinstance(n, int)
        return n if n_all is None else min(n, n_all)

    def expand(self, spec: ModelSpec, raw: list[tuple[str, dict[str, Any]]]) -> ModelSpec:
        sampled = spec.search.kind != "grid"
        grid = tuple({p: parse_distribution(v) if sampled and looks_like_distribution(v)
                      else self.grid_values(v, f"{gkey}.{p}") for p, v in g.items()}
                     for gkey, g in raw)
        return replace(spec, grid=grid)

    def value(self, v: Any, key: str) -> Value:
        """One parameter value: a scalar, None, a list, or an estimator."""
        if v is None or isinstance(v, (bool, int, str)):
            return v
        if isinstance(v, float):
            if not math.isfinite(v):
                raise self.fail(key, f"expected a finite number, got {brief(v)}")
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
                            f"got {show(v)}")
        raise self.fail(key, f"unsupported value {brief(v)}")
