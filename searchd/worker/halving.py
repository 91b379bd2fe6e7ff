"""Successive halving, round by round, as ``HalvingGridSearchCV`` and
``HalvingRandomSearchCV`` run it: the same arithmetic (scikit-learn's documented
``n_required_iterations``, ``n_possible_iterations``, ``min_resources_``, ...), the same
candidates kept after each round (the best ``ceil(n / factor)``, in scikit-learn's order),
and, for ``resource = "n_samples"``, the same subsample of each fold (public
``sklearn.utils.resample`` without replacement, with the search's seed, train and test alike).

The strategy keeps no state a restart would lose: round 0 is the grid (or the draw stored in
the checkpoint), and each later round is computed from the rows of the round before it.
A round's rows are keyed by their parameters, the round and its resources.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from math import ceil, floor, log
from typing import Any

import numpy as np
from sklearn.base import is_classifier
from sklearn.model_selection import ParameterGrid
from sklearn.utils import resample

from searchd.errors import JobSpecError
from searchd.jobs.spec import JobSpec, ModelSpec
from searchd.state.results import ModelResults
from searchd.worker.estimators import grid_key
from searchd.worker.strategy import Batch, Candidate, all_lists, draw

Split = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class HalvingPlan:
    """A halving search's rounds, with scikit-learn's attribute names (stored as a dict in
    the results, so that ``load_results`` and ``status`` can show them)."""

    resource: str
    factor: float
    n_samples: int  #: of the training set: what "auto" and the subsample fractions are of
    seed: int
    min_resources_: int
    max_resources_: int
    n_required_iterations_: int
    n_possible_iterations_: int
    n_iterations_: int
    n_candidates_: list[int]
    n_resources_: list[int]

    @property
    def fits_per_fold(self) -> int:
        return sum(self.n_candidates_)


def resources(model: ModelSpec, y: np.ndarray, classifier: bool, n_splits: int) -> tuple[Any, Any]:
    """``min_resources_`` and ``max_resources_`` before the candidates are known (the
    arithmetic of BaseSuccessiveHalving._check_input_parameters)."""
    s = model.search
    min_r: Any = s.min_resources
    if min_r in ("smallest", "exhaust"):
        if s.resource == "n_samples":
            min_r = n_splits * 2  # scikit-learn's "magic factor"
            if classifier:
                min_r *= np.unique(y).shape[0]
        else:
            min_r = 1
    max_r: Any = len(y) if s.max_resources == "auto" else s.max_resources
    return min_r, max_r


def plan(model: ModelSpec, n_candidates: int, min_r: Any, max_r: Any, n_samples: int,
         where: str) -> HalvingPlan:
    """The rounds for ``n_candidates`` first-round candidates (BaseSuccessiveHalving's
    ``_run_search``, expression for expression: a float factor gives what it gives there)."""
    s = model.search
    if min_r > max_r:
        raise JobSpecError(f"{where}.min_resources: min_resources_={min_r} is greater than "
                           f"max_resources_={max_r}")
    if n_candidates < 1:
        raise JobSpecError(f"{where}: the search has no candidates")
    n_required = 1 + floor(log(n_candidates, s.factor))
    if s.min_resources == "exhaust":
        min_r = max(min_r, max_r // s.factor ** (n_required - 1))
    n_possible = 1 + floor(log(max_r // min_r, s.factor))
    n_iterations = n_required if s.aggressive_elimination else min(n_possible, n_required)
    n_res, n_cand = [], []
    n = n_candidates
    for itr in range(n_iterations):
        power = itr
        if s.aggressive_elimination:
            power = max(0, itr - n_required + n_possible)
        n_res.append(min(int(s.factor ** power * min_r), max_r))
        n_cand.append(n)
        n = min(n, ceil(n / s.factor))
    return HalvingPlan(resource=s.resource, factor=s.factor, n_samples=n_samples, seed=s.seed,
                       min_resources_=min_r, max_resources_=max_r,
                       n_required_iterations_=n_required, n_possible_iterations_=n_possible,
                       n_iterations_=n_iterations, n_candidates_=n_cand, n_resources_=n_res)


def check_resource(job: JobSpec, model: ModelSpec, template: Any) -> None:
    resource = model.search.resource
    if resource == "n_samples":
        return
    steps = {s.name for s in job.preprocess}
    if grid_key(resource, steps) not in template.get_params(deep=True):
        raise JobSpecError(f"{job.path}: models.{model.name}.resource: {resource!r} is not a "
                           f"parameter of {model.estimator}")


def first_candidates(job: JobSpec, model: ModelSpec, min_r: Any, max_r: Any,
                     results: ModelResults, resumed: ModelResults | None) -> list[Candidate]:
    """Round 0: the whole grid (HalvingGridSearchCV), or the sampler's draw
    (HalvingRandomSearchCV; ``n_candidates = "exhaust"`` draws max_resources_ // min_resources_)."""
    s = model.search
    if not s.sampled:
        return list(ParameterGrid([dict(g) for g in model.grid]))
    n = max_r // min_r if s.n_candidates == "exhaust" else s.n_candidates
    assert isinstance(n, int)
    return draw(job, model, n, results, resumed)


def plan_for(job: JobSpec, model: ModelSpec, template: Any, y: np.ndarray) -> HalvingPlan:
    """The plan ``searchd validate`` prints (draws nothing: only the count matters)."""
    check_resource(job, model, template)
    min_r, max_r = resources(model, y, is_classifier(template), job.search.folds)
    s = model.search
    n = len(ParameterGrid([dict(g) for g in model.grid])) if all_lists(model) else None
    if s.sampled:
        want = max_r // min_r if s.n_candidates == "exhaust" else s.n_candidates
        assert isinstance(want, int)
        n = want if n is None else min(want, n)
    assert n is not None
    return plan(model, n, min_r, max_r, len(y), f"{job.path}: models.{model.name}")


def top_k(results: ModelResults, rows: list[int], k: int) -> list[int]:
    """scikit-learn's ``_top_k``: the rows of the ``k`` best mean scores of a round, worst
    kept first (np.argsort with the NaNs moved to the front, as there)."""
    scores = np.average(results.scores[results.refit][rows], axis=1)
    order = np.roll(np.argsort(scores), np.count_nonzero(np.isnan(scores)))
    return [rows[i] for i in order[-k:]]


class HalvingStrategy:
    """One batch per round; see the module's docstring."""

    def __init__(self, job: JobSpec, model: ModelSpec, template: Any, y: np.ndarray,
                 resumed: ModelResults | None) -> None:
        check_resource(job, model, template)
        self.job, self.model, self.resumed = job, model, resumed
        self.min_r, self.max_r = resources(model, y, is_classifier(template), job.search.folds)
        self.n_samples = len(y)
        self.plan: HalvingPlan | None = None
        self.previous: Batch | None = None

    def next_batch(self, results: ModelResults) -> list[Candidate] | None:
        s = self.model.search
        if self.previous is None:
            candidates = first_candidates(self.job, self.model, self.min_r, self.max_r,
                                          results, self.resumed)
            self.plan = plan(self.model, len(candidates), self.min_r, self.max_r,
                             self.n_samples, f"{self.job.path}: models.{self.model.name}")
            results.halving = asdict(self.plan)
            itr = 0
        else:
            assert self.plan is not None
            itr = (self.previous.round or 0) + 1
            if itr >= self.plan.n_iterations_:
                return None
            rows = [results.row_of(k) for k in self.previous.keys]
            assert all(r is not None and results.done[r].all() for r in rows), \
                "a halving round asked for before the previous one was done"
            kept = top_k(results, [r for r in rows if r is not None],
                         ceil(len(rows) / s.factor))
            candidates = [dict(results.params[r]) for r in kept]
        n_res = self.plan.n_resources_[itr]
        if s.resource != "n_samples":
            for c in candidates:
                c[s.resource] = n_res
        batch = Batch(candidates, {"round": itr, "n_resources": n_res}, itr, n_res)
        self.previous = batch
        return batch


def round_split(split: Split, n_resources: int, n_samples: int, seed: int) -> Split:
    """A fold's subsample for a round of ``n_resources`` samples (scikit-learn's
    ``_SubsampleMetaSplitter`` with ``subsample_test=True``, through public ``resample``)."""
    fraction = n_resources / n_samples
    train, test = split
    return (resample(train, replace=False, random_state=seed,
                     n_samples=int(fraction * len(train))),
            resample(test, replace=False, random_state=seed,
                     n_samples=int(fraction * len(test))))


def task_split(results: ModelResults, i: int, split: Split) -> Split | None:
    """The (train, test) indices of row ``i``'s tasks when not its fold's: a halving round
    on ``n_samples`` below all of them."""
    h = results.halving
    if h is None or h["resource"] != "n_samples" or results.row_resources is None:
        return None
    # even a round on every sample trains on a permutation of the fold, as scikit-learn's
    return round_split(split, results.row_resources[i], h["n_samples"], h["seed"])
