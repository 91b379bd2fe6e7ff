"""Results of one model type, stored as columns, and their ``cv_results_`` view.

A row is a candidate (identified by the content key of its parameters), a
column a CV fold. Rows are appended as a search strategy proposes candidates and looked
up by key, so nothing here assumes the whole grid is known up front. Columns of floats
pickle and load in milliseconds even at 100,000 (candidate, fold) entries, where per-row
dicts take hundreds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PENDING, RUNNING, DONE = "pending", "running", "done"


@dataclass
class ModelResults:
    name: str
    #: content key of the model's spec (estimator, fixed params, preprocessing, data, cv, scoring)
    spec_key: str
    keys: list[str]
    params: list[dict[str, Any]]
    scorers: tuple[str, ...]
    refit: str
    n_folds: int
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    fit_time: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    score_time: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    done: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), bool))
    #: (candidate index, fold) → the error a fit or a score raised
    errors: dict[tuple[int, int], str] = field(default_factory=dict)
    state: str = PENDING
    best_index: int | None = None
    test_score: dict[str, float] | None = None
    refit_time: float | None = None
    #: why there is no refitted model although the type is done (e.g. every candidate failed)
    refit_error: str | None = None
    #: random and halving searches: the candidates drawn, by the content key of what decided
    #: the draw (a resume takes them from here and never draws again); None: nothing drawn
    draws: dict[str, list[dict[str, Any]]] | None = None
    #: halving: the plan (``HalvingPlan`` as a dict) and each row's round and resources
    halving: dict[str, Any] | None = None
    row_iter: list[int] | None = None
    row_resources: list[int] | None = None

    @classmethod
    def empty(cls, name: str, spec_key: str, keys: list[str], params: list[dict[str, Any]],
              scorers: tuple[str, ...], refit: str, n_folds: int) -> ModelResults:
        """Results with a row per given candidate (there may be none yet), every fold pending."""
        res = cls(name=name, spec_key=spec_key, keys=[], params=[], scorers=scorers,
                  refit=refit, n_folds=n_folds,
                  scores={s: np.full((0, n_folds), np.nan) for s in scorers},
                  fit_time=np.zeros((0, n_folds)), score_time=np.zeros((0, n_folds)),
                  done=np.zeros((0, n_folds), bool))
        res.add_candidates(keys, params)
        return res

    def row_of(self, key: str) -> int | None:
        """The row of the candidate with this content key, if it has one."""
        index = self.__dict__.get("_index")  # not a field: never pickled, rebuilt on demand
        if index is None or len(index) != len(self.keys):
            index = self.__dict__["_index"] = {k: i for i, k in enumerate(self.keys)}
        return index.get(key)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_index", None)
        return state

    def add_candidates(self, keys: Sequence[str], params: Sequence[dict[str, Any]]
                       ) -> list[int]:
        """The row of each candidate, appending those new here (every fold pending).

        A candidate already present keeps its row and its results: rows are found by key,
        never by position, so proposing a candidate twice computes it once.
        """
        rows: list[int] = []
        new = 0
        for k, p in zip(keys, params, strict=True):
            i = self.row_of(k)
            if i is None:
                i = len(self.keys)
                self.keys.append(k)
                self.params.append(p)
                self.__dict__["_index"][k] = i
                new += 1
            rows.append(i)
        if new:
            shape = (new, self.n_folds)
            for s in self.scorers:
                self.scores[s] = np.concatenate([self.scores[s], np.full(shape, np.nan)])
            self.fit_time = np.concatenate([self.fit_time, np.zeros(shape)])
            self.score_time = np.concatenate([self.score_time, np.zeros(shape)])
            self.done = np.concatenate([self.done, np.zeros(shape, bool)])
        return rows

    def adopt(self, old: ModelResults, rows: Iterable[int] | None = None) -> int:
        """Take over ``old``'s results for ``rows`` (default: every row) by candidate key;
        returns how many (candidate, fold) results it took.

        Nothing is taken when the model's spec or the folds differ. If ``old`` was done and
        every fold of this one now is, with ``old``'s best among its rows, this one is done
        too, with the same best (found by key: rows may be in another order).
        """
        if old.spec_key != self.spec_key or old.n_folds != self.n_folds:
            return 0
        n = 0
        for i in range(len(self.keys)) if rows is None else rows:
            j = old.row_of(self.keys[i])
            if j is None:
                continue
            self.done[i] = old.done[j]
            self.fit_time[i] = old.fit_time[j]
            self.score_time[i] = old.score_time[j]
            for s in self.scorers:
                self.scores[s][i] = old.scores[s][j]
            for f in range(self.n_folds):
                if (j, f) in old.errors:
                    self.errors[(i, f)] = old.errors[(j, f)]
            n += int(old.done[j].sum())
        best = None if old.best_index is None else self.row_of(old.keys[old.best_index])
        if old.state == DONE and self.fits_done == self.fits_total and (
                best is not None or old.best_index is None):
            self.state, self.best_index = DONE, best
            self.test_score, self.refit_time = old.test_score, old.refit_time
            self.refit_error = old.refit_error
        return n

    def record(self, i: int, fold: int, scores: dict[str, float] | None, fit_time: float,
               score_time: float, error: str | None) -> None:
        for s in self.scorers:
            self.scores[s][i, fold] = np.nan if scores is None else scores[s]
        self.fit_time[i, fold] = fit_time
        self.score_time[i, fold] = score_time
        if error is not None:
            self.errors[(i, fold)] = error
        else:  # a result recorded again (a replayed delta) replaces the earlier one
            self.errors.pop((i, fold), None)
        self.done[i, fold] = True

    @property
    def fits_total(self) -> int:
        return int(self.done.size)

    @property
    def fits_done(self) -> int:
        return int(self.done.sum())

    def pending(self, rows: Iterable[int] | None = None) -> list[tuple[int, int]]:
        """The (row, fold) tasks not done, of ``rows`` (default: all), row by row."""
        if rows is None:
            idx = np.argwhere(~self.done)
            return [(int(i), int(f)) for i, f in idx]
        return [(i, int(f)) for i in dict.fromkeys(rows) for f in np.flatnonzero(~self.done[i])]

    def task_seconds(self) -> np.ndarray:
        """Each candidate's mean fit + score seconds over its folds done so far (NaN: none)."""
        took = np.where(self.done, self.fit_time + self.score_time, 0.0).sum(axis=1)
        n = self.done.sum(axis=1)
        return np.divide(took, n, out=np.full(len(n), np.nan), where=n > 0)

    def _mean(self, scorer: str) -> np.ndarray:
        # the same arithmetic as GridSearchCV (np.average), so scores match to the bit
        return np.average(self.scores[scorer], axis=1)

    def current_best(self) -> tuple[int | None, float | None]:
        """The best candidate among those with every fold done (for progress reports)."""
        complete = self.done.all(axis=1)
        if not complete.any():
            return None, None
        means = np.where(complete, self._mean(self.refit), np.nan)
        if np.isnan(means).all():
            return None, None
        i = int(np.nanargmax(means))
        return i, float(means[i])

    def finish(self) -> int:
        """Rank the candidates as GridSearchCV does; returns the best index. A halving
        search picks among its last round only, as scikit-learn's does (the first of the
        best mean; the round's first row when every mean is NaN)."""
        if self.row_iter is not None and self.row_iter:
            it = np.asarray(self.row_iter)
            last = np.flatnonzero(it == it.max())
            means = self._mean(self.refit)[last]
            self.best_index = int(last[0] if np.isnan(means).all() else last[np.nanargmax(means)])
            return self.best_index
        self.best_index = int(np.argmin(self.cv_results()[f"rank_test_{self._suffix(self.refit)}"]))
        return self.best_index

    def set_rounds(self, rows: Sequence[int], round: int, n_resources: int) -> None:
        """Halving: the round and resources of ``rows`` (their ``iter`` and ``n_resources``)."""
        if self.row_iter is None or self.row_resources is None:
            self.row_iter, self.row_resources = [], []
        missing = len(self.keys) - len(self.row_iter)
        self.row_iter.extend([-1] * missing)
        self.row_resources.extend([0] * missing)
        for i in rows:
            self.row_iter[i], self.row_resources[i] = round, n_resources

    def _suffix(self, scorer: str) -> str:
        return "score" if self.scorers == ("score",) or len(self.scorers) == 1 else scorer

    @property
    def best_score(self) -> float | None:
        if self.best_index is None:
            return None
        return float(self._mean(self.refit)[self.best_index])

    @property
    def best_params(self) -> dict[str, Any] | None:
        return None if self.best_index is None else self.params[self.best_index]

    def cv_results(self) -> dict[str, Any]:
        """The results in scikit-learn's ``cv_results_`` layout (JSON-form params)."""
        out: dict[str, Any] = {}
        for name, arr in (("fit_time", self.fit_time), ("score_time", self.score_time)):
            out[f"mean_{name}"] = np.average(arr, axis=1)
            out[f"std_{name}"] = np.sqrt(np.average((arr - out[f"mean_{name}"][:, None]) ** 2,
                                                    axis=1))
        names = sorted({k for p in self.params for k in p})
        for k in names:
            out[f"param_{k}"] = [p.get(k) for p in self.params]
        out["params"] = list(self.params)
        if self.row_iter is not None and self.row_resources is not None:
            out["iter"] = np.asarray(self.row_iter, dtype=np.int64)
            out["n_resources"] = np.asarray(self.row_resources, dtype=np.int64)
        for s in self.scorers:
            suffix = self._suffix(s)
            arr = self.scores[s]
            for f in range(self.n_folds):
                out[f"split{f}_test_{suffix}"] = arr[:, f]
            mean = np.average(arr, axis=1)
            out[f"mean_test_{suffix}"] = mean
            out[f"std_test_{suffix}"] = np.sqrt(np.average((arr - mean[:, None]) ** 2, axis=1))
            out[f"rank_test_{suffix}"] = _rank(mean)
        return out

    def summary(self) -> dict[str, Any]:
        best_i, best = (self.best_index, self.best_score) if self.state == DONE \
            else self.current_best()
        extra: dict[str, Any] = {}
        fits_total = self.fits_total
        if self.halving is not None:
            rounds = self.halving["n_candidates_"]
            now = max(self.row_iter or [0])
            fits_total = sum(rounds) * self.n_folds  # the plan's, not the rounds' so far
            extra["halving"] = {"round": now + 1, "rounds": len(rounds),
                                "candidates": rounds[now] if now < len(rounds) else 0}
        return {
            "state": self.state,
            "fits_done": self.fits_done,
            "fits_total": fits_total,
            "errors": len(self.errors),
            "best_score": None if best is None or math.isnan(best) else best,
            "best_params": None if best_i is None else self.params[best_i],
            "test_score": self.test_score,
            "error": self.refit_error,
            **extra,
        }


def _rank(means: np.ndarray) -> np.ndarray:
    """GridSearchCV's ranking: higher is better, ties share the lowest rank, NaN last."""
    if np.isnan(means).all():
        return np.ones_like(means, dtype=np.int32)
    filled = -np.nan_to_num(means, nan=np.nanmin(means) - 1)
    # scipy.stats.rankdata(method="min") without importing scipy (0.7 s for every command):
    # one plus the number of values strictly better
    return (np.searchsorted(np.sort(filled), filled, side="left") + 1).astype(np.int32)


def best_type(models: Mapping[str, ModelResults]) -> str | None:
    """The model type with the best CV score among those done with a refitted model.

    The one place that decides (``load_results(...).best`` and ``export`` without
    ``--model`` both ask it). A score of 0.0 is a score like any other; NaN (every
    candidate failed) ranks below every number; ties go to the type listed first.
    """
    best: tuple[float, str] | None = None
    for name, m in models.items():
        if m.state != DONE or m.refit_error or m.best_index is None:
            continue
        score = m.best_score
        value = float("-inf") if score is None or math.isnan(score) else score
        if best is None or value > best[0]:
            best = (value, name)
    return None if best is None else best[1]
