"""Is one candidate really better than another? The fold-paired corrected t-test.

Scores on the folds of one cross-validation are not independent (the training sets
overlap), so a plain paired t-test is too confident. Nadeau and Bengio's correction
scales the variance of the per-fold differences by ``1/k + n_test/n_train``, as
scikit-learn's example "Statistical comparison of models using grid search" does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: below this one-sided p-value the best is called better than the other
ALPHA = 0.05


@dataclass(frozen=True)
class Comparison:
    #: mean of (best - other) over the folds
    mean_difference: float
    t: float
    #: one-sided: the chance of a mean difference this large if the two were equally good
    p: float

    @property
    def indistinguishable(self) -> bool:
        """Not significantly worse than the best at :data:`ALPHA` (NaN p: unknown → False)."""
        return not math.isnan(self.p) and self.p >= ALPHA


def corrected_ttest(best: Sequence[float] | np.ndarray, other: Sequence[float] | np.ndarray,
                    n_train: float, n_test: float) -> Comparison:
    """Nadeau–Bengio corrected, fold-paired, one-sided t-test of ``best > other``.

    ``best`` and ``other`` are the two candidates' scores on the same folds. A fold
    whose fit failed (NaN) makes the comparison unknown (p = NaN).
    """
    from scipy.stats import t as student_t

    a = np.asarray(best, dtype=float)
    b = np.asarray(other, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"fold scores must pair up: {a.shape} vs {b.shape}")
    k = a.size
    diff = a - b
    if k < 2 or not np.isfinite(diff).all() or n_train <= 0:
        return Comparison(float("nan"), float("nan"), float("nan"))
    mean = float(diff.mean())
    var = float(diff.var(ddof=1)) * (1.0 / k + n_test / n_train)
    if var <= 0.0:
        # the same difference on every fold: none at all is a tie, anything else is certain
        if mean == 0.0:
            return Comparison(0.0, 0.0, 1.0)
        return Comparison(mean, math.copysign(math.inf, mean), 0.0 if mean > 0 else 1.0)
    t = mean / math.sqrt(var)
    return Comparison(mean, t, float(student_t.sf(t, k - 1)))


def split_sizes(splits: Sequence[tuple[Sequence[int], Sequence[int]]]) -> tuple[float, float]:
    """Mean (n_train, n_test) over the CV splits; (0, 0) when there are none."""
    if not splits:
        return 0.0, 0.0
    return (float(np.mean([len(tr) for tr, _ in splits])),
            float(np.mean([len(te) for _, te in splits])))
