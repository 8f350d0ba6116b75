"""Cooldowns: "no requests on this scope until T", extended but never shortened.

`LocalCooldowns` keeps them in this process; the request manager depends only on the `Cooldowns`
protocol, so a shared implementation can make every instance honour the same pause.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Protocol


class Cooldowns(Protocol):
    """Pauses per scope (`app`, `user:acme`, `buc:123:ads_management`, ...)."""

    def pause(self, scope: str, duration_s: float) -> bool:
        """Pause `scope` for `duration_s` from now unless it is already paused longer; True if extended."""
        ...

    def remaining_s(self, scopes: Iterable[str]) -> tuple[float, str | None]:
        """The longest remaining pause among `scopes`, and which scope it is (0.0, None when none)."""
        ...


class LocalCooldowns:
    """`Cooldowns` held in memory, shared by the threads of one process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def pause(self, scope: str, duration_s: float) -> bool:
        """Pause `scope` for `duration_s` from now unless it is already paused longer; True if extended."""
        until = self._clock() + duration_s
        with self._lock:
            if until <= self._until.get(scope, float("-inf")):
                return False
            self._until[scope] = until
            return True

    def remaining_s(self, scopes: Iterable[str]) -> tuple[float, str | None]:
        """The longest remaining pause among `scopes`, and which scope it is."""
        now = self._clock()
        longest, which = 0.0, None
        with self._lock:
            for scope in scopes:
                left = self._until.get(scope, now) - now
                if left > longest:
                    longest, which = left, scope
        return longest, which

    def active(self) -> dict[str, float]:
        """Every scope still paused, with its remaining seconds."""
        now = self._clock()
        with self._lock:
            return {scope: until - now for scope, until in self._until.items() if until > now}
