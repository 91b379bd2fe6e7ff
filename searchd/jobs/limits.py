"""The daemon's bounds on what one job may ask for: candidates, fits, data, priority.

Pure Python (no scikit-learn, no numpy): the supervisor checks a job against them before
anything is frozen or allocated, and the worker and ``searchd validate`` check the data
against :attr:`JobLimits.max_data_bytes` before it is read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

#: bytes one value of X or y takes once loaded (float64, int64, the split indices)
CELL_BYTES = 8


class _HasLimits(Protocol):
    @property
    def max_candidates(self) -> int: ...
    @property
    def max_fits(self) -> int: ...
    @property
    def max_data_bytes(self) -> int: ...
    @property
    def max_priority(self) -> int: ...


@dataclass(frozen=True)
class JobLimits:
    """The bounds a job file is checked against (the daemon's settings of the same names)."""

    max_candidates: int = 100_000
    #: candidates × folds
    max_fits: int = 1_000_000
    #: a csv: file's size, and the loaded arrays (X, y, the CV splits' row indices)
    max_data_bytes: int = 100 * 2**20
    #: |priority| above this is clipped (the job still runs, at this priority)
    max_priority: int = 100

    @classmethod
    def of(cls, settings: _HasLimits) -> JobLimits:
        return cls(max_candidates=settings.max_candidates, max_fits=settings.max_fits,
                   max_data_bytes=settings.max_data_bytes, max_priority=settings.max_priority)

    @classmethod
    def candidates_only(cls, max_candidates: int) -> JobLimits:
        """Only a candidate bound (callers that predate the other limits)."""
        big = 10**100
        return cls(max_candidates=max_candidates, max_fits=big, max_data_bytes=big,
                   max_priority=big)


def effective_priority(priority: int, max_priority: int) -> int:
    """The priority a job runs at: its file's, clipped to [-max_priority, max_priority]."""
    return max(-max_priority, min(max_priority, priority))


def size(n: int | float) -> str:
    """Bytes for a message: ``128 MB (128,000,000 bytes)``."""
    if n >= 10**100:
        return "more than 10^100 bytes"
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit} ({int(n):,} bytes)"
    return f"{int(n):,} bytes"


# --- make_* generators ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Generator:
    """How big the arrays of one ``sklearn.datasets.make_*`` generator get, from its
    parameters (defaults as scikit-learn 1.x has them)."""

    n_samples: int = 100
    #: n_features default; a fixed count when ``features_param`` is None
    n_features: int = 20
    features_param: str | None = "n_features"
    #: columns of y: a fixed count, or the parameter that gives it (with its default)
    y_columns: tuple[str | None, int] = (None, 1)
    #: further arrays: (parameter, default) pairs whose product × n_features is allocated
    #: too (centres, coefficients, per-class probabilities)
    extra: tuple[tuple[str, int], ...] = ()


#: the generators that give (X, y), the only ones a job may name
GENERATORS: dict[str, Generator] = {
    "make_classification": Generator(extra=(("n_classes", 2), ("n_clusters_per_class", 2))),
    "make_blobs": Generator(n_features=2, extra=(("centers", 3),)),
    "make_circles": Generator(n_features=2, features_param=None),
    "make_moons": Generator(n_features=2, features_param=None),
    "make_friedman1": Generator(n_features=10),
    "make_friedman2": Generator(n_features=4, features_param=None),
    "make_friedman3": Generator(n_features=4, features_param=None),
    "make_gaussian_quantiles": Generator(n_features=2),
    "make_hastie_10_2": Generator(n_samples=12000, n_features=10, features_param=None),
    "make_multilabel_classification": Generator(y_columns=("n_classes", 5),
                                                extra=(("n_classes", 5),)),
    "make_regression": Generator(n_features=100, y_columns=("n_targets", 1),
                                 extra=(("n_targets", 1),)),
    "make_s_curve": Generator(n_features=3, features_param=None),
    "make_swiss_roll": Generator(n_features=3, features_param=None),
    "make_sparse_uncorrelated": Generator(n_features=10),
}


def _count(v: Any) -> int | None:
    """A count parameter as scikit-learn reads it: an int, or a list of ints (per class or
    centre: their sum); None when it is neither (scikit-learn's own check refuses it)."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return max(v, 0)
    if isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in v):
        return sum(max(x, 0) for x in v)
    return None


def generator_bytes(name: str, params: Mapping[str, Any]) -> int | None:
    """The bytes ``sklearn:<name>`` with ``params`` allocates, at least; None if ``name`` is
    not a generator of (X, y). Counts that are no ints are left to scikit-learn's checks,
    which refuse them before allocating."""
    g = GENERATORS.get(name)
    if g is None:
        return None

    def get(param: str, default: int) -> int:
        c = _count(params.get(param, default))
        return default if c is None else c

    n = get("n_samples", g.n_samples)
    if name == "make_blobs" and isinstance(params.get("n_samples"), list):
        n_centres = len(params["n_samples"])  # one count per centre
    else:
        n_centres = get("centers", 3) if name == "make_blobs" else 0
    features = get(g.features_param, g.n_features) if g.features_param else g.n_features
    y_param, y_default = g.y_columns
    y_cols = get(y_param, y_default) if y_param else y_default
    cells = n * (features + y_cols)
    for param, default in g.extra:
        k = n_centres if param == "centers" else get(param, default)
        cells += k * features
    if name == "make_classification":  # its class means are 2^n_informative corners at most
        cells += n * features  # plus the shuffled copy of X it makes
    return cells * CELL_BYTES


def split_bytes(folds: int, n_train: int) -> int:
    """The CV splits' row indices a job keeps: every fold lists each training row once
    (in its train or its test part)."""
    return folds * n_train * CELL_BYTES


def too_many_fits(n_candidates: int, folds: int, limits: JobLimits) -> str | None:
    """Why candidates × folds is refused, or None."""
    fits = n_candidates * folds
    if fits <= limits.max_fits:
        return None
    return (f"{_n(n_candidates)} candidates × {_n(folds)} folds = {_n(fits)} fits, more "
            f"than max_fits ({limits.max_fits:,})")


def _n(x: int) -> str:
    """A count for a message; ``f"{x:,}"`` fails past 4,300 digits."""
    return f"{x:,}" if x < 10**100 else "more than 10^100"


__all__ = ["CELL_BYTES", "GENERATORS", "JobLimits", "effective_priority", "generator_bytes",
           "size", "split_bytes", "too_many_fits"]
