"""Paired statistics over seeds, standard library only: mean and range, exact sign test, paired t-test.

The t distribution's tail uses the closed forms for an integer number of degrees of freedom
(Abramowitz and Stegun 26.7.3 and 26.7.4), exact for paired tests over n seeds (n - 1 degrees).
Predictions are directional, so both tests are one-sided: "is b larger than a?".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Paired", "paired", "sign_test", "summary", "t_sf"]


def summary(values: Sequence[float]) -> dict[str, float]:
    """``{"mean", "min", "max", "n"}`` of the finite values."""
    values = [float(v) for v in values if v == v]
    if not values:
        return {"mean": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    return {"mean": sum(values) / len(values), "min": min(values), "max": max(values), "n": len(values)}


def sign_test(differences: Sequence[float]) -> float:
    """One-sided exact sign test: P(at least k of n positive | each is positive with probability 1/2),
    with k the positive differences and n the non-zero ones (ties dropped). 1.0 when n is 0."""
    nonzero = [d for d in differences if d != 0 and d == d]
    n, k = len(nonzero), sum(d > 0 for d in nonzero)
    if n == 0:
        return 1.0
    return sum(math.comb(n, i) for i in range(k, n + 1)) / 2 ** n


def t_sf(t: float, df: int) -> float:
    """P(T >= t) for Student's t with an integer ``df >= 1`` degrees of freedom (closed form)."""
    if df < 1:
        raise ValueError(f"t_sf: expected df >= 1, got {df}")
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    theta = math.atan(t / math.sqrt(df))
    c, s = math.cos(theta), math.sin(theta)
    if df % 2 == 1:  # A(t|df) = (2 / pi) (theta + sin cos (1 + 2/3 cos^2 + ...))
        term, series = c, 0.0
        if df > 1:
            series = term
            for k in range(3, df - 1, 2):
                term *= c * c * (k - 1) / k
                series += term
        a = 2 / math.pi * (theta + s * series)
    else:  # A(t|df) = sin (1 + 1/2 cos^2 + 1.3/(2.4) cos^4 + ...)
        term, series = 1.0, 1.0
        for k in range(2, df - 1, 2):
            term *= c * c * (k - 1) / k
            series += term
        a = s * series
    return (1 - a) / 2  # A is P(|T| < t) for t >= 0 and odd in t


@dataclass(frozen=True)
class Paired:
    """``b - a`` per seed, its mean, and the one-sided p-values for "b > a"."""

    differences: tuple[float, ...]
    mean: float
    sign_p: float
    t: float
    t_p: float

    def as_dict(self) -> dict:
        return {"differences": list(self.differences), "mean": self.mean, "sign_p": self.sign_p, "t": self.t,
                "t_p": self.t_p}


def paired(a: Sequence[float], b: Sequence[float]) -> Paired:
    """Paired comparison of ``b`` against ``a`` (same seeds, same order)."""
    if len(a) != len(b) or not a:
        raise ValueError(f"paired: expected two non-empty sequences of one length, got {len(a)} and {len(b)}")
    d = [float(y) - float(x) for x, y in zip(a, b)]
    n = len(d)
    mean = sum(d) / n
    if n < 2:
        return Paired(tuple(d), mean, sign_test(d), float("nan"), float("nan"))
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    if sd == 0:
        t = math.copysign(math.inf, mean) if mean != 0 else 0.0
    else:
        t = mean / (sd / math.sqrt(n))
    return Paired(tuple(d), mean, sign_test(d), t, t_sf(t, n - 1))
