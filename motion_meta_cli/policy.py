"""The retry policy: given what Meta said, decide what to do. Pure; the request manager acts on it.

policy = RetryPolicy(platform_config)
policy.decide(classification, failures=1, throttles=0, scope="app")
# -> RetryAfter(0.43, ...) | PauseScope("app", 60.0, ...) | GiveUp(...)
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
class PauseScope:
    """Meta throttled `scope`: no request on it for `duration_s`, then try again."""

    scope: str
    duration_s: float
    reason: str
    from_eta: bool


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Stop: retrying cannot help, or the retry budget is spent."""

    reason: str


Decision = RetryAfter | PauseScope | GiveUp


class RetryPolicy:
    """Capped exponential backoff with jitter for transient failures; pauses for throttles.

    A throttle with an ETA pauses exactly that long: probing early lengthens Meta's block. Without an
    ETA the pause starts at `pause_floor_s` and doubles per consecutive throttle up to `pause_cap_s`.
    """

    def __init__(self, config: MetaPlatformConfig, *, random: Callable[[], float] = _random.random) -> None:
        self._retry = config.retry
        self._throttle = config.throttle
        self._random = random

    def backoff_s(self, failures: int) -> float:
        """Delay before retry number `failures` (1-based): base × 2^(n-1), capped, minus up to jitter_ratio."""
        ceiling = min(self._retry.backoff_cap_s, self._retry.backoff_base_s * 2 ** max(failures - 1, 0))
        return float(ceiling * (1 - self._retry.jitter_ratio * self._random()))

    def throttle_pause_s(self, throttles: int, eta_s: float | None) -> float:
        """How long a scope pauses after its `throttles`-th consecutive throttle (1-based)."""
        if eta_s is not None and eta_s > 0:
            return eta_s
        cap = self._throttle.cap_s
        base = min(cap, self._throttle.floor_s * 2 ** max(throttles - 1, 0))
        # Jitter only upwards, and only a little: a pause shorter than the floor invites another throttle.
        return float(min(cap, base * (1 + self._retry.jitter_ratio * self._random() / 4)))

    def decide(self, classification: Classification, *, failures: int, throttles: int, scope: str) -> Decision:
        """What to do after a failed attempt: `failures` counts transient failures so far, `throttles` throttles."""
        kind = classification.kind
        if kind is ErrorKind.THROTTLED:
            return PauseScope(
                scope=scope,
                duration_s=self.throttle_pause_s(throttles, classification.eta_s),
                reason=classification.reason,
                from_eta=classification.eta_s is not None and classification.eta_s > 0,
            )
        if kind is ErrorKind.TRANSIENT:
            if failures >= self._retry.max_attempts:
                return GiveUp(f"{classification.reason} (gave up after {failures} attempts)")
            return RetryAfter(self.backoff_s(failures), classification.reason)
        return GiveUp(classification.reason)
