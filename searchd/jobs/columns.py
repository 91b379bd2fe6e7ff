"""Column-wise preprocessing in a job file: a ``ColumnTransformer``'s ``transformers``.

Each transformer is a table with ``name``, ``columns`` (header names, or a dtype selector
``{ dtype = "number" }`` as ``make_column_selector`` takes it) and either ``estimator``
(+ ``params``; also ``"drop"`` or ``"passthrough"``) or ``steps``, a list of
``{ estimator, params }`` (optionally ``name``) run as a pipeline. Checked here into plain
JSON-able values (the spec's :data:`~searchd.jobs.spec.Value`); the worker builds them
(:mod:`searchd.worker.columns`). Pure Python: the supervisor checks jobs with it too.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from searchd.jobs.messages import brief

if TYPE_CHECKING:
    from searchd.jobs.spec import Value
    from searchd.jobs.validate import Validator

#: what ``{ dtype = ... }`` may name: pandas' ``select_dtypes`` words
DTYPES = ("number", "object", "str", "string", "category", "bool", "integer", "int",
          "float", "floating", "datetime", "timedelta", "int64", "int32", "float64", "float32")
#: the strings scikit-learn takes in place of a transformer
SPECIAL = ("drop", "passthrough")
#: ColumnTransformer's own parameters: a transformer may not take their names
OWN = ("transformers", "remainder", "sparse_threshold", "n_jobs", "transformer_weights",
       "verbose", "verbose_feature_names_out", "force_int_remainder_cols")
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
#: longest regular expression a selector's ``pattern`` may be (it runs on column names)
MAX_PATTERN = 100


def is_transformers(v: Any) -> bool:
    """Whether a ``transformers`` value is written as the job-file tables above."""
    return isinstance(v, list) and bool(v) and all(isinstance(t, dict) for t in v)


def transformers(v: list[dict[str, Any]], key: str, check: Validator) -> list[Value]:
    """The checked transformer tables of ``key`` (``preprocess[0].params.transformers``)."""
    out: list[Value] = []
    seen: set[str] = set()
    for i, t in enumerate(v):
        at = f"{key}[{i}]"
        has_steps = "steps" in t
        check.keys(t, at, {"name", "columns", "steps"} if has_steps
                   else {"name", "columns", "estimator", "params"})
        name = check.string(t.get("name"), f"{at}.name")
        if not NAME.fullmatch(name) or "__" in name or name in OWN:
            raise check.fail(f"{at}.name", f"{brief(name)} is not a usable transformer name "
                             "(letters, digits, '_', '-', no '__', not one of "
                             "ColumnTransformer's parameters)")
        if name in seen:
            raise check.fail(f"{at}.name", f"transformer {brief(name)} appears twice")
        seen.add(name)
        entry: dict[str, Value] = {"name": name, "columns": columns(t.get("columns"),
                                                                    f"{at}.columns", check)}
        if has_steps:
            entry["steps"] = steps(t["steps"], f"{at}.steps", check)
        else:
            est = check.string(t.get("estimator"), f"{at}.estimator")
            if est in SPECIAL and t.get("params"):
                raise check.fail(f"{at}.params", f"{brief(est)} takes no params")
            entry["estimator"] = est
            entry["params"] = check.params(t.get("params"), f"{at}.params")
        out.append(entry)
    return out


def steps(v: Any, key: str, check: Validator) -> list[Value]:
    if not isinstance(v, list) or not v:
        raise check.fail(key, f"expected a list of {{ estimator = ..., params = ... }}, "
                         f"got {brief(v)}")
    out: list[Value] = []
    names: set[str] = set()
    for i, s in enumerate(v):
        at = f"{key}[{i}]"
        s = check.table(s, at, required=True)
        check.keys(s, at, {"name", "estimator", "params"})
        step: dict[str, Value] = {"estimator": check.string(s.get("estimator"),
                                                            f"{at}.estimator"),
                                  "params": check.params(s.get("params"), f"{at}.params")}
        if "name" in s:
            name = check.string(s["name"], f"{at}.name")
            if not NAME.fullmatch(name) or "__" in name or name in ("steps", "memory",
                                                                    "verbose",
                                                                    "transform_input"):
                raise check.fail(f"{at}.name", f"{brief(name)} is not a usable step name "
                                 "(letters, digits, '_', '-', no '__')")
            if name in names:
                raise check.fail(f"{at}.name", f"step {brief(name)} appears twice")
            names.add(name)
            step["name"] = name
        out.append(step)
    return out


def columns(v: Any, key: str, check: Validator) -> Value:
    """A list of column names, or a selector table ``{ dtype, exclude, pattern }``."""
    if isinstance(v, list):
        if not v or not all(isinstance(c, str) and c for c in v):
            raise check.fail(key, f"expected a list of column names, got {brief(v)}")
        if len(set(v)) != len(v):
            raise check.fail(key, f"names a column twice: {brief(v)}")
        return list(v)
    if not isinstance(v, dict) or not v:
        raise check.fail(key, "expected a list of column names or a selector such as "
                         f"{{ dtype = \"number\" }}, got {brief(v)}")
    check.keys(v, key, {"dtype", "exclude", "pattern"})
    out: dict[str, Value] = {}
    for k in ("dtype", "exclude"):
        if k in v:
            names = v[k] if isinstance(v[k], list) else [v[k]]
            for n in names:
                if n not in DTYPES:
                    raise check.fail(f"{key}.{k}", f"{brief(n)} is not a dtype a selector "
                                     f"takes (one of {', '.join(DTYPES)})")
            out[k] = list(names)
    if "pattern" in v:
        p = check.string(v["pattern"], f"{key}.pattern")
        if len(p) > MAX_PATTERN:
            raise check.fail(f"{key}.pattern", f"longer than {MAX_PATTERN} characters")
        try:
            re.compile(p)
        except (re.error, RecursionError, OverflowError) as e:
            raise check.fail(f"{key}.pattern", f"not a regular expression: {e}") from None
        out["pattern"] = p
    return out
