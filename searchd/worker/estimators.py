"""The estimator allow-list: job-file names → scikit-learn classes, and building them.

A job file names estimators; it never imports code. A name resolves only to a
public scikit-learn estimator (as :func:`sklearn.utils.all_estimators` lists
them) or to an estimator in a module the daemon's own configuration allows
(``allow_modules``). Nothing outside scikit-learn is imported unless allowed. What
parameter values may make those estimators do is :mod:`searchd.worker.param_policy`'s
audit, enforced here on every value a job gives, wherever it sits.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from sklearn.base import BaseEstimator, clone
from sklearn.metrics import get_scorer_names
from sklearn.pipeline import Pipeline
from sklearn.utils import all_estimators

from searchd.errors import JobSpecError
from searchd.jobs.distributions import Distribution
from searchd.jobs.messages import clip
from searchd.jobs.spec import JobSpec, ModelSpec, Value
from searchd.worker import columns, param_policy
from searchd.worker.sklearn_names_table import MODULES

MODEL_STEP = "model"


@functools.cache
def _public_estimators() -> dict[str, type]:
    return dict(all_estimators())


def _indexed(name: str) -> type | None:
    """The estimator ``name`` from the one module the table names, if it is there and
    passes all_estimators' own test (a public, concrete BaseEstimator subclass)."""
    module = MODULES.get(name)
    if module is None:
        return None
    try:
        cls = getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None
    if (isinstance(cls, type) and issubclass(cls, BaseEstimator) and name != "BaseEstimator"
            and not inspect.isabstract(cls)):
        return cls
    return None


@functools.cache
def _public_classes() -> frozenset[type]:
    return frozenset(_public_estimators().values())


def resolve(name: str, allow_modules: Sequence[str] = (), where: str = "") -> type:
    """The class a job file's estimator name stands for, if the allow-list permits it."""
    prefix = f"{where}: " if where else ""
    shown = clip(repr(name))  # the name comes from the file: any length, any characters
    if "." not in name:
        cls = _indexed(name) or _public_estimators().get(name)
        if cls is None:
            raise JobSpecError(f"{prefix}unknown estimator {shown} (not a public scikit-learn "
                               "estimator; give a dotted name for an allowed module)")
        return cls
    module_name, _, attr = name.rpartition(".")
    parts = name.split(".")
    if any(not p.isidentifier() or p.startswith("_") for p in parts):
        raise JobSpecError(f"{prefix}estimator {shown} names a private or invalid module path")
    top = parts[0]
    if top == "sklearn":
        # Look the module up, never import it: all_estimators() has imported every public
        # module already, and importing others would run sklearn's tests, conftest or
        # experimental enablers for a job file (and crash on a name that is no module).
        _public_estimators()
        cls = getattr(sys.modules.get(module_name), attr, None)
        if cls not in _public_classes():
            raise JobSpecError(f"{prefix}{shown} is not a public scikit-learn estimator")
        return cls  # type: ignore[return-value]
    if top not in allow_modules:
        raise JobSpecError(f"{prefix}estimator {shown}: module {clip(repr(top))} is not allowed "
                           "(only scikit-learn and the daemon's allow_modules)")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise JobSpecError(f"{prefix}estimator {shown}: cannot import {module_name}: {e}") \
            from None
    cls = getattr(module, attr, None)
    if not isinstance(cls, type) or not issubclass(cls, BaseEstimator):
        raise JobSpecError(f"{prefix}{shown} is not a scikit-learn compatible estimator class")
    return cls


#: an estimator's own n_jobs (at any depth) is capped at this: each of the job's n_jobs
#: processes fits one task at a time, so inner processes or threads would only take cores
#: the job was not given (BaggingClassifier(n_jobs=60) once started 48 processes on 2
#: CPUs). scikit-learn's results do not depend on n_jobs.
INNER_N_JOBS = 1


def cap_n_jobs(value: Any) -> Any:
    """An ``n_jobs`` value, capped at :data:`INNER_N_JOBS` (None, 1 and non-ints stay)."""
    if isinstance(value, int) and not isinstance(value, bool) and \
            (value < 0 or value > INNER_N_JOBS):
        return INNER_N_JOBS
    return value


def build_value(value: Value, allow: Sequence[str], where: str) -> Any:
    """A job-file value → the Python object handed to set_params."""
    if columns.is_transformer(value):  # one of a ColumnTransformer's transformers
        return columns.transformer(
            value, lambda name, params, w: build_estimator(name, params, allow, w), where)
    if isinstance(value, dict) and "estimator" in value:
        return build_estimator(value["estimator"], value.get("params", {}), allow, where)
    if isinstance(value, list):
        return [build_value(v, allow, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def build_estimator(name: str, params: Mapping[str, Value], allow: Sequence[str],
                    where: str) -> BaseEstimator:
    cls = resolve(name, allow, f"{where}.estimator")
    built = {k: build_value(v, allow, f"{where}.params.{k}") for k, v in params.items()}
    # arguments without a default (ColumnTransformer's transformers) go to the constructor
    # ColumnTransformer's transformers, built from their tables (worker/columns.py), go to
    # the constructor: it has no default for them
    required = {k: v for k, v in built.items() if k == "transformers" and k in _required(cls)
                and columns.are_transformers(v)}
    try:
        est = cls(**required)
    except TypeError as e:
        raise JobSpecError(f"{where}.estimator: {clip(repr(name))} cannot be built without "
                           f"arguments: {e}") from None
    _set(est, built, f"{where}.params")
    try:  # a list of steps or estimators of the wrong shape fails here, not in the fits
        est.get_params(deep=True)
    except (TypeError, ValueError, AttributeError) as e:
        raise JobSpecError(f"{where}.params: {clip(repr(name))} cannot use these "
                           f"parameters: {clip(str(e), 300)}") from None
    own = est.get_params(deep=False)
    if "n_jobs" in own and cap_n_jobs(own["n_jobs"]) != own["n_jobs"]:
        est.set_params(n_jobs=cap_n_jobs(own["n_jobs"]))
    for key, value in built.items():
        if "__" not in key:
            police(est, key, value, f"{where}.params.{clip(key)}")
    _police_tree(est, f"{where}.params")  # keys such as estimator__memory
    return est


def _set(est: BaseEstimator, params: Mapping[str, Any], where: str) -> None:
    for key in params:
        if not _settable(est, params, key):
            raise JobSpecError(f"{where}.{clip(key)}: {type(est).__name__} has no parameter "
                               f"{clip(repr(key))}")
    try:
        est.set_params(**params)
    except (ValueError, TypeError) as e:
        raise JobSpecError(f"{where}: {clip(str(e), 400)}") from None


def _settable(est: BaseEstimator, params: Mapping[str, Any], key: str) -> bool:
    """Whether ``est.set_params(**params)`` can set ``key``: ``a__b`` needs ``a`` to hold an
    estimator with a parameter ``b`` once ``params`` are set (set_params sets ``a`` first);
    else set_params fails with an AttributeError on whatever ``a`` holds."""
    head, sep, tail = key.partition("__")
    valid = est.get_params(deep=True)
    if head not in valid:
        return False
    if not sep:
        return True
    target = params[head] if head in params else valid[head]
    sub = {k.partition("__")[2]: v for k, v in params.items() if k.startswith(f"{head}__")}
    return isinstance(target, BaseEstimator) and _settable(target, sub, tail)


@functools.cache
def _required(cls: type) -> frozenset[str]:
    """The constructor's keyword arguments that have no default."""
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):
        return frozenset()
    return frozenset(n for n, p in sig.parameters.items()
                     if p.default is inspect.Parameter.empty
                     and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


@functools.cache
def _defaults(cls: type) -> dict[str, Any]:
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):  # no introspectable __init__: no defaults to honour
        return {}
    return {n: p.default for n, p in sig.parameters.items()
            if p.default is not inspect.Parameter.empty}


def _is_default(cls: type, name: str, value: Any) -> bool:
    defaults = _defaults(cls)
    if name not in defaults:
        return False
    d = defaults[name]
    if value is d:
        return True
    return isinstance(d, (str, int, float)) and type(value) is type(d) and value == d


def police(owner: Any, name: str, value: Any, where: str) -> None:
    """Refuse ``value`` for ``owner``'s parameter ``name`` if the parameter audit does
    (:mod:`searchd.worker.param_policy`); a value equal to the default always passes."""
    cls = type(owner)
    if _is_default(cls, name, value):
        return
    reason = param_policy.refusal(name, value, cls.__module__.partition(".")[0] == "sklearn")
    if reason is not None:
        shown = f"{{estimator = {type(value).__name__!r}}}" if isinstance(value, BaseEstimator) \
            else clip(repr(value))
        raise JobSpecError(f"{where}: {shown} is refused for {cls.__name__}'s parameter "
                           f"{clip(repr(name))}: {reason}")


def _police_tree(est: BaseEstimator, where: str, path: str = "") -> None:
    """Every parameter of ``est`` and of every estimator inside it (lists of steps
    included), as set_params left them: nothing a job sets escapes the audit."""
    for name, value in est.get_params(deep=False).items():
        police(est, name, value, f"{where}.{path}{name}")
        _police_values(value, where, f"{path}{name}")


def _police_values(value: Any, where: str, path: str) -> None:
    if isinstance(value, BaseEstimator):
        _police_tree(value, where, f"{path}__")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _police_values(v, where, f"{path}[{i}]")


def _objects_at(path: list[str], template: BaseEstimator,
                grid: Mapping[str, list[Any]]) -> list[BaseEstimator]:
    """The estimators a candidate can hold at ``path`` (grid key parts, as the pipeline
    sees them): a grid that sets a parent replaces what the template has there."""
    if not path:
        return [template]
    key = "__".join(path)
    if key in grid:
        return [v for v in grid[key] if isinstance(v, BaseEstimator)]
    found = []
    for parent in _objects_at(path[:-1], template, grid):
        child = parent.get_params(deep=True).get(path[-1])  # deep: a pipeline's steps
        if isinstance(child, BaseEstimator):
            found.append(child)
    return found


def grid_key(name: str, step_names: set[str]) -> str:
    """A grid key as the pipeline sees it: model parameters go to the 'model' step."""
    if not step_names:
        return name
    if name.split("__", 1)[0] in step_names:
        return name
    return f"{MODEL_STEP}__{name}"


def build_template(job: JobSpec, model: ModelSpec, allow: Sequence[str]) -> BaseEstimator:
    """The unfitted estimator every candidate of ``model`` is cloned from."""
    where = f"{job.path}: models.{model.name}"
    est = build_estimator(model.estimator, model.params, allow, where)
    if not job.preprocess:
        return est
    steps: list[tuple[str, Any]] = [
        (s.name, build_estimator(s.estimator, s.params, allow, f"{job.path}: preprocess.{s.name}"))
        for s in job.preprocess]
    steps.append((MODEL_STEP, est))
    return Pipeline(steps)


def build_candidate(params: Mapping[str, Value], job: JobSpec, allow: Sequence[str],
                    where: str) -> dict[str, Any]:
    steps = {s.name for s in job.preprocess}
    built = {grid_key(k, steps): build_value(v, allow, f"{where}.{k}") for k, v in params.items()}
    built = {k: cap_n_jobs(v) if k.rpartition("__")[2] == "n_jobs" else v
             for k, v in built.items()}
    for k, v in built.items():  # check_model has checked them by owner; this is by name
        rule = param_policy.RULES.get(k.rpartition("__")[2])
        if rule is not None and not (rule.test is not None and rule.test(v)):
            raise JobSpecError(f"{where}.{clip(k)}: {clip(repr(v))} is refused: {rule.reason} "
                               f"(allowed: {rule.allows})")
    return built


def check_model(job: JobSpec, model: ModelSpec, allow: Sequence[str]) -> BaseEstimator:
    """Build the template and check every grid parameter name and estimator value."""
    template = build_template(job, model, allow)
    valid = template.get_params(deep=True)
    steps = {s.name for s in job.preprocess}
    for grid in model.grid:
        # a distribution's draws are numbers: build_candidate polices them as they come
        g = {k: [] if isinstance(v, Distribution) else v for k, v in grid.items()}
        built: dict[str, list[Any]] = {}
        for key, values in g.items():
            where = f"{job.path}: models.{model.name}.grid.{clip(key)}"
            full = grid_key(key, steps)
            head, sep, _ = key.partition("__")
            # When the same grid replaces the parent, only its values can have the key:
            # set_params sets the parent first, then fails on one that lacks it.
            ok = _nested_ok(key, g, allow, where) if sep and head in g else full in valid
            if not ok:
                raise JobSpecError(f"{where}: {_owner(template, full)} has no parameter "
                                   f"{clip(repr(key))}")
            built[full] = [build_value(v, allow, f"{where}[{i}]") for i, v in enumerate(values)]
        for key in g:  # every value, against the audit, for every estimator it can reach
            where = f"{job.path}: models.{model.name}.grid.{clip(key)}"
            *parent, leaf = grid_key(key, steps).split("__")
            for owner in _objects_at(parent, template, built):
                for i, v in enumerate(built["__".join([*parent, leaf])]):
                    police(owner, leaf, v, f"{where}[{i}]")
    _check_scoring(job, model, template)
    return clone(template)


def _check_scoring(job: JobSpec, model: ModelSpec, template: BaseEstimator) -> None:
    """What the worker's ``check_scoring`` would refuse — an unknown scorer name, or no
    scoring for a model without ``score()`` (a transformer) — is the job's error here,
    not a worker that dies at every start."""
    known = set(get_scorer_names())
    for name in job.search.scoring or ():
        if name not in known:
            raise JobSpecError(f"{job.path}: search.scoring: unknown scorer {clip(repr(name))} "
                               "(sklearn.metrics.get_scorer_names() lists them)")
    if job.search.scoring is None and not hasattr(template, "score"):
        raise JobSpecError(f"{job.path}: models.{model.name}.estimator: "
                           f"{clip(repr(model.estimator))} has no score() method; name a "
                           "scorer in search.scoring")


def _nested_ok(key: str, grid: Mapping[str, list[Value]], allow: Sequence[str],
               where: str) -> bool:
    """``estimator__max_depth`` that the template lacks is still valid when the same grid
    sets ``estimator`` to estimators that all have ``max_depth`` (set_params sets the
    parent first). Any other key must be among the template's own deep parameters: the
    parent merely being an estimator (a pipeline's steps always are) proves nothing."""
    head, sep, tail = key.partition("__")
    values = grid.get(head) if sep else None
    if not values or not all(isinstance(v, dict) and "estimator" in v for v in values):
        return False
    return all(tail in build_value(v, allow, f"{where}[{i}]").get_params(deep=True)
               for i, v in enumerate(values))


def _owner(template: BaseEstimator, full: str) -> str:
    if isinstance(template, Pipeline):
        step = full.split("__", 1)[0]
        est = dict(template.steps).get(step)
        return f"{type(est).__name__} (step {step!r})" if est is not None else "the pipeline"
    return type(template).__name__


def is_classification(job: JobSpec, allow: Sequence[str]) -> bool:
    from sklearn.base import is_classifier
    first = job.models[0]
    return is_classifier(resolve(first.estimator, allow,
                                 f"{job.path}: models.{first.name}.estimator")())
