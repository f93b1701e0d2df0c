"""The one interval every reported share carries: Wilson's score interval for k of n.

Example:
    >>> wilson(0, 24)
    (0.0, 0.138)
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
