"""Spec → content-keyed result rows, CV splits and scorers.

Candidates come from the model type's search strategy (:mod:`searchd.worker.strategy`),
batch by batch; each is keyed by the canonical JSON of its parameters, and its row in the
results is found by that key, whatever order or batch it comes in.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import check_scoring
from sklearn.model_selection import KFold, ParameterGrid, StratifiedKFold
from sklearn.utils.multiclass import type_of_target

from searchd.jobs.spec import JobSpec, ModelSpec
from searchd.state.results import ModelResults
from searchd.worker.data import STRATIFIED
from searchd.worker.strategy import Batch, content_key, strategy_for

Split = tuple[np.ndarray, np.ndarray]

__all__ = ["Scoring", "Split", "add_batch", "candidates", "content_key", "empty_results",
           "model_key", "new_results", "scorer_names", "splits"]


def candidates(model: ModelSpec) -> list[dict[str, Any]]:
    """The model type's whole grid, in ``ParameterGrid``'s order (for tools and benchmarks:
    the worker takes its candidates from the strategy)."""
    return list(ParameterGrid([dict(g) for g in model.grid]))


def model_key(job: JobSpec, model: ModelSpec, data_digest: str) -> str:
    """What a model type's results depend on besides the candidate itself."""
    return content_key({
        "estimator": model.estimator, "params": dict(model.params),
        "preprocess": [[s.name, s.estimator, dict(s.params)] for s in job.preprocess],
        "data": data_digest, "cv": [job.search.folds, job.search.shuffle, job.search.cv_seed],
        "scoring": job.search.scoring,
    })


def scorer_names(job: JobSpec) -> tuple[str, ...]:
    return job.search.scoring or ("score",)


def empty_results(job: JobSpec, model: ModelSpec, data_digest: str) -> ModelResults:
    """A model type's results with no rows yet."""
    names = scorer_names(job)
    return ModelResults.empty(model.name, model_key(job, model, data_digest), [], [], names,
                              job.search.refit or names[0], job.search.folds)


def add_batch(res: ModelResults, batch: list[dict[str, Any]]) -> list[int]:
    """The rows of a strategy's batch, added by content key where new (a :class:`Batch`
    names its rows' keys, and a halving round its round)."""
    if not isinstance(batch, Batch):
        return res.add_candidates([content_key(c) for c in batch], batch)
    rows = res.add_candidates(batch.keys, batch)
    if batch.round is not None and batch.n_resources is not None:
        res.set_rounds(rows, batch.round, batch.n_resources)
    return rows


def new_results(job: JobSpec, model: ModelSpec, data_digest: str) -> ModelResults:
    """A model type's results with its strategy's first batch as rows (all pending)."""
    res = empty_results(job, model, data_digest)
    add_batch(res, strategy_for(job, model).next_batch(res) or [])
    return res


def splits(job: JobSpec, X: np.ndarray, y: np.ndarray, classification: bool) -> list[Split]:
    """Deterministic CV splits, stratified for classifiers (as check_cv makes them)."""
    s = job.search
    # as check_cv does: stratified for a classifier on binary or multiclass labels only
    stratify = classification and type_of_target(y) in STRATIFIED
    cls = StratifiedKFold if stratify else KFold
    cv = cls(n_splits=s.folds, shuffle=s.shuffle, random_state=s.cv_seed if s.shuffle else None)
    return [(np.asarray(tr), np.asarray(te)) for tr, te in cv.split(X, y)]


class Scoring:
    """(estimator, X, y) → {scorer name: score}, built with scikit-learn's check_scoring.

    A class rather than a closure so it pickles into joblib's worker processes.
    """

    def __init__(self, job: JobSpec, template: Any) -> None:
        self.names = scorer_names(job)
        self.multi = job.search.multimetric
        scoring = list(self.names) if self.multi else job.search.scoring and self.names[0]
        self.scorer = check_scoring(template, scoring=scoring)

    def __call__(self, est: Any, X: Any, y: Any) -> dict[str, float]:
        if self.multi:
            return dict(self.scorer(est, X, y))
        return {self.names[0]: self.scorer(est, X, y)}
