"""What an edit of a job file changes: its evaluation context, and its model types.

Results are reusable across two versions of a job only when they were evaluated the same
way: the same data (and hold-out), the same CV splits, the same scoring, the same
preprocessing. That is the **evaluation context**; it is compared here as data, section by
section of the spec (every field of ``DataSpec``, the CV and scoring fields of
``SearchSpec``, every ``[[preprocess]]`` step), so that a field added to those sections
later is part of it without a change here. The data's content digest, known only once the
worker has loaded the data, is compared beside it (:mod:`searchd.worker.reuse`).

Within one context, a model type is identified by its estimator and fixed ``params`` (a
change starts that type over, alone); its grid and search kind may change freely: results
are found by candidate. Pure functions of specs: the supervisor uses them without
scikit-learn.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from searchd.jobs.distributions import Distribution
from searchd.jobs.spec import JobSpec, ModelSpec, canonical

#: SearchSpec fields that do not change a (candidate, fold) result: how the fits run, and
#: which scorer picks the best (a changed ``refit`` re-picks from the same scores)
NOT_CONTEXT = frozenset({"n_jobs", "backend", "refit"})
#: DataSpec fields that say where to look, not what the data is (the digest covers it)
NOT_DATA = frozenset({"base_dir"})
#: the job file's name for a SearchSpec field, in messages
SEARCH_KEYS = {"folds": "cv", "shuffle": "cv", "cv_seed": "cv", "scoring": "scoring"}


def plain(value: Any) -> Any:
    """A spec value as JSON data: dataclasses and mappings as objects, tuples as lists,
    paths as text, distributions by name and arguments."""
    if isinstance(value, Distribution):
        return {"distribution": value.name, "args": plain(list(value.args))}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def evaluation_context(spec: JobSpec) -> dict[str, Any]:
    """The sections of ``spec`` that decide what a (candidate, fold) result is, as data."""
    data = {k: v for k, v in plain(spec.data).items() if k not in NOT_DATA}
    search = {k: v for k, v in plain(spec.search).items() if k not in NOT_CONTEXT}
    return {"data": data, "search": search, "preprocess": plain(spec.preprocess)}


def context_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The job-file keys whose change makes ``old``'s results unusable under ``new``, in
    the file's order (e.g. ``["search.cv"]``); [] when the contexts are equal."""
    out: list[str] = []
    for section in ("data", "search"):
        a, b = old.get(section) or {}, new.get(section) or {}
        for k in [k for k in b if k in a]:
            if not same(a[k], b[k]):
                name = f"{section}.{SEARCH_KEYS.get(k, k) if section == 'search' else k}"
                if name not in out:
                    out.append(name)
    if not same(old.get("preprocess") or [], new.get("preprocess") or []):
        out.append("preprocess")
    return out


def same(a: Any, b: Any) -> bool:
    """Equal as data, where a key only one side has is no difference: a field a later
    version added to the spec (say ``data.drop``) must not make a checkpoint written before
    it look like another context (what such a field changes in the data, the data's digest
    says)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return all(same(a[k], b[k]) for k in a if k in b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return canonical_or_repr(a) == canonical_or_repr(b)


def canonical_or_repr(value: Any) -> str:
    try:
        return canonical(value)
    except (TypeError, ValueError):  # NaN, or a value JSON cannot hold
        return repr(value)


def type_identity(model: ModelSpec) -> dict[str, Any]:
    """What a model type's results depend on besides the context: estimator and params."""
    return {"estimator": model.estimator, "params": plain(model.params)}


def type_version(model: ModelSpec) -> str:
    """The whole model type as the file states it (identity, grid, search kind): equal
    versions present exactly the same candidates."""
    return canonical_or_repr({**type_identity(model), "grid": plain(model.grid),
                              "search": plain(model.search)})


@dataclass(frozen=True)
class SpecEdit:
    """How a new version of a job file differs from the frozen one."""

    #: the evaluation context's keys that changed (the job starts over); [] = it continues
    context: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    #: types whose estimator or fixed params changed: each starts over alone
    restarted: list[str] = field(default_factory=list)
    #: types whose grid or search kind changed: results found by candidate
    regridded: list[str] = field(default_factory=list)
    reordered: bool = False

    @property
    def continues(self) -> bool:
        return not self.context

    def describe(self) -> str:
        """One line for the log and ``status``."""
        if self.context:
            return f"{', '.join(self.context)} changed: the job starts over"
        parts = [f"{what} {', '.join(names)}" for what, names in (
            ("added", self.added), ("removed", self.removed),
            ("started over", self.restarted), ("grid changed", self.regridded)) if names]
        if self.reordered:
            parts.append("types reordered")
        return "; ".join(parts) or "no change to what is searched"


def compare(old: JobSpec, new: JobSpec) -> SpecEdit:
    """What editing ``old`` into ``new`` changes."""
    context = context_changes(evaluation_context(old), evaluation_context(new))
    before = {m.name: m for m in old.models}
    after = {m.name: m for m in new.models}
    restarted = [n for n in after if n in before
                 and canonical_or_repr(type_identity(before[n]))
                 != canonical_or_repr(type_identity(after[n]))]
    regridded = [n for n in after if n in before and n not in restarted
                 and type_version(before[n]) != type_version(after[n])]
    common_old = [n for n in before if n in after]
    common_new = [n for n in after if n in before]
    return SpecEdit(context=context, added=[n for n in after if n not in before],
                    removed=[n for n in before if n not in after], restarted=restarted,
                    regridded=regridded, reordered=common_old != common_new)


__all__ = ["SpecEdit", "compare", "context_changes", "evaluation_context", "plain",
           "type_identity", "type_version"]
