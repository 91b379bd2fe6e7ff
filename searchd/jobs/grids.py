"""Grid values: lists and the range/linspace/logspace helpers, counted without being built
(a hostile grid's product can have a million digits) and expanded once the count is sane."""

from __future__ import annotations

import math
from typing import Any

from searchd.errors import JobSpecError
from searchd.jobs.messages import brief, show
from searchd.jobs.spec import Value

HELPERS = ("range", "linspace", "logspace")


def _count(n: float) -> int:
    return max(0, int(n))


def _range_len(start: Any, stop: Any, step: Any) -> int:
    """How many values range-like [start, stop, step] gives, without building them.

    Integer arithmetic for ints: ``len(range(...))`` overflows past sys.maxsize,
    and JSON integers are unbounded.
    """
    if all(isinstance(a, int) for a in (start, stop, step)):
        return max(0, -((start - stop) // step))
    return _count(math.ceil((stop - start) / step))


def _range_args(args: list[Any]) -> tuple[Any, Any, Any]:
    """Python's range() arguments: [stop], [start, stop] or [start, stop, step]."""
    if len(args) == 1:
        return 0, args[0], 1
    if len(args) == 2:
        return args[0], args[1], 1
    return args[0], args[1], args[2]


class GridValues:
    """The grid checks of :class:`~searchd.jobs.validate.Validator`, which supplies
    ``fail`` (an error naming the file and the key) and ``value`` (one parameter value)."""

    def fail(self, key: str, problem: str) -> JobSpecError:
        raise NotImplementedError

    def value(self, v: Any, key: str) -> Any:
        raise NotImplementedError

    def grid_size(self, v: Any, key: str) -> int:
        if isinstance(v, list):
            if not v:
                raise self.fail(key, "an empty list gives no candidates")
            return len(v)
        if isinstance(v, dict) and len(v) == 1 and next(iter(v)) in HELPERS:
            kind, args = next(iter(v.items()))
            self.helper_args(kind, args, key)
            if kind == "range":
                try:
                    n = _range_len(*_range_args(args))
                except OverflowError:  # e.g. [0, 1e308, 1e-308]: a count past any float
                    raise self.fail(key, f"{{{kind} = {brief(args)}}} does not give a finite "
                                    "number of values") from None
            else:
                n = args[2]
            if n < 1:
                raise self.fail(key, f"{{{kind} = {brief(args)}}} gives no values")
            return int(n)
        raise self.fail(key, f"expected a list or a range, got {show(v)}")

    def helper_args(self, kind: str, args: Any, key: str) -> None:
        if not isinstance(args, list) or not all(
                isinstance(a, (int, float)) and not isinstance(a, bool) for a in args):
            raise self.fail(key, f"{kind}: expected a list of numbers, got {brief(args)}")
        if kind == "range":
            if not 1 <= len(args) <= 3:
                raise self.fail(key, f"range: expected [stop], [start, stop] or "
                                f"[start, stop, step], got {brief(args)}")
            if len(args) == 3 and args[2] == 0:
                raise self.fail(key, "range: step must not be 0")
        elif len(args) != 3 or not isinstance(args[2], int) or isinstance(args[2], bool):
            raise self.fail(key, f"{kind}: expected [start, stop, count], got {brief(args)}")
        # NaN or inf (TOML nan/inf, JSON NaN/Infinity) would give NaN values or an
        # OverflowError instead of a message; so would ints or powers past a float.
        try:
            if kind == "range":  # huge ints are fine here: the count says no
                finite = all(math.isfinite(a) for a in args if isinstance(a, float))
            else:
                finite = all(math.isfinite(a) for a in args) and math.isfinite(
                    float(args[1]) - float(args[0])) and (
                    kind != "logspace" or math.isfinite(10.0 ** max(args[0], args[1])))
        except OverflowError:
            finite = False
        if not finite:
            raise self.fail(key, f"{kind}: expected finite numbers, got {brief(args)}")

    def grid_values(self, v: Any, key: str) -> list[Value]:
        if isinstance(v, list):
            return [self.value(x, f"{key}[{i}]") for i, x in enumerate(v)]
        kind, args = next(iter(v.items()))
        if kind == "range":
            start, stop, step = _range_args(args)
            if all(isinstance(a, int) for a in (start, stop, step)):
                return list(range(start, stop, step))
            n = _range_len(start, stop, step)
            return [start + i * step for i in range(n)]
        start, stop, n = args
        if n == 1:
            points = [float(start)]
        else:
            points = [start + (stop - start) * (i / (n - 1)) for i in range(n)]
        if kind == "logspace":
            return [10.0 ** p for p in points]
        return [float(p) for p in points]
