"""Moderation that survives its backend: while the shared state cannot be reached, moderate in-process
(and say so once), then share again as soon as it answers.

What was taken from one backend is never given back to the other: a probe or slot taken in Redis and
released while Redis is away stays in Redis until its lease (one attempt) runs out.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from motion_meta_cli.errors import BackendUnavailableError
from motion_meta_cli.moderation.rules import Limit
from motion_meta_cli.moderation.state import Admission, Change, LocalState, ModerationState, Record

log = logging.getLogger(__name__)

T = TypeVar("T")

RETRY_SHARED_S = 2.0
"""While the shared state is away, how often to try it again."""


class FailSafeState:
    """`ModerationState` over a shared one, falling back to a `LocalState` while it is unreachable."""

    def __init__(self, shared: ModerationState, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.shared = shared
        self.fallback = LocalState(time.time)
        self._clock = clock
        self._retry_at: float | None = None
        self._lock = threading.Lock()

    @property
    def degraded(self) -> bool:
        """True while moderating in-process only."""
        return self._retry_at is not None

    def _call(self, operation: Callable[[ModerationState], T]) -> T:
        with self._lock:
            retry_at = self._retry_at
        if retry_at is not None and self._clock() < retry_at:
            return operation(self.fallback)
        try:
            result = operation(self.shared)
        except BackendUnavailableError as exc:
            with self._lock:
                first, self._retry_at = self._retry_at is None, self._clock() + RETRY_SHARED_S
            if first:
                log.warning("%s; moderating in this process only until it answers again", exc)
            return operation(self.fallback)
        if retry_at is not None:
            with self._lock:
                self._retry_at = None
            log.warning("the moderation state answers again; moderation is shared again")
        return result

    def read(self, keys: Sequence[str] | None) -> tuple[int, dict[str, Record]]:
        """See `ModerationState`."""
        return self._call(lambda state: state.read(keys))

    def update(self, key: str, change: Change) -> Record | None:
        """See `ModerationState`."""
        return self._call(lambda state: state.update(key, change))

    def admit(self, limits: Sequence[Limit], window_ms: int, margin_ms: int) -> Admission:
        """See `ModerationState`."""
        return self._call(lambda state: state.admit(limits, window_ms, margin_ms))

    def close(self) -> None:
        """Close the shared state's connections, if it has any of its own."""
        close = getattr(self.shared, "close", None)
        if close is not None:
            close()
