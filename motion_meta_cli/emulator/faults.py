"""Seeded fault injection: which requests fail, how, and how much extra latency each gets.

With a seed, the nth request of each caller (its access token) draws its faults from `random.Random` seeded
with the seed, the caller and n: one seed and one configuration give every caller the same faults on every
run, however the callers' requests interleave. Without one, every request draws from one unseeded generator.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from enum import StrEnum

from motion_meta_cli.emulator.config import RATE_SUM_SLACK, EmulatorConfig


class Fault(StrEnum):
    """A way a request can go wrong; the value is its key in `/__stats` `faults`."""

    SERVER_ERROR = "500"
    TRANSIENT = "transient"
    HTML = "html"
    MALFORMED_USAGE = "malformed_usage"
    STRING_NUMBERS = "string_numbers"
    DROPPED = "dropped"
    SLOW = "slow"


@dataclass(frozen=True, slots=True)
class FaultDraw:
    """The faults one request gets."""

    response: Fault | None = None
    """Replaces the answer: SERVER_ERROR, TRANSIENT, HTML or DROPPED."""
    headers: Fault | None = None
    """Garbles the usage headers: MALFORMED_USAGE or STRING_NUMBERS."""
    extra_latency_s: float = 0.0
    """Jitter, and `slow_s` when `slow`."""
    slow: bool = False


NO_FAULT = FaultDraw()


class FaultInjector:
    """Draws each request's faults from the rates in an `EmulatorConfig`; safe to share between threads.

    >>> injector = FaultInjector(EmulatorConfig(fault_500_rate=1.0, seed=1))
    >>> injector.draw().response
    <Fault.SERVER_ERROR: '500'>
    """

    def __init__(self, config: EmulatorConfig) -> None:
        self._response_faults = _cumulative(config.response_fault_rates)
        self._header_faults = _cumulative(config.header_fault_rates)
        self._jitter_s = config.latency_jitter_s
        self._slow_rate, self._slow_s = config.fault_slow_rate, config.slow_s
        self.active = bool(self._response_faults or self._header_faults or self._jitter_s or self._slow_rate)
        """False when nothing is ever injected; `draw()` then costs nothing and draws nothing."""
        self._seed = config.seed
        self._rng = random.Random()
        self._drawn: dict[str, int] = {}
        self._lock = threading.Lock()

    def draw(self, caller: str = "") -> FaultDraw:
        """The faults of `caller`'s next request."""
        if not self.active:
            return NO_FAULT
        with self._lock:
            n = self._drawn[caller] = self._drawn.get(caller, 0) + 1
            rng = self._rng if self._seed is None else random.Random(f"{self._seed}:{caller}:{n}")
            response_roll = rng.random() if self._response_faults else 1.0
            header_roll = rng.random() if self._header_faults else 1.0
            extra_latency_s = rng.uniform(0.0, self._jitter_s) if self._jitter_s else 0.0
            slow = rng.random() < self._slow_rate if self._slow_rate else False
        return FaultDraw(
            _pick(self._response_faults, response_roll),
            _pick(self._header_faults, header_roll),
            extra_latency_s + (self._slow_s if slow else 0.0),
            slow,
        )


def _cumulative(rates: dict[str, float]) -> list[tuple[float, Fault]]:
    """Upper bounds of each fault's slice of [0, 1), for the faults that can happen at all."""
    bounds: list[tuple[float, Fault]] = []
    total = 0.0
    for name, rate in rates.items():
        if rate > 0:
            total += rate
            bounds.append((total, Fault(name)))
    if bounds and total >= 1 - RATE_SUM_SLACK:  # rates meant to add up to 1 must always fault, float noise or not
        bounds[-1] = (1.0, bounds[-1][1])
    return bounds


def _pick(bounds: list[tuple[float, Fault]], roll: float) -> Fault | None:
    for upper, fault in bounds:
        if roll < upper:
            return fault
    return None
