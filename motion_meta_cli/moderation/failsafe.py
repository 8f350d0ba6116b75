"""Moderation that survives its backend: while the shared state cannot be reached, moderate in-process
(and say so once), then share again as soon as it answers.

In-process moderation starts from the records the shared state last returned (cooldowns, budgets, the
instances that share them), so nothing it knew is forgotten, and from this instance's own sends in the
window, so that its share counts them. What it sends in-process is in no shared log: the heartbeat
announces it once the shared state answers again (`presence`, `rules.share`). What was
taken from one backend is never given back to the other: a probe or slot taken in Redis and released
while Redis is away stays in Redis until its lease (one attempt) runs out.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TypeVar

from motion_meta_cli import metrics
from motion_meta_cli.errors import BackendUnavailableError
from motion_meta_cli.moderation.rules import Limit
from motion_meta_cli.moderation.state import Admission as Admitted
from motion_meta_cli.moderation.state import Change, LocalState, ModerationState, Record
from motion_meta_cli.storage.breaker import Admission, CircuitBreaker

log = logging.getLogger(__name__)

T = TypeVar("T")


class FailSafeState:
    """`ModerationState` over a shared one, falling back to a `LocalState` while it is unreachable.

    A circuit breaker decides: once the shared state fails to answer, every call goes in-process at once,
    and one call at a time (every RETRY_S) tries the shared state again, so a backend that hangs until its
    timeout costs that one call, not every thread's.
    """

    def __init__(self, shared: ModerationState, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.shared = shared
        self.fallback = LocalState(time.time)
        self._breaker = CircuitBreaker(clock)
        self._known: dict[str, Record] = {}
        """The records as the shared state last returned them: where in-process moderation starts from."""
        self._known_lock = threading.Lock()
        self._sent = _Sends()
        """This instance's sends in the window, per log, as the shared logs hold them: a share counts them."""
        self._sent_alone = _Sends()
        """Its sends while in-process (in no shared log), which the heartbeat announces (`alone`)."""

    @property
    def degraded(self) -> bool:
        """True while moderating in-process only."""
        return not self._breaker.closed

    def _call(self, operation: Callable[[ModerationState], T]) -> T:
        admission = self._breaker.admit()
        if admission is None:
            return operation(self.fallback)
        try:
            result = operation(self.shared)
        except BackendUnavailableError as exc:
            metrics.backend_errors.labels("moderation").inc()
            first = self._breaker.closed
            self._breaker.failed(admission)
            if first:
                with self._known_lock:
                    self.fallback.load(self._known, self._sent.merged(self._sent_alone))
                log.warning("%s; moderating in this process only until it answers again", exc)
            return operation(self.fallback)
        except BaseException:
            self._breaker.abandoned(admission)
            raise
        if admission is Admission.TRIAL:
            self._breaker.succeeded(admission)
            log.warning("the moderation state answers again; moderation is shared again")
        return result

    def read(self, keys: Sequence[str] | None) -> tuple[int, dict[str, Record]]:
        """See `ModerationState`."""

        def read(state: ModerationState) -> tuple[int, dict[str, Record]]:
            now, records = state.read(keys)
            if state is self.shared:
                self._remember(keys, records)
            return now, records

        return self._call(read)

    def update(self, key: str, change: Change) -> Record | None:
        """See `ModerationState`."""

        def update(state: ModerationState) -> Record | None:
            new = state.update(key, change)
            if state is self.shared:
                self._remember([key], {key: new} if new is not None else {})
            return new

        return self._call(update)

    def admit(self, limits: Sequence[Limit], window_ms: int, margin_ms: int) -> Admitted:
        """See `ModerationState`."""

        def admit(state: ModerationState) -> Admitted:
            admitted = state.admit(limits, window_ms, margin_ms)
            if admitted.wait_ms <= 0:
                sent = self._sent if state is self.shared else self._sent_alone
                sent.add([rule.log for rule in limits if rule.record], admitted.now_ms, window_ms)
            return admitted

        return self._call(admit)

    def alone(self, window_ms: int) -> dict[str, int]:
        """Sends per log made in-process (so in no shared log) in the last `window_ms`."""
        return self._sent_alone.counts(int(time.time() * 1000) - window_ms)

    def _remember(self, keys: Sequence[str] | None, records: dict[str, Record]) -> None:
        """Keep what the shared state said of `keys` (of every key when None)."""
        with self._known_lock:
            if keys is None:
                self._known = dict(records)
            for key in keys or ():
                if key in records:
                    self._known[key] = records[key]
                else:
                    self._known.pop(key, None)

    def close(self) -> None:
        """Close the shared state's connections, if it has any of its own."""
        close = getattr(self.shared, "close", None)
        if close is not None:
            close()


class _Sends:
    """When this instance's requests left, per log, for one window (epoch milliseconds); thread-safe."""

    def __init__(self) -> None:
        self._logs: dict[str, deque[int]] = {}
        self._lock = threading.Lock()

    def add(self, logs: Sequence[str], now_ms: int, window_ms: int) -> None:
        with self._lock:
            for name in logs:
                times = self._logs.setdefault(name, deque())
                times.append(now_ms)
                while times and times[0] <= now_ms - window_ms:
                    times.popleft()

    def counts(self, since_ms: int) -> dict[str, int]:
        with self._lock:
            counted = {name: sum(t > since_ms for t in times) for name, times in self._logs.items()}
        return {name: n for name, n in counted.items() if n}

    def merged(self, other: _Sends) -> dict[str, list[int]]:
        with self._lock, other._lock:
            names = self._logs.keys() | other._logs.keys()
            return {n: sorted([*self._logs.get(n, ()), *other._logs.get(n, ())]) for n in names}
