"""The retry policy for failures that are no throttle: retry after a backoff, or give up. Pure; the
request manager acts on it. (Throttles are moderation's: `moderation.rules`.)

policy = RetryPolicy(platform_config)
policy.decide(classification, failures=1)       # -> RetryAfter(0.43, ...) | GiveUp(...)
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable
from dataclasses import dataclass

from motion_meta_cli.config import MetaPlatformConfig
from motion_meta_cli.meta import Classification, ErrorKind


@dataclass(frozen=True, slots=True)
class RetryAfter:
    """Try the same request again after `delay_s` (a transient failure)."""

    delay_s: float
    reason: str


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Stop: retrying cannot help, or the retry budget is spent."""

    reason: str


Decision = RetryAfter | GiveUp


class RetryPolicy:
    """Capped exponential backoff with jitter for transient failures; everything else gives up."""

    def __init__(self, config: MetaPlatformConfig, *, random: Callable[[], float] = _random.random) -> None:
        self._retry = config.retry
        self._random = random

    def backoff_s(self, failures: int) -> float:
        """Delay before retry number `failures` (1-based): base × 2^(n-1), capped, minus up to jitter_ratio."""
        ceiling = min(self._retry.backoff_cap_s, self._retry.backoff_base_s * 2 ** max(failures - 1, 0))
        return float(ceiling * (1 - self._retry.jitter_ratio * self._random()))

    def decide(self, classification: Classification, *, failures: int) -> Decision:
        """What to do after a failed attempt that was no throttle: `failures` counts transient failures so far."""
        kind = classification.kind
        if classification.reduce_request:  # the same request fails the same way: the caller asks for less
            return GiveUp(classification.reason)
        if kind is ErrorKind.TRANSIENT:
            if failures >= self._retry.max_attempts:
                return GiveUp(f"{classification.reason} (gave up after {failures} attempts)")
            return RetryAfter(self.backoff_s(failures), classification.reason)
        return GiveUp(classification.reason)
