"""Distributions in a random or halving search's grid: ``{ loguniform = [a, b] }``.

A job file names a ``scipy.stats`` univariate distribution by scipy's own name and gives
its positional arguments (``{ randint = [low, high] }``, ``{ uniform = [loc, scale] }``).
The names are a fixed allow-list of scipy's public distributions, so the supervisor checks
them without importing scipy; the worker freezes them (``scipy.stats.<name>(*args)``) and
hands them to ``ParameterSampler`` as ``RandomizedSearchCV`` would get them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

#: scipy.stats' public univariate distributions (rv_continuous and rv_discrete instances in
#: ``scipy.stats.__all__``, scipy 1.17); tests/test_random_search.py checks it against scipy
CONTINUOUS = (
    "alpha", "anglit", "arcsine", "argus", "beta", "betaprime", "bradford", "burr", "burr12",
    "cauchy", "chi", "chi2", "cosine", "crystalball", "dgamma", "dpareto_lognorm", "dweibull",
    "erlang", "expon", "exponnorm", "exponpow", "exponweib", "f", "fatiguelife", "fisk",
    "foldcauchy", "foldnorm", "gamma", "gausshyper", "genexpon", "genextreme", "gengamma",
    "genhalflogistic", "genhyperbolic", "geninvgauss", "genlogistic", "gennorm", "genpareto",
    "gibrat", "gompertz", "gumbel_l", "gumbel_r", "halfcauchy", "halfgennorm", "halflogistic",
    "halfnorm", "hypsecant", "invgamma", "invgauss", "invweibull", "irwinhall", "jf_skew_t",
    "johnsonsb", "johnsonsu", "kappa3", "kappa4", "ksone", "kstwo", "kstwobign", "landau",
    "laplace", "laplace_asymmetric", "levy", "levy_l", "levy_stable", "loggamma", "logistic",
    "loglaplace", "lognorm", "loguniform", "lomax", "maxwell", "mielke", "moyal", "nakagami",
    "ncf", "nct", "ncx2", "norm", "norminvgauss", "pareto", "pearson3", "powerlaw",
    "powerlognorm", "powernorm", "rayleigh", "rdist", "recipinvgauss", "reciprocal",
    "rel_breitwigner", "rice", "semicircular", "skewcauchy", "skewnorm", "studentized_range",
    "t", "trapezoid", "triang", "truncexpon", "truncnorm", "truncpareto", "truncweibull_min",
    "tukeylambda", "uniform", "vonmises", "vonmises_line", "wald", "weibull_max",
    "weibull_min", "wrapcauchy")
DISCRETE = (
    "bernoulli", "betabinom", "betanbinom", "binom", "boltzmann", "dlaplace", "geom",
    "hypergeom", "logser", "nbinom", "nchypergeom_fisher", "nchypergeom_wallenius",
    "nhypergeom", "planck", "poisson", "poisson_binom", "randint", "skellam", "yulesimon",
    "zipf", "zipfian")
NAMES = frozenset(CONTINUOUS + DISCRETE)
#: more positional arguments than any distribution takes (loc and scale included)
MAX_ARGS = 8


@dataclass(frozen=True)
class Distribution:
    """A grid value sampled from ``scipy.stats.<name>(*args)``."""

    name: str
    args: tuple[float, ...]

    def frozen(self) -> Any:
        """The frozen scipy distribution (imports scipy: the worker's side only).

        Raises ValueError or TypeError when scipy refuses the arguments.
        """
        import numpy as np
        import scipy.stats

        dist = getattr(scipy.stats, self.name)(*self.args)
        # scipy freezes bad arguments silently and fails at the first draw: draw once from a
        # throwaway generator (the search's own generator is untouched)
        value = dist.rvs(random_state=np.random.RandomState(0))
        if not np.isfinite(value):
            raise ValueError(f"draws {value}")
        return dist

    def shown(self) -> str:
        return f"{{{self.name} = {list(self.args)}}}"


def looks_like_distribution(v: Any) -> bool:
    """A one-key table whose key is not a value helper or None: meant as a distribution."""
    return isinstance(v, dict) and len(v) == 1 and next(iter(v)) not in (
        "range", "linspace", "logspace", "none", "estimator")


def distribution_problem(v: dict[str, Any]) -> str | None:
    """What is wrong with ``{name = [args]}``, or None when it names a distribution."""
    name, args = next(iter(v.items()))
    if name not in NAMES:
        return (f"{name!r} is not a scipy.stats distribution searchd knows (e.g. loguniform, "
                "uniform, randint, norm, expon)")
    if not isinstance(args, list) or not all(
            isinstance(a, (int, float)) and not isinstance(a, bool) for a in args):
        return f"{name}: expected a list of numbers (scipy's positional arguments), got {args!r}"
    if len(args) > MAX_ARGS:
        return f"{name}: expected at most {MAX_ARGS} arguments, got {len(args)}"
    if not all(math.isfinite(a) for a in args):
        return f"{name}: expected finite numbers, got {args!r}"
    return None


def parse_distribution(v: dict[str, Any]) -> Distribution:
    name, args = next(iter(v.items()))
    return Distribution(name, tuple(args))
