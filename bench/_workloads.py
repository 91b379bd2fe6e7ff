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
ALL = {**PAIRED, BIG.name: BIG}
