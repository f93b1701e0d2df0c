"""The intervals and bounds every reported share carries: Wilson's score interval for k of n (what a table shows)
and the exact one-sided Clopper-Pearson bounds (what a certificate proves with).

Example:
    >>> wilson(0, 24)
    (0.0, 0.138)
    >>> round(upper_bound(0, 59, 0.05), 4)      # no hit in 59 images: the rate is below 5 % at 95 % confidence
    0.0495
"""

from __future__ import annotations

import math


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of `hits` / `n` (95 % by default), rounded to 3 places; (0, 1) for n = 0."""
    if not n:
        return (0.0, 1.0)
    p = hits / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (round(max(0.0, (centre - half) / (1 + z * z / n)), 3), round(min(1.0, (centre + half) / (1 + z * z / n)), 3))


def _binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed in log space over the shorter tail."""
    if p <= 0.0 or k >= n:
        return 1.0
    if p >= 1.0 or k < 0:
        return 0.0
    if k > n / 2:  # the other tail has fewer terms; the bounds ask for small probabilities, where this is exact
        return 1.0 - _binomial_cdf(n - k - 1, n, 1.0 - p)
    lp, lq = math.log(p), math.log1p(-p)
    terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq
             for i in range(k + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def upper_bound(hits: int, n: int, alpha: float) -> float:
    """The exact (Clopper-Pearson) one-sided upper confidence bound at level 1 - `alpha` on a rate seen `hits` times
    in `n`: the largest p under which seeing `hits` or fewer still has probability `alpha` (1 for n = 0)."""
    if hits >= n:
        return 1.0
    lo, hi = hits / n, 1.0
    for _ in range(60):  # bisection: P(X <= hits | p) falls as p grows
        mid = (lo + hi) / 2
        if _binomial_cdf(hits, n, mid) > alpha:
            lo = mid
        else:
            hi = mid
    return hi


def lower_bound(hits: int, n: int, alpha: float) -> float:
    """The exact one-sided lower confidence bound at level 1 - `alpha` (0 for n = 0 or no hit)."""
    return 1.0 - upper_bound(n - hits, n, alpha) if n else 0.0
