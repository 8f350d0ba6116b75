"""Moderation that survives its backend: while the shared state cannot be reached, moderate in-process
(and say so once), then share again as soon as it answers.

A partitioned instance keeps to its fair share: every instance announces itself in the shared record
`instances` (a heartbeat, every HEARTBEAT_S, lasting one window), and the records it last read from the
shared state are kept. When the shared state goes away they become the in-process state, cooldowns as
they were and each metered budget divided by the instances seen (`rules.fair_share`). Once it answers
again, the instance still keeps to that share for one window, in process as well as in the shared logs,
since the shared logs never saw what it sent meanwhile: it rejoins without a burst.

What was taken from one backend is never given back to the other: a probe or slot taken in Redis and
released while Redis is away stays in Redis until its lease (one attempt) runs out.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TypeVar

from motion_meta_cli import metrics
from motion_meta_cli.errors import BackendUnavailableError
from motion_meta_cli.moderation import rules
from motion_meta_cli.moderation.rules import Limit
from motion_meta_cli.moderation.state import Admission as Admitted
from motion_meta_cli.moderation.state import Change, LocalState, ModerationState, Record, holder_id
from motion_meta_cli.storage.breaker import Admission, CircuitBreaker

log = logging.getLogger(__name__)

INSTANCES = "instances"
"""The shared record of instances seen lately: holder -> until (ms), each heartbeat lasting one window."""
HEARTBEAT_S = 10.0
"""How often an instance renews its heartbeat (while the shared state answers)."""


def _replaced_by(record: Record) -> Change:
    def change(_current: Record | None, _now: int) -> Record:
        return record

    return change


def _share(limit: int | None, instances: int) -> int | None:
    return None if limit is None else max(1, limit // max(1, instances))


T = TypeVar("T")


class FailSafeState:
    """`ModerationState` over a shared one, falling back to a `LocalState` while it is unreachable.

    A circuit breaker decides: once the shared state fails to answer, every call goes in-process at once,
    and one call at a time (every RETRY_S) tries the shared state again, so a backend that hangs until its
    timeout costs that one call, not every thread's.
    """

    def __init__(
        self, shared: ModerationState, *, clock: Callable[[], float] = time.monotonic, holder: str | None = None
    ) -> None:
        self.shared = shared
        self.fallback = LocalState(time.time)
        self._breaker = CircuitBreaker(clock)
        self._clock = clock
        self.holder = holder or holder_id()
        self.instances = 1
        """Instances seen in the shared state within the last window (this one included)."""
        self._known: dict[str, Record] = {}
        """The records last read from the shared state."""
        self._lock = threading.Lock()
        self._beat_at = float("-inf")
        self._share_until = float("-inf")
        """Until then (clock), admissions also keep to this instance's share in process: it has just rejoined."""

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
                self._take_over()
                log.warning(
                    "%s; moderating in this process only until it answers again, at a share of 1/%d of each budget",
                    exc,
                    self.instances,
                )
            return operation(self.fallback)
        except BaseException:
            self._breaker.abandoned(admission)
            raise
        if admission is Admission.TRIAL:
            self._breaker.succeeded(admission)
            self._share_until = self._clock() + self._window_s
            log.warning("the moderation state answers again; moderation is shared again")
        return result

    _window_s = 3600.0
    """The last window an admission named: how long a heartbeat, and a share after rejoining, last."""

    def _take_over(self) -> None:
        """The shared state went away: what was last known of it becomes this process's, at its share."""
        with self._lock:
            known, instances = dict(self._known), self.instances
        for key, record in known.items():
            if key.startswith("slots:") or key == INSTANCES:
                continue  # a slot (or a probe) taken in one backend is never moved to the other
            if key.startswith("names:"):
                self.fallback.update(key, _replaced_by(record))
                continue
            scope = rules.end_probe(rules.Scope.load(record), rules.Scope.load(record).probe)
            self.fallback.update(key, _replaced_by(rules.fair_share(key, scope, instances).dump()))

    def read(self, keys: Sequence[str] | None) -> tuple[int, dict[str, Record]]:
        """See `ModerationState`; what the shared state answers is remembered (see the module)."""
        shared = self._breaker.closed
        now, records = self._call(lambda state: state.read(keys))
        if shared and self._breaker.closed:
            with self._lock:
                for key in records if keys is None else keys:
                    if key in records:
                        self._known[key] = records[key]
                    else:
                        self._known.pop(key, None)
        return now, records

    def update(self, key: str, change: Change) -> Record | None:
        """See `ModerationState`."""
        return self._call(lambda state: state.update(key, change))

    def admit(self, limits: Sequence[Limit], window_ms: int, margin_ms: int) -> Admitted:
        """See `ModerationState`; also the heartbeat, and the share kept for a window after rejoining."""
        self._window_s = window_ms / 1000
        away = not self._breaker.closed
        if not away and self._clock() < self._share_until:
            share = [replace(rule, limit=_share(rule.limit, self.instances)) for rule in limits]
            local = self.fallback.admit(share, window_ms, margin_ms)
            if local.wait_ms > 0:
                return local
        admitted = self._call(lambda state: state.admit(limits, window_ms, margin_ms))
        if away and self._breaker.closed and admitted.wait_ms <= 0:  # the send that found the state back
            self.fallback.admit([replace(rule, limit=None, spacing_ms=0) for rule in limits], window_ms, margin_ms)
        if self._breaker.closed and self._clock() >= self._beat_at + HEARTBEAT_S:
            self._beat(window_ms)
        return admitted

    def _beat(self, window_ms: int) -> None:
        self._beat_at = self._clock()
        record = self._call(
            lambda state: state.update(INSTANCES, lambda r, now: rules.with_names(r, now, {self.holder}, window_ms))
        )
        if self._breaker.closed:  # counted in the shared state, not in what this process has of its own
            self.instances = max(1, len(rules.live_names(record, 0)))

    def close(self) -> None:
        """Close the shared state's connections, if it has any of its own."""
        close = getattr(self.shared, "close", None)
        if close is not None:
            close()
