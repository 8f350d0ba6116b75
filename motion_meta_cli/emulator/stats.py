"""What the emulator saw, for `GET /__stats`: counts only, never a token."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from motion_meta_cli.emulator.faults import Fault
from motion_meta_cli.emulator.scopes import CHECK_ORDER, CallVerdict

TIMELINE_PER_USER = 100
"""Answer times kept per user for `GET /__timeline`."""


@dataclass(slots=True)
class RequestRecord:
    """What one Graph request did."""

    status: int | None = None
    """The HTTP status answered; None when the connection was dropped without an answer."""
    verdict: CallVerdict | None = None
    """The scopes' verdicts; None when the call counted nowhere (no token, bad path)."""
    throttle_code: int | None = None
    """The throttle code the client saw, if any (a fault that replaced the answer hides it)."""
    fault: Fault | None = None
    slow: bool = False
    """Answered late on purpose (a slow fault), whatever else it got; counted under `faults` `slow`."""
    token_in_query: bool = False
    user_id: str | None = None


class EmulatorStats:
    """Thread-safe counters behind `GET /__stats`; one short lock per request."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._in_flight = 0
        self._clear()

    def _clear(self) -> None:
        self._started_at = self._clock()
        self._requests = 0
        self._succeeded = 0
        self._by_status: Counter[int] = Counter()
        self._throttled_by_code: Counter[int] = Counter()
        self._blocked_arrivals = 0
        self._blocked_arrivals_by_scope: Counter[str] = Counter()
        self._faults: Counter[str] = Counter()
        self._first_throttle_at_s: float | None = None
        self._token_in_query = 0
        self._peak_concurrency = self._in_flight
        self._per_user: Counter[str] = Counter()
        self._timeline: dict[str, deque[float]] = {}

    def enter(self) -> None:
        """A request has started."""
        with self._lock:
            self._in_flight += 1
            self._peak_concurrency = max(self._peak_concurrency, self._in_flight)

    def leave(self, record: RequestRecord) -> None:
        """A request has finished, as `record` says."""
        blocked = record.verdict.blocked_on_arrival if record.verdict is not None else ()
        with self._lock:
            self._in_flight -= 1
            self._requests += 1
            if record.status is not None:
                self._by_status[record.status] += 1
                self._succeeded += record.status == 200
            if record.throttle_code is not None:
                self._throttled_by_code[record.throttle_code] += 1
                if self._first_throttle_at_s is None:
                    self._first_throttle_at_s = round(self._clock() - self._started_at, 3)
            if blocked:
                self._blocked_arrivals += 1
                self._blocked_arrivals_by_scope.update(blocked)
            if record.fault is not None:
                self._faults[record.fault] += 1
            self._faults[Fault.SLOW] += record.slow
            self._token_in_query += record.token_in_query
            if record.user_id is not None:
                self._per_user[record.user_id] += 1
                times = self._timeline.setdefault(record.user_id, deque(maxlen=TIMELINE_PER_USER))
                times.append(round(self._clock() - self._started_at, 3))

    def timeline(self) -> dict[str, Any]:
        """When each user's latest requests were answered (seconds since start or reset, oldest first), and now."""
        with self._lock:
            per_user = {user: list(times) for user, times in self._timeline.items()}
            return {"now_s": round(self._clock() - self._started_at, 3), "per_user": per_user}

    def reset(self) -> None:
        """Zero every counter and restart the clock of `first_throttle_at_s`."""
        with self._lock:
            self._clear()

    def snapshot(self) -> dict[str, Any]:
        """Every counter, as JSON-ready values."""
        with self._lock:
            return {
                "requests": self._requests,
                "succeeded": self._succeeded,
                "by_status": {str(status): n for status, n in sorted(self._by_status.items())},
                "throttled": sum(self._throttled_by_code.values()),
                "throttled_by_code": {str(code): n for code, n in sorted(self._throttled_by_code.items())},
                "first_throttle_at_s": self._first_throttle_at_s,
                "blocked_arrivals": self._blocked_arrivals,
                "blocked_arrivals_by_scope": {
                    scope.value: self._blocked_arrivals_by_scope[scope] for scope in CHECK_ORDER
                },
                "faults": {fault.value: self._faults[fault] for fault in Fault},
                "token_in_query": self._token_in_query,
                "peak_concurrency": self._peak_concurrency,
                "in_flight": self._in_flight,
                "per_user": dict(self._per_user),
            }
