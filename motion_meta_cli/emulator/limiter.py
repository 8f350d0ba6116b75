"""A rolling-window call counter that blocks the way Meta's app limit does.

Every call is recorded, including the ones refused while the scope is blocked, so hammering a blocked app
keeps it blocked: the block ends only once the window holds fewer than `limit` calls again.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LimiterVerdict:
    """What the limiter decided about one call."""

    allowed: bool
    count_in_window: int
    """Calls in the window after recording this one."""
    usage_pct: int
    """`count_in_window` as a whole percentage of the limit; 0 when unlimited, may exceed 100."""
    blocked_before: bool
    """The scope was already blocked when this call arrived."""


class RollingWindowLimiter:
    """Counts calls over the last `window_s` seconds and refuses them once `limit` is reached.

    >>> now = [0.0]
    >>> limiter = RollingWindowLimiter(limit=2, window_s=60.0, clock=lambda: now[0])
    >>> [limiter.hit().allowed for _ in range(3)]
    [True, True, False]
    >>> now[0] = 61.0
    >>> limiter.hit().allowed
    True

    A call is allowed when fewer than `limit` calls sit in the window before it. `limit=None` never blocks
    but still counts. Safe to share between threads.
    """

    def __init__(self, limit: int | None, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be at least 1 or None for unlimited, got {limit}")
        if window_s <= 0:
            raise ValueError(f"window_s must be positive, got {window_s}")
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._calls: deque[float] = deque()
        self._lock = threading.Lock()

    def hit(self) -> LimiterVerdict:
        """Record one call and say whether it may go through."""
        with self._lock:
            now = self._clock()
            self._evict(now)
            blocked_before = self.limit is not None and len(self._calls) >= self.limit
            self._calls.append(now)
            count = len(self._calls)
            return LimiterVerdict(
                allowed=not blocked_before,
                count_in_window=count,
                usage_pct=self._pct(count),
                blocked_before=blocked_before,
            )

    def count_in_window(self) -> int:
        """Calls recorded during the last `window_s` seconds."""
        with self._lock:
            self._evict(self._clock())
            return len(self._calls)

    def usage_pct(self) -> int:
        """Calls in the window as a whole percentage of the limit (0 when unlimited; may exceed 100)."""
        return self._pct(self.count_in_window())

    def reset(self) -> None:
        """Forget every recorded call."""
        with self._lock:
            self._calls.clear()

    def _evict(self, now: float) -> None:
        horizon = now - self.window_s
        while self._calls and self._calls[0] <= horizon:
            self._calls.popleft()

    def _pct(self, count: int) -> int:
        if self.limit is None:
            return 0
        return count * 100 // self.limit
