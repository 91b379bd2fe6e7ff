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
(a grid proposes itself again and finds it done; a sampler draws the same candidates from
its seed; a halving search finds the rounds already done from their rows).
"""

from __future__ import annotations

from typing import Any, Protocol

from sklearn.model_selection import ParameterGrid

from searchd.jobs.spec import JobSpec, ModelSpec
from searchd.state.results import ModelResults

Candidate = dict[str, Any]


class Strategy(Protocol):
    def next_batch(self, results: ModelResults) -> list[Candidate] | None:
        """The next candidates to evaluate (JSON-form parameters, in the order scikit-learn's
        search would evaluate them), given ``results`` so far; None once the search is done.

        The worker calls it first before any fit of the type (the first batch gives the
        type its rows, so status can show its fits), then each time a batch is done.
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


def strategy_for(job: JobSpec, model: ModelSpec) -> Strategy:
    """The strategy of a model type's search (the grid, for now: the job file's ``search``
    kinds plug in here)."""
    return GridStrategy(model)
