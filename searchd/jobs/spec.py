"""The frozen job spec (:class:`JobSpec` and its parts) and the canonical JSON that keys
candidates by content. Reading and checking job files live beside it: ``ids``,
``reading``, ``validate``, ``load``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from searchd.jobs.distributions import Distribution

#: a parameter value as the job file states it: JSON-able, estimators as
#: ``{"estimator": name, "params": {...}}``
Value = Any


@dataclass(frozen=True)
class DataSpec:
    source: str
    #: keyword arguments of a ``sklearn:make_*`` generator
    params: Mapping[str, Value] = field(default_factory=dict)
    #: target column of a ``csv:`` or ``parquet:`` source
    target: str | None = None
    #: the feature columns of a ``csv:``/``parquet:`` source (None: every other column)
    features: tuple[str, ...] | None = None
    #: columns left out of the features (with ``features`` None)
    drop: tuple[str, ...] = ()
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
class SearchKind:
    """How a model type searches its grid: ``GridSearchCV`` (the default),
    ``RandomizedSearchCV`` or successive halving, with scikit-learn's arguments."""

    #: "grid" | "random" | "halving"
    kind: str = "grid"
    #: random: candidates to draw (capped at the grid's size when every value is a list)
    n_iter: int = 10
    #: random and halving: the sampler's and the subsampling's ``random_state``
    seed: int = 0
    #: halving: the arguments of HalvingGridSearchCV / HalvingRandomSearchCV
    factor: float = 3
    resource: str = "n_samples"
    #: "exhaust" | "smallest" | an integer
    min_resources: str | int = "exhaust"
    #: "auto" | an integer
    max_resources: str | int = "auto"
    aggressive_elimination: bool = False
    #: halving: candidates of the first round, "exhaust", or None for HalvingGridSearchCV
    n_candidates: str | int | None = None

    @property
    def sampled(self) -> bool:
        """Whether candidates are drawn (random, or halving with n_candidates)."""
        return self.kind == "random" or (self.kind == "halving" and self.n_candidates is not None)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    estimator: str
    params: Mapping[str, Value]
    #: expanded grids: a list of {parameter: [values]} as GridSearchCV takes them; in a
    #: random or halving search a value may be a :class:`~searchd.jobs.distributions.Distribution`
    grid: tuple[Mapping[str, list[Value] | Distribution], ...]
    #: candidates the search evaluates (halving: in its first round; 0 when that depends on
    #: the data, e.g. n_candidates = "exhaust" with max_resources = "auto")
    n_candidates: int
    search: SearchKind = SearchKind()


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


def canonical(value: Any) -> str:
    """Canonical JSON: the content key of a candidate or a model spec."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
