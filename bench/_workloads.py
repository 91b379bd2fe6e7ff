"""The issue-6 workloads as job files, full size and ``--quick`` size.

Every workload uses data that ships with scikit-learn, 5 stratified folds, the estimator's
default score and no hold-out split, so that searchd and ``GridSearchCV`` do exactly the
same work: every (candidate, fold) fit and score, then one refit of the best candidate.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Workload:
    name: str
    #: what it is, for the report
    about: str
    #: the job file (TOML), full size and --quick size
    full: str
    quick: str
    #: run GridSearchCV(n_jobs=2) too (False: it is known to be hopeless, DESIGN.md §6)
    reference_n_jobs_2: bool = True

    def text(self, quick: bool) -> str:
        return self.quick if quick else self.full

    def write(self, folder: Path, quick: bool) -> Path:
        path = folder / f"{self.name}.toml"
        path.write_text(self.text(quick))
        return path


def _job(source: str, models: str) -> str:
    return f'[data]\nsource = "{source}"\n\n[search]\ncv = 5\n\n{models.strip()}\n'


def _tree(depth: int, leaf: int, max_features: str) -> str:
    return _job("sklearn:iris", f"""
[models.tree]
estimator = "DecisionTreeClassifier"
params = {{ random_state = 0 }}
[models.tree.grid]
max_depth = {{ range = [1, {depth + 1}] }}
min_samples_leaf = {{ range = [1, {leaf + 1}] }}
max_features = {max_features}
""")


TINY = Workload(
    "tiny", "iris, KNeighborsClassifier, 50 candidates x 5 folds = 250 fits of ~1 ms",
    full=_job("sklearn:iris", """
[models.knn]
estimator = "KNeighborsClassifier"
grid = { n_neighbors = { range = [1, 26] }, weights = ["uniform", "distance"] }
"""),
    quick=_job("sklearn:iris", """
[models.knn]
estimator = "KNeighborsClassifier"
grid = { n_neighbors = { range = [1, 26] }, weights = ["uniform", "distance"] }
"""))

MEDIUM = Workload(
    "medium", "digits, SVC over C x gamma (30 candidates) and RandomForest over n_estimators "
    "(20), 250 fits of 20-400 ms",
    full=_job("sklearn:digits", """
[models.svc]
estimator = "SVC"
grid = { C = { logspace = [-1, 2, 6] }, gamma = { logspace = [-4, -2, 5] } }

[models.rf]
estimator = "RandomForestClassifier"
params = { random_state = 0, n_jobs = 1 }
grid = { n_estimators = { range = [5, 105, 5] } }
"""),
    quick=_job("sklearn:digits", """
[models.svc]
estimator = "SVC"
grid = { C = { logspace = [-1, 1, 2] }, gamma = { logspace = [-4, -3, 2] } }

[models.rf]
estimator = "RandomForestClassifier"
params = { random_state = 0, n_jobs = 1 }
grid = { n_estimators = [10, 30] }
"""))

MANY = Workload(
    "many", "iris, DecisionTreeClassifier over max_depth x min_samples_leaf x max_features, "
    "5,000 candidates x 5 folds = 25,000 fits of ~1 ms",
    full=_tree(50, 20, "[1, 2, 3, 4, { none = true }]"),
    quick=_tree(10, 2, "[1, 2, 3, 4, { none = true }]"))  # 500 fits

BIG = Workload(
    "big", "iris, DecisionTreeClassifier, 20,000 candidates x 5 folds = 100,000 stored "
    "(candidate, fold) results",
    full=_tree(100, 50, "[1, 2, 3, 4]"),
    quick=_tree(25, 10, "[1, 2, 3, 4]"),  # 5,000 results
    reference_n_jobs_2=False)

#: for the kill-waste figure: fits of ~20-300 ms for about two minutes on 2 cores
KILL = _job("sklearn:digits", """
[models.svc]
estimator = "SVC"
grid = { C = { logspace = [-1, 2, 20] }, gamma = { logspace = [-4, -2, 10] } }
""")

#: --quick's kill job: ~100 fits, about 10 s on 2 cores
KILL_QUICK = _job("sklearn:digits", """
[models.svc]
estimator = "SVC"
grid = { C = { logspace = [-1, 2, 5] }, gamma = { logspace = [-4, -2, 4] } }
""")

#: a job that runs for minutes (supervisor footprint while a job runs)
LONG = KILL

PAIRED = {w.name: w for w in (TINY, MEDIUM, MANY)}

#: issue 15: the seed document's two grids on digits, each its own job (so that each has
#: its own ratio): the forest runs as warm-start chains, k-NN on the plain path
SEED_FOREST = Workload(
    "seed-forest", "digits, RandomForestClassifier(random_state=0) over n_estimators 20..147 "
    "step 3: 43 candidates x 5 folds = 215 fits (searchd: 5 warm-start chains)",
    full=_job("sklearn:digits", """
[models.rf]
estimator = "RandomForestClassifier"
params = { random_state = 0 }
grid = { n_estimators = { range = [20, 150, 3] } }
"""),
    quick=_job("sklearn:digits", """
[models.rf]
estimator = "RandomForestClassifier"
params = { random_state = 0 }
grid = { n_estimators = { range = [20, 60, 10] } }
"""))
SEED_KNN = Workload(
    "seed-knn", "digits, KNeighborsClassifier over n_neighbors 1..99: 99 candidates x 5 folds "
    "= 495 fits",
    full=_job("sklearn:digits", """
[models.knn]
estimator = "KNeighborsClassifier"
grid = { n_neighbors = { range = [1, 100] } }
"""),
    quick=_job("sklearn:digits", """
[models.knn]
estimator = "KNeighborsClassifier"
grid = { n_neighbors = { range = [1, 10] } }
"""))
SEED = {w.name: w for w in (SEED_FOREST, SEED_KNN)}

def _shared(extra_step: str, components: int, grid: str) -> str:
    """Scale, an optional extra step, PCA, then an SVC over ``grid``: issue 15's shared
    preprocessing workloads."""
    return f"""
[[preprocess]]
name = "scale"
estimator = "StandardScaler"
{extra_step}
[[preprocess]]
name = "pca"
estimator = "PCA"
params = {{ n_components = {components}, svd_solver = "randomized", random_state = 0 }}

[models.svc]
estimator = "SVC"
grid = {grid}
"""


SVC_GRID = "{ C = { logspace = [-1, 2, 6] }, gamma = { logspace = [-4, -2, 5] } }"
SVC_QUICK = "{ C = [1.0, 10.0], gamma = [0.001] }"
POLY = """
[[preprocess]]
name = "poly"
estimator = "PolynomialFeatures"
params = { degree = 2 }
"""

#: issue 15's shared preprocessing: one scale + PCA per fold for all 30 SVC candidates
SHARED_PCA = Workload(
    "shared-pca", "digits, StandardScaler + PCA(40, randomized, random_state=0) + SVC over "
    "C (6) x gamma (5): 30 candidates x 5 folds = 150 fits (searchd: 5 preprocessing fits)",
    full=_job("sklearn:digits", _shared("", 40, SVC_GRID)),
    quick=_job("sklearn:digits", _shared("", 40, SVC_QUICK)))
#: the same SVC grid behind a costlier shared step: degree-2 features (2,145 columns) before
#: the PCA, so the preprocessing outweighs the SVC, as in pipelines with a feature expansion
SHARED_POLY = Workload(
    "shared-poly", "digits, StandardScaler + PolynomialFeatures(2) + PCA(40, randomized, "
    "random_state=0) + SVC over C (6) x gamma (5): 150 fits (searchd: 5 preprocessing fits)",
    full=_job("sklearn:digits", _shared(POLY, 40, SVC_GRID)),
    quick=_job("sklearn:digits", _shared(POLY, 20, SVC_QUICK)))
ALL = {**PAIRED, BIG.name: BIG}


# --- issue 13: random search and successive halving ---------------------------------------------

def _toml(v: object) -> str:
    """A Python value as a job-file value: None is {none = true}, ("loguniform", a, b) a
    scipy.stats distribution, a list a list."""
    if v is None:
        return "{ none = true }"
    if isinstance(v, tuple):
        return f"{{ {v[0]} = [{', '.join(_toml(a) for a in v[1:])}] }}"
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    if isinstance(v, str):
        return f'"{v}"'
    return repr(v)


@dataclass(frozen=True)
class StrategyWorkload:
    """One model type on digits, 5 stratified folds, searched with ``search = <kind>``.

    The grid is Python: lists, or ``(name, *args)`` for a ``scipy.stats`` distribution. The
    job file and the scikit-learn reference (bench/_strategies.py) are both written from it,
    so neither side is built with the other's code.
    """

    name: str
    about: str
    estimator: str
    params: dict[str, object]
    #: the grid and the search keys (n_iter, factor, seed ...), full size and --quick size
    grid: dict[str, object]
    grid_quick: dict[str, object]
    keys: dict[str, object]
    keys_quick: dict[str, object]
    kind: str = "random"  # "random" | "halving" | "grid"
    source: str = "sklearn:digits"
    model: str = "m"
    reference_n_jobs_2: bool = True

    def spec(self, quick: bool) -> tuple[dict[str, object], dict[str, object]]:
        return (self.grid_quick, self.keys_quick) if quick else (self.grid, self.keys)

    def text(self, quick: bool, kind: str | None = None) -> str:
        grid, keys = self.spec(quick)
        kind = kind or self.kind
        lines = [f'estimator = "{self.estimator}"']
        if self.params:
            lines.append("params = { " + ", ".join(f"{k} = {_toml(v)}"
                                                    for k, v in self.params.items()) + " }")
        if kind != "grid":
            lines.append(f'search = "{kind}"')
            lines += [f"{k} = {_toml(v)}" for k, v in keys.items()]
        lines.append(f"[models.{self.model}.grid]")
        lines += [f"{k} = {_toml(v)}" for k, v in grid.items()]
        return _job(self.source, f"[models.{self.model}]\n" + "\n".join(lines))

    def write(self, folder: Path, quick: bool, kind: str | None = None) -> Path:
        path = folder / f"{self.name}{'' if kind in (None, self.kind) else '-' + kind}.toml"
        path.write_text(self.text(quick, kind))
        return path


RANDOM = StrategyWorkload(
    "random", "digits, SVC, C and gamma log-uniform, n_iter 15 x 5 folds = 75 fits of ~200 ms",
    estimator="SVC", params={},
    grid={"C": ("loguniform", 0.1, 100.0), "gamma": ("loguniform", 1e-4, 1e-2)},
    grid_quick={"C": ("loguniform", 0.1, 100.0), "gamma": ("loguniform", 1e-4, 1e-2)},
    keys={"n_iter": 15, "seed": 0}, keys_quick={"n_iter": 3, "seed": 0})

_C8 = [0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0]
_G8 = [1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2]

HALVING = StrategyWorkload(
    "halving", "digits, SVC, C (8) x gamma (8) on n_samples, factor 3: rounds of 64, 22 and 8 "
    "candidates on 100, 300 and 900 samples (470 fits)",
    estimator="SVC", params={}, kind="halving",
    grid={"C": _C8, "gamma": _G8},
    grid_quick={"C": _C8[2:5], "gamma": _G8[3:6]},
    keys={"factor": 3, "seed": 0}, keys_quick={"factor": 3, "seed": 0})

#: halving against searchd's own full grid: 500 candidates (quick: 40)
HALVING_GRID = StrategyWorkload(
    "halving-grid", "digits, DecisionTree, max_depth (10) x min_samples_leaf (5) x max_features "
    "(5) x criterion (2) = 500 candidates: full grid (2,500 fits) vs halving on n_samples, "
    "factor 3 (500, 167, 56 candidates on 100, 300, 900 samples)",
    estimator="DecisionTreeClassifier", params={"random_state": 0}, kind="halving",
    grid={"max_depth": list(range(2, 12)), "min_samples_leaf": [1, 2, 4, 8, 16],
          "max_features": ["sqrt", "log2", 0.25, 0.5, None], "criterion": ["gini", "entropy"]},
    grid_quick={"max_depth": list(range(2, 12)), "min_samples_leaf": [1, 4],
                "max_features": ["sqrt", None], "criterion": ["gini"]},
    keys={"factor": 3, "seed": 0}, keys_quick={"factor": 3, "seed": 0})

STRATEGY = {w.name: w for w in (RANDOM, HALVING)}
