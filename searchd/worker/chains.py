"""Warm-start chains: candidates of one fold that differ only in a parameter the estimator
can grow in place are fitted as one growing model, each size scored as it is reached.

scikit-learn designs some estimators' ``warm_start`` so that growing a fitted model to
``k`` members gives the model a fresh fit with ``k`` would (a forest's trees are seeded from
one stream, which a warm start advances past the trees it keeps). Where that holds, a
search over ``n_estimators = 20, 23, ..., 147`` needs one growing forest per fold, not 43.

Only the (estimator, parameter) pairs of :func:`table` chain, each under its conditions;
``tests/test_chains.py`` proves, row by row, that every link's scores equal a fresh fit's
(``GridSearchCV``'s) to the last bit. Anything else takes the plain path. A link's
``fit_time`` is the time of its growth step (the first link's: a fresh fit of its size).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from searchd.jobs.spec import canonical
from searchd.worker.tables import rows

Params = Mapping[str, Any]
#: (candidate row, fold)
Pair = tuple[int, int]


def _seeded(p: Params) -> bool:
    """An integer random_state (exact) or None (not reproducible anyway, fresh or grown);
    a RandomState instance is shared state that a warm start would consume differently."""
    rs = p.get("random_state")
    return rs is None or (isinstance(rs, (int, np.integer)) and not isinstance(rs, bool))


@dataclass(frozen=True)
class Row:
    """One estimator class whose ``param`` grows exactly when ``exact`` holds of its
    other parameters."""

    estimator: type
    param: str
    #: the conditions, as the README and ``validate`` state them
    conditions: str
    exact: Callable[[Params], bool]


_FOREST = "random_state an integer or None"

@functools.cache
def table() -> tuple[Row, ...]:
    """The (estimator, parameter, conditions) rows, built on first use (importing
    sklearn.ensemble costs the worker's start half a second)."""
    from sklearn.ensemble import (
        BaggingClassifier,
        BaggingRegressor,
        ExtraTreesClassifier,
        ExtraTreesRegressor,
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )

    def bagging(p: Params) -> bool:  # scikit-learn refuses oob_score with warm_start
        return _seeded(p) and not p.get("oob_score")

    def boosting(p: Params) -> bool:
        # early stopping looks at the stages it has: a grown model may stop where a fresh
        # one of the same size would not
        return _seeded(p) and p.get("n_iter_no_change") is None

    def hist(p: Params) -> bool:
        # early_stopping="auto" turns on above 10,000 samples; only false is exact everywhere
        return _seeded(p) and p.get("early_stopping") is False

    return (
        Row(RandomForestClassifier, "n_estimators", _FOREST, _seeded),
        Row(RandomForestRegressor, "n_estimators", _FOREST, _seeded),
        Row(ExtraTreesClassifier, "n_estimators", _FOREST, _seeded),
        Row(ExtraTreesRegressor, "n_estimators", _FOREST, _seeded),
        Row(BaggingClassifier, "n_estimators", _FOREST + ", oob_score false", bagging),
        Row(BaggingRegressor, "n_estimators", _FOREST + ", oob_score false", bagging),
        Row(GradientBoostingClassifier, "n_estimators", _FOREST + ", n_iter_no_change None",
            boosting),
        Row(GradientBoostingRegressor, "n_estimators", _FOREST + ", n_iter_no_change None",
            boosting),
        Row(HistGradientBoostingClassifier, "max_iter", _FOREST + ", early_stopping false",
            hist),
        Row(HistGradientBoostingRegressor, "max_iter", _FOREST + ", early_stopping false",
            hist),
    )


def _row(cls: type) -> Row | None:
    return next((r for r in table() if r.estimator is cls), None)


def model_of(est: Any) -> tuple[Any, str]:
    """The estimator a candidate's growable parameter belongs to, and its key prefix
    (``model__`` inside searchd's pipeline, else nothing)."""
    if isinstance(est, Pipeline):
        name, step = est.steps[-1]
        inner, prefix = model_of(step)
        return inner, f"{name}__{prefix}"
    return est, ""


def growable(template: Any) -> str | None:
    """The key (as the template's ``set_params`` takes it) of the parameter its candidates
    could chain on, if its model's class is in :func:`table` (exactly: a subclass may
    change what warm_start does)."""
    model, prefix = model_of(template)
    row = _row(type(model))
    return None if row is None else prefix + row.param


def _size(value: Any) -> int | None:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1:
        return int(value)
    return None


def link_ok(template: Any, key: str, params: Params) -> bool:
    """Whether a candidate (built parameters) can be a link: its model is still the table's
    class with a size for ``key`` and every condition holds."""
    if _size(params.get(key)) is None:
        return False
    try:
        est = clone(template).set_params(**params)
    except (ValueError, TypeError, AttributeError):  # the fit will say what is wrong
        return False
    model, _ = model_of(est)
    row = _row(type(model))
    return row is not None and prefix_key(est, row) == key and \
        row.exact(model.get_params(deep=False))


def prefix_key(est: Any, row: Row) -> str:
    return model_of(est)[1] + row.param


def group_key(raw: Params, key: str, steps: set[str]) -> str:
    """The candidate's job-file parameters but the growable one: equal keys chain."""
    from searchd.worker.estimators import grid_key
    return canonical({k: v for k, v in raw.items() if grid_key(k, steps) != key})


def plan(template: Any, pending: Sequence[Pair], built: Mapping[int, Params],
         raw: Mapping[int, Params] | Sequence[Params], steps: set[str]) -> list[list[Pair]]:
    """``pending`` as units of work: chains (the candidates of one fold agreeing on every
    parameter but the growable one, by its value ascending) and single tasks, each unit in
    the order of its first task in ``pending``. Without a growable parameter, singles."""
    key = growable(template)
    if key is None:
        return [[p] for p in pending]
    ok = {i: link_ok(template, key, built[i]) for i in {i for i, _ in pending}}
    units: list[list[Pair]] = []
    chains: dict[tuple[int, str], list[Pair]] = {}
    for i, f in pending:
        if not ok[i]:
            units.append([(i, f)])
            continue
        g = (f, group_key(raw[i], key, steps))
        if g not in chains:
            chains[g] = []
            units.append(chains[g])
        chains[g].append((i, f))
    out: list[list[Pair]] = []
    for u in units:
        if len(u) == 1:
            out.append(u)
            continue
        u.sort(key=lambda p: _size(built[p[0]][key]) or 0)
        # equal sizes (say 20 and 20.0) cannot grow one from the other: a chain each
        run: list[Pair] = []
        for p in u:
            if run and built[run[-1][0]][key] == built[p[0]][key]:
                out.append(run)
                run = []
            run.append(p)
        out.append(run)
    return out


def longest_first(units: Sequence[list[Pair]], seconds: Callable[[], np.ndarray]
                  ) -> Iterator[list[Pair]]:
    """``evaluate.longest_first`` for units of work: first one unit for each candidate still
    missing a measured time, then the rest, costliest first, a chain costing the sum of
    its links' times (each link's is its growth step's, so the sum is the chain's)."""
    known = seconds()
    first: list[list[Pair]] = []
    rest: list[list[Pair]] = []
    probed: set[int] = set()
    for u in units:
        if any(np.isnan(known[i]) and i not in probed for i, _ in u):
            probed.update(i for i, _ in u)
            first.append(u)
        else:
            rest.append(u)
    yield from first
    if not rest:
        return
    est = seconds()
    fill = float(np.nanmedian(est)) if not np.all(np.isnan(est)) else 0.0
    est = np.where(np.isnan(est), fill, est)
    yield from sorted(rest, key=lambda u: -float(sum(est[i] for i, _ in u)))


def as_task(unit: list[Pair], built: Mapping[int, dict[str, Any]], key: str | None,
            split: Any = None) -> Any:
    """A unit as an ``evaluate.Task``: a chain names its growing key and further links; a
    run of shared preprocessing (:class:`searchd.worker.prefit.Run`, or ``key`` None) its
    further tasks, each fitted fresh."""
    from searchd.worker.evaluate import Task
    from searchd.worker.prefit import Run
    (i, f), links = unit[0], unit[1:]
    if not links:
        return Task(i, f, built[i], split=split)
    grow = "" if isinstance(unit, Run) or key is None else key
    return Task(i, f, built[i], split=split, grow=grow,
                links=tuple((j, built[j], "") for j, _ in links))


def tags(t: Any) -> set[str]:
    """The fit-record names of a task's links (one for a plain task)."""
    return {t.tag, *(tag for _, _, tag in t.links)}


def named(t: Any, tag_of: Callable[[int, int], str]) -> Any:
    """``t`` with its tag and its links' set by ``tag_of(row, fold)``."""
    import dataclasses
    return dataclasses.replace(t, tag=tag_of(t.i, t.fold), links=tuple(
        (j, p, tag_of(j, t.fold)) for j, p, _ in t.links))


def unchain(t: Any) -> list[Any]:
    """A task's links, each a plain task with its own tag."""
    import dataclasses
    if not t.links:
        return [t]
    return [dataclasses.replace(t, links=(), grow="")] + [
        dataclasses.replace(t, i=j, params=p, tag=tag, links=(), grow="")
        for j, p, tag in t.links]


def without(t: Any, drop: set[str]) -> Any:
    """A chain without the links named in ``drop`` (growing past a size is still exact);
    None when none is left."""
    return rest_of(t, [u for u in unchain(t) if u.tag not in drop])


def not_done(t: Any, done: set[Pair]) -> Any:
    """A chain or run without its links whose (row, fold) is in ``done``; None when none
    is left."""
    return rest_of(t, [u for u in unchain(t) if (u.i, u.fold) not in done])


def rest_of(t: Any, rest: list[Any]) -> Any:
    """``rest`` (some of ``t``'s links, in order) as one task like ``t``."""
    import dataclasses
    if not rest:
        return None
    head = rest[0]
    if len(rest) == 1:
        return head
    return dataclasses.replace(head, grow=t.grow, links=tuple(
        (u.i, u.params, u.tag) for u in rest[1:]))


def model_plan(job: Any, model: Any, template: Any, allow: Sequence[str],
               processes: int | None = None) -> dict[str, Any]:
    """For ``validate``: how many of a grid type's fits run as how many chains, and how
    many times its preprocessing is fitted when shared (a random or halving type's
    candidates are not known before it runs: none counted). On ``processes`` local
    processes that count is exact: the runs cut as the worker cuts them
    (:func:`searchd.worker.prefit.runs`); on a cluster (None), whose threads are not known
    here, it is the least: once per fold and distinct preprocessing."""
    from searchd.worker.estimators import build_candidate
    from searchd.worker.plan import candidates
    from searchd.worker.prefit import prefix_fits, runs
    if model.search.kind != "grid":
        return {"chains": 0, "chained_fits": 0, "preprocess_fits": 0, "preprocess_exact": True}
    raw = candidates(model)
    where = f"{job.path}: models.{model.name}.grid"
    built = {i: build_candidate(p, job, allow, where) for i, p in enumerate(raw)}
    shared = prefix_fits(template, list(built.values()), job.search.folds)
    pending = [(i, f) for f in range(job.search.folds) for i in range(len(raw))]
    units = plan(template, pending, built, raw, {s.name for s in job.preprocess})
    if shared and processes is not None:
        shared = len(runs(template, units, built, processes))  # each unit fits the steps once
    n, fits = count_chains(units)
    return {"chains": n, "chained_fits": fits, "preprocess_fits": shared,
            "preprocess_exact": processes is not None}


def describe(fits: int, chains: int, chained: int, preprocess: int = 0,
             exact: bool = True) -> str:
    """" as 5 chains" (every fit in one), " (200 as 5 chains)", or nothing; and
    "; preprocessing fitted 5 times (shared)" (or "at least 5 times") when it is."""
    text = ""
    if chains:
        text = f" as {chains:,} chains" if chained == fits else \
            f" ({chained:,} as {chains:,} chains)"
    if preprocess:
        text += f"; preprocessing fitted {'' if exact else 'at least '}{preprocess:,} times " \
                "(shared)"
    return text


def count_chains(units: Sequence[Sequence[Pair]]) -> tuple[int, int]:
    """(chains, fits in them) among ``units`` (a run of shared preprocessing is none)."""
    from searchd.worker.prefit import Run
    chains = [u for u in units if len(u) > 1 and not isinstance(u, Run)]
    return len(chains), sum(len(u) for u in chains)


def evaluate_chain(template: Any, key: str, links: Sequence[tuple[int, Params, str]],
                   X: Any, y: np.ndarray, train: np.ndarray, test: np.ndarray,
                   scoring: Any, fold: int, mark: Callable[[str], None] | None = None,
                   cache: Any = None) -> Iterator[Any]:
    """The links (row, parameters, tag) of one chain on one fold, each an ``Outcome`` as
    its growth is scored; ``mark(tag)`` names each link in the fit record as it starts.

    The first link is a fresh fit (``warm_start`` on) of the smallest size; each next one
    sets the size and fits again, growing the model in place. A failed fit leaves the
    model in an unknown state: the next link starts afresh at its own size. With a
    ``cache`` (:mod:`searchd.worker.prefit`), deterministic preprocessing is fitted once
    for the chain (and the fold), not at every link.
    """
    from searchd.worker.evaluate import Outcome, fit_error
    from searchd.worker.prefit import fit_shared, shared_key

    warm = key.rpartition("__")[0] + "__warm_start" if "__" in key else "warm_start"
    Xtr, ytr, Xte, yte = rows(X, train), y[train], rows(X, test), y[test]
    est: Any = None
    shared: str | None = None
    for i, params, tag in links:
        if mark is not None:
            mark(tag)
        if est is None:
            est = clone(template).set_params(**clone(dict(params), safe=False), **{warm: True})
            # the key of the unfitted steps (a link changes the model step only)
            shared = shared_key(est, train) if cache is not None else None
        else:
            est.set_params(**{key: params[key]})
        start = time.time()
        try:
            if shared is not None:
                fit_shared(est, shared, cache, Xtr, ytr)
            else:
                est.fit(Xtr, ytr)
        except Exception as e:  # noqa: BLE001 - recorded as error_score=nan, like GridSearchCV
            est = None
            yield Outcome(i, fold, None, time.time() - start, 0.0, fit_error(e))
            continue
        fit_time = time.time() - start
        start = time.time()
        try:
            scores = scoring(est, Xte, yte)
        except Exception as e:  # noqa: BLE001
            yield Outcome(i, fold, None, fit_time, time.time() - start, fit_error(e))
            continue
        yield Outcome(i, fold, scores, fit_time, time.time() - start, None)


__all__ = ["Row", "as_task", "count_chains", "describe", "evaluate_chain", "growable",
           "link_ok", "longest_first", "model_plan", "named", "not_done", "plan", "table",
           "tags", "unchain", "without"]
