"""Rolling-window call counters that block the way Meta's limits do.

Every call is recorded, including the ones refused while the scope is blocked, so hammering a blocked scope
keeps it blocked: the block ends only once the window holds fewer than `limit` calls again, and never before
a minimum penalty (`min_block_s`, used for business-use-case blocks) has passed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

_COMPACT_AFTER = 1024
"""Evicted timestamps are dropped from the list in one slice once this many have piled up (amortised O(1))."""


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
    blocked_for_s: float = 0.0
    """How long the scope stays blocked after this call if no other call arrives; 0 when it is not blocked."""


class RollingWindowLimiter:
    """Counts calls over the last `window_s` seconds and refuses them once `limit` is reached.

    >>> now = [0.0]
    >>> limiter = RollingWindowLimiter(limit=2, window_s=60.0, clock=lambda: now[0])
    >>> [limiter.hit().allowed for _ in range(3)]
    [True, True, False]
    >>> now[0] = 61.0
    >>> limiter.hit().allowed
    True

    A call is allowed when fewer than `limit` calls sit in the window before it and no block is running.
    The call that finds the window full starts a block lasting at least `min_block_s`, and until the window
    has drained below `limit`; calls during a block are recorded, so they can only push its end further out.
    `limit=None` never blocks but still counts. Safe to share between threads.
    """

    def __init__(
        self,
        limit: int | None,
        window_s: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        min_block_s: float = 0.0,
    ) -> None:
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be at least 1 or None for unlimited, got {limit}")
        if not window_s > 0:
            raise ValueError(f"window_s must be positive, got {window_s}")
        if not min_block_s >= 0:
            raise ValueError(f"min_block_s must not be negative, got {min_block_s}")
        self.limit = limit
        self.window_s = window_s
        self.min_block_s = min_block_s
        self._clock = clock
        # A list with a moving head rather than a deque: the block's end needs the call `limit` places from the
        # newest, and list indexing is O(1) where deque indexing walks its blocks.
        self._calls: list[float] = []
        self._head = 0
        self._blocked_until = float("-inf")
        self._lock = threading.Lock()

    def hit(self) -> LimiterVerdict:
        """Record one call and say whether it may go through."""
        with self._lock:
            now = self._clock()
            self._evict(now)
            count_before = len(self._calls) - self._head
            blocked_before = self.limit is not None and (now < self._blocked_until or count_before >= self.limit)
            self._calls.append(now)
            if blocked_before:
                self._extend_block(now)
            count = count_before + 1
            return LimiterVerdict(
                allowed=not blocked_before,
                count_in_window=count,
                usage_pct=self._pct(count),
                blocked_before=blocked_before,
                blocked_for_s=max(0.0, self._blocked_until - now),
            )

    def count_in_window(self) -> int:
        """Calls recorded during the last `window_s` seconds."""
        with self._lock:
            self._evict(self._clock())
            return len(self._calls) - self._head

    def usage_pct(self) -> int:
        """Calls in the window as a whole percentage of the limit (0 when unlimited; may exceed 100)."""
        return self._pct(self.count_in_window())

    def blocked_for_s(self) -> float:
        """Seconds until the next call would be allowed, if none arrives before; 0 when not blocked."""
        with self._lock:
            return max(0.0, self._blocked_until - self._clock())

    def reset(self) -> None:
        """Forget every recorded call and any running block."""
        with self._lock:
            self._calls.clear()
            self._head = 0
            self._blocked_until = float("-inf")

    def _extend_block(self, now: float) -> None:
        assert self.limit is not None
        # Access returns once the call `limit` places from the newest has left the window.
        full = len(self._calls) - self._head >= self.limit
        drained_at = self._calls[-self.limit] + self.window_s if full else now
        if now >= self._blocked_until:
            self._blocked_until = max(now + self.min_block_s, drained_at)
        else:
            self._blocked_until = max(self._blocked_until, drained_at)

    def _evict(self, now: float) -> None:
        calls = self._calls
        horizon = now - self.window_s
        head = self._head
        end = len(calls)
        while head < end and calls[head] <= horizon:
            head += 1
        if head >= _COMPACT_AFTER and head * 2 >= end:
            del calls[:head]
            head = 0
        self._head = head

    def _pct(self, count: int) -> int:
        if self.limit is None:
            return 0
        return count * 100 // self.limit


class KeyedWindowLimiter:
    """One `RollingWindowLimiter` per key (a token, say), created on first use; safe to share between threads.

    Keys are kept until `reset()`, which is fine for the thousands of customers a benchmark uses.
    """

    def __init__(self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        RollingWindowLimiter(limit, window_s)  # validates the settings once, up front
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._limiters: dict[str, RollingWindowLimiter] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> LimiterVerdict:
        """Record one call for `key` and say whether it may go through."""
        limiter = self._limiters.get(key)
        if limiter is None:
            with self._lock:
                limiter = self._limiters.setdefault(key, RollingWindowLimiter(self.limit, self.window_s, self._clock))
        return limiter.hit()

    def __len__(self) -> int:
        return len(self._limiters)

    def reset(self) -> None:
        """Forget every key."""
        with self._lock:
            self._limiters.clear()
