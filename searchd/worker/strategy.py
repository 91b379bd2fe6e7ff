"""The search-strategy seam: which candidates a model type's search evaluates, batch by batch.

scikit-learn's searches share one loop, ``BaseSearchCV._run_search(evaluate_candidates)``:
the strategy proposes candidates, they are evaluated, and it sees every result so far before
it proposes more. The worker runs the same loop the other way round, so that it can stream,
checkpoint and resume: it asks ``next_batch(results)``, evaluates what is still pending of
that batch (results are rows keyed by the candidates' content, so a candidate proposed again,
or already computed before a restart, is not recomputed), and asks again until the strategy
answers None.

A strategy is made afresh each time the worker starts; on a resume it is handed the results
adopted from the checkpoint, so it must decide from them, not from what it remembers
(a grid proposes itself again and finds it done; a sampler takes the candidates it drew from
the checkpoint, never draws again; a halving search finds the rounds already done from their
rows, see :mod:`searchd.worker.halving`).
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from collections import Counter
from typing import Any, Protocol

import numpy as np
from sklearn.model_selection import ParameterGrid, ParameterSampler

from searchd.errors import JobSpecError
from searchd.jobs.distributions import Distribution
from searchd.jobs.spec import JobSpec, ModelSpec, canonical
from searchd.state.results import ModelResults

log = logging.getLogger("searchd.worker")

Candidate = dict[str, Any]


def content_key(value: Any) -> str:
    return hashlib.sha256(canonical(value).encode()).hexdigest()[:20]


class Batch(list[Candidate]):
    """A batch whose rows are not keyed by their parameters' content alone: a candidate drawn
    twice gets a row each (as in scikit-learn's ``cv_results_``), and a halving round's rows
    name their round, so that the same parameters at another resource are another row."""

    def __init__(self, candidates: list[Candidate], salt: dict[str, Any] | None = None,
                 round: int | None = None, n_resources: int | None = None) -> None:
        super().__init__(candidates)
        #: the content key of each candidate's row
        self.keys = row_keys(candidates, salt or {})
        #: halving: the round (from 0) and the resources each of its fits gets
        self.round, self.n_resources = round, n_resources


def row_keys(candidates: list[Candidate], salt: dict[str, Any]) -> list[str]:
    """Content keys: the parameters' alone for a first occurrence without ``salt`` (so a
    random search finds a grid's results of the same type), else parameters, salt and the
    occurrence."""
    seen: Counter[str] = Counter()
    keys = []
    for c in candidates:
        text = canonical(c)
        k = seen[text]
        seen[text] += 1
        if not salt and not k:
            keys.append(content_key(c))
        else:
            keys.append(content_key({"params": c, **salt, **({"repeat": k} if k else {})}))
    return keys


class Strategy(Protocol):
    def next_batch(self, results: ModelResults) -> list[Candidate] | None:
        """The next candidates to evaluate (JSON-form parameters, in the order scikit-learn's
        search would evaluate them), given ``results`` so far; None once the search is done.

        The worker calls it first before any fit of the type (the first batch gives the
        type its rows, so status can show its fits), then each time a batch is done. A
        :class:`Batch` says how its rows are keyed; a plain list is keyed by content.
        """


class GridStrategy:
    """``GridSearchCV``: one batch, the whole ``ParameterGrid`` in its order (the order
    decides the tie-breaking of the best candidate, as in scikit-learn)."""

    def __init__(self, model: ModelSpec) -> None:
        self.model = model
        self.proposed = False

    def next_batch(self, results: ModelResults) -> list[Candidate] | None:
        if self.proposed:
            return None
        self.proposed = True
        return list(ParameterGrid([dict(g) for g in self.model.grid]))


# --- random search -----------------------------------------------------------------------------

def all_lists(model: ModelSpec) -> bool:
    return not any(isinstance(v, Distribution) for g in model.grid for v in g.values())


def distributions(model: ModelSpec, where: str) -> list[dict[str, Any]]:
    """The grid as ``ParameterSampler`` takes it: lists, and frozen scipy distributions."""
    out = []
    for i, g in enumerate(model.grid):
        d: dict[str, Any] = {}
        for k, v in g.items():
            if isinstance(v, Distribution):
                try:
                    d[k] = v.frozen()
                except (TypeError, ValueError) as e:
                    at = f"{where}[{i}].{k}" if len(model.grid) > 1 else f"{where}.{k}"
                    raise JobSpecError(f"{at}: scipy.stats refuses {v.shown()}: "
                                       f"{type(e).__name__}: {e}") from None
            else:
                d[k] = v
        out.append(d)
    return out


def _plain(v: Any) -> Any:
    """A drawn value as JSON: numpy scalars (what ``rvs`` gives) become Python's, exactly."""
    return v.item() if isinstance(v, np.generic) else v


def draw(job: JobSpec, model: ModelSpec, n: int, results: ModelResults,
         resumed: ModelResults | None) -> list[Candidate]:
    """``ParameterSampler(grid, n, random_state=seed)``'s candidates, in its order.

    A draw is stored in ``results.draws`` (so in the next checkpoint) under the content key
    of what decided it; a resume takes it from the checkpoint and never draws again, so
    neither a restart nor an upgrade of numpy or scipy changes a running search.
    """
    grid = [{k: {"distribution": v.name, "args": list(v.args)} if isinstance(v, Distribution)
             else v for k, v in g.items()} for g in model.grid]
    key = content_key({"grid": grid, "n": n, "seed": model.search.seed})
    old = (resumed.draws or {}).get(key) if resumed is not None else None
    if old is not None:
        drawn = [dict(c) for c in old]
    else:
        where = f"{job.path}: models.{model.name}.grid"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            sampler = ParameterSampler(distributions(model, where), n,
                                       random_state=model.search.seed)
            drawn = [{k: _plain(v) for k, v in c.items()} for c in sampler]
        for w in caught:  # n_iter capped at the grid's size, as RandomizedSearchCV does
            log.warning("%s: %s: %s", job.id, model.name, w.message)
    if results.draws is None:
        results.draws = {}
    results.draws[key] = drawn
    return [dict(c) for c in drawn]


class RandomStrategy:
    """``RandomizedSearchCV``: one batch, ``n_iter`` candidates drawn once (see ``draw``)."""

    def __init__(self, job: JobSpec, model: ModelSpec, resumed: ModelResults | None) -> None:
        self.job, self.model, self.resumed = job, model, resumed
        self.proposed = False

    def next_batch(self, results: ModelResults) -> list[Candidate] | None:
        if self.proposed:
            return None
        self.proposed = True
        return Batch(draw(self.job, self.model, self.model.search.n_iter, results,
                          self.resumed))


def strategy_for(job: JobSpec, model: ModelSpec, template: Any = None,
                 y: np.ndarray | None = None, resumed: ModelResults | None = None) -> Strategy:
    """The strategy of a model type's search (its ``search`` in the job file).

    ``template`` and ``y`` (the training labels) are what a halving search's arithmetic
    needs; ``resumed`` is the type's results in the checkpoint, where a sampler finds what
    it drew.
    """
    kind = model.search.kind
    if kind == "random":
        return RandomStrategy(job, model, resumed)
    if kind == "halving":
        from searchd.worker.halving import HalvingStrategy
        assert template is not None and y is not None, "a halving search needs the data"
        return HalvingStrategy(job, model, template, y, resumed)
    return GridStrategy(model)
