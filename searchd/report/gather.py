"""From the read API (``load_results``, ``read_summary``) to the plain data the report shows.

Only the public read API is used, so the checkpoint's internals can change under it.
:func:`from_results` is pure (the benchmark feeds it synthetic results).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from searchd.errors import NotFoundError
from searchd.report.axes import (
    EdgeWarning,
    ParamAxis,
    best_per_value,
    build_axes,
    edge_warning,
)
from searchd.report.jobfile import UNKNOWN, JobFacts, read_job_facts
from searchd.report.stats import Comparison, corrected_ttest, split_sizes
from searchd.report.timeline import TimelinePoint, read_timeline
from searchd.state.read import JobResults, ModelSearch, load_results
from searchd.state.records import JobRecord, JobState, read_summary
from searchd.state.results import DONE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelView:
    """One model type's search, as arrays over its candidates."""

    name: str
    state: str
    #: the cv_results_ suffix of the scorer that picks the best ("score" with one scorer)
    scorer: str
    params: list[dict[str, Any]]
    mean: np.ndarray
    std: np.ndarray
    #: (candidates, folds) test scores; NaN where a fit failed or has not run
    folds: np.ndarray
    rank: np.ndarray
    fit_time: np.ndarray
    axes: list[ParamAxis]
    #: the best candidate (the current best while the type runs; None before any result)
    best: int | None
    test_score: dict[str, float] | None
    fits_done: int
    fits_total: int
    errors: int
    #: the search strategy ("grid" | "random" | "halving"), for strategy-specific sections
    search: str = "grid"
    edges: list[EdgeWarning] = field(default_factory=list)
    #: the parameters drawn from a distribution (random and halving searches)
    drawn: frozenset[str] = frozenset()
    #: halving: each row's round (``iter``; -1 before it is known) and resources
    rounds: np.ndarray | None = None
    resources: np.ndarray | None = None
    #: halving: the plan (``n_candidates_``, ``n_resources_``, ``resource``, ``factor``, ...)
    halving: dict[str, Any] | None = None

    @property
    def best_score(self) -> float | None:
        return None if self.best is None else float(self.mean[self.best])

    @property
    def evaluated(self) -> np.ndarray:
        """Indices of the candidates with a mean score, best rank first."""
        idx = np.flatnonzero(np.isfinite(self.mean))
        return idx[np.lexsort((idx, -self.mean[idx]))]


@dataclass(frozen=True)
class JobView:
    record: JobRecord
    models: list[ModelView]
    #: mean training and test fold sizes (the t-test's correction)
    n_train: float
    n_test: float
    timeline: list[TimelinePoint]
    #: why there are no results to show (e.g. no checkpoint yet), else None
    results_note: str | None = None
    #: per model type, its best compared with the job's best type (None for that one)
    vs_best_type: dict[str, Comparison | None] = field(default_factory=dict)

    @property
    def leader(self) -> ModelView | None:
        scored = [m for m in self.models if m.best_score is not None]
        return max(scored, key=lambda m: m.best_score or -math.inf) if scored else None


def gather(state_dir: Path, job_id: str) -> JobView:
    """Everything the report of ``job_id`` shows; NotFoundError if there is no such job."""
    state_dir = Path(state_dir)
    rec = read_summary(state_dir, job_id)
    if rec is None:
        if not (state_dir / job_id).is_dir():
            raise NotFoundError(f"no job {job_id!r} in {state_dir}")
        rec = JobRecord(id=job_id)
    results: JobResults | None
    note = None
    try:
        results = load_results(job_id, state_dir, with_estimators=False)
    except NotFoundError as e:  # queued, or no checkpoint flushed yet
        results, note = None, str(e)
    return from_results(rec, results, read_timeline(state_dir / job_id), note,
                        facts=read_job_facts(state_dir / job_id))


def refit_scorer(job_dir: Path) -> str | None:
    """The scorer that picks the best, from the frozen job file: ``search.refit`` when the
    job has several scorers; None when it cannot tell (then :func:`scorer_suffix` guesses)."""
    return read_job_facts(job_dir).refit


def from_results(rec: JobRecord, results: JobResults | None,
                 timeline: list[TimelinePoint], note: str | None = None,
                 refit: str | None = None, facts: JobFacts = UNKNOWN) -> JobView:
    """The view of ``results``; ``facts`` from the job file (the scorer that picks the best,
    unless ``refit`` names it, and each type's strategy)."""
    if results is None:
        return JobView(rec, [], 0.0, 0.0, timeline, note or "no results yet")
    n_train, n_test = split_sizes(results.splits)
    if (rec.state in (JobState.RUNNING, JobState.PAUSED) and results.models
            and all(m.state == DONE for m in results.models.values())):
        # the worker draws its last report just before it says "done": every type is done
        rec = dataclasses.replace(rec, state=JobState.DONE, eta_seconds=None)
    refit = refit if refit is not None else facts.refit
    models = [model_view(m, n_train, n_test, refit, rec.models.get(m.name, {}).get("state"),
                         facts) for m in results.models.values()]
    view = JobView(rec, models, n_train, n_test, timeline, note)
    leader = view.leader
    if leader is not None and leader.best is not None:
        for m in models:
            if m is leader or m.best is None:
                view.vs_best_type[m.name] = None
            else:
                view.vs_best_type[m.name] = corrected_ttest(
                    leader.folds[leader.best], m.folds[m.best], n_train, n_test)
    return view


def scorer_suffix(m: ModelSearch, refit: str | None = None) -> str:
    """The scorer the search ranks by: the only one, the job's ``refit``, or else the one
    whose mean is the best score at the best index."""
    cv = m.cv_results_
    suffixes = sorted(k[len("mean_test_"):] for k in cv if k.startswith("mean_test_"))
    if not suffixes or "score" in suffixes:
        return "score"
    if refit in suffixes:
        return refit
    if m.best_index_ is not None and m.best_score_ is not None:
        for s in suffixes:
            if float(cv[f"mean_test_{s}"][m.best_index_]) == m.best_score_:
                return s
    return suffixes[0]


def model_view(m: ModelSearch, n_train: float, n_test: float, refit: str | None = None,
               state: str | None = None, facts: JobFacts = UNKNOWN) -> ModelView:
    """One type's view; ``state`` is the daemon's word for it (summary.json), fresher than
    the checkpoint's while the type runs."""
    cv = m.cv_results_
    s = scorer_suffix(m, refit)
    params = list(cv.get("params", []))
    n = len(params)

    def col(key: str) -> np.ndarray:
        v = cv.get(key)
        return np.full(n, np.nan) if v is None else np.asarray(v, dtype=float)

    k = 0
    while f"split{k}_test_{s}" in cv:
        k += 1
    folds = (np.column_stack([col(f"split{f}_test_{s}") for f in range(k)]) if k
             else np.empty((n, 0)))
    mean = col(f"mean_test_{s}")
    best = m.best_index_
    if best is None and np.isfinite(mean).any():
        best = int(np.nanargmax(mean))
    axes = build_axes(params, facts.log_params(m.name))
    drawn = frozenset(facts.drawn.get(m.name, {}))
    # the read API marks a halving search by its plan; only the job file tells random ones
    search = "halving" if m.halving else facts.search.get(m.name, "grid")
    rounds = "iter" in cv and "n_resources" in cv
    view = ModelView(
        name=m.name, state=state if isinstance(state, str) and m.state != DONE else m.state,
        scorer=s, params=params, mean=mean,
        std=col(f"std_test_{s}"), folds=folds,
        rank=np.asarray(cv.get(f"rank_test_{s}", np.zeros(n)), dtype=np.int64),
        fit_time=col("mean_fit_time"), axes=axes, best=best, test_score=m.test_score_,
        fits_done=m.fits_done, fits_total=m.fits_total, errors=len(m.errors),
        search=search, drawn=drawn,
        rounds=np.asarray(cv["iter"], dtype=np.int64) if rounds else None,
        resources=np.asarray(cv["n_resources"], dtype=np.int64) if rounds else None,
        halving=dict(m.halving) if m.halving is not None else None)
    if best is not None:
        for axis in axes:
            if axis.name in drawn:  # a distribution has no grid edge to extend
                continue
            code = int(axis.codes[best])
            w = (edge_warning(axis, axis.values[code], best_per_value(axis, mean))
                 if code >= 0 else None)
            if w is not None:
                view.edges.append(w)
    return view


def compare_top(view: ModelView, n_train: float, n_test: float,
                top: np.ndarray) -> dict[int, Comparison]:
    """The type's best compared with each of the candidates ``top`` (itself left out)."""
    if view.best is None:
        return {}
    b = view.folds[view.best]
    return {int(i): corrected_ttest(b, view.folds[i], n_train, n_test)
            for i in top if int(i) != view.best}
