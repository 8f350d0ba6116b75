"""Learning a scope's budget (calls per window) from usage headers. Pure functions."""

from __future__ import annotations

import math

PRECISE_FROM_PCT = 50.0
"""From this usage on, a whole-percent reading pins the budget within 2 %."""


def estimate_capacity(sends: int, usage_pct: float) -> int | None:
    """Calls per window, from `sends` of ours that the reading counted and the reported usage percentage.

    Meta reports usage in whole percent. Below `PRECISE_FROM_PCT` the reading is coarse, so the lower
    bound 100·n/(u+1) is used (it only grows as readings come back: the ramp-up); from there on
    100·n/u, which is exact when the percentage is truncated. Other traffic on the same app raises u
    and so lowers the estimate: the error is always on the safe side.
    """
    if sends <= 0 or usage_pct < 0:
        return None
    if usage_pct >= PRECISE_FROM_PCT:
        return max(1, math.floor(100 * sends / usage_pct))
    return max(1, math.floor(100 * sends / (usage_pct + 1)))
