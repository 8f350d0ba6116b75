"""A circuit breaker for a shared backend: once it fails to answer, callers fail at once instead of each
waiting out its own timeout, and one caller at a time checks whether it is back."""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable

RETRY_S = 2.0
"""After a failure, how long every call fails fast before one caller tries the backend again."""


class Admission(enum.Enum):
    """Why a caller may go ahead: the breaker is closed, or this caller is the one half-open trial."""

    CLOSED = "closed"
    TRIAL = "trial"


class CircuitBreaker:
    """Closed until a call fails to reach the backend; then open (every call refused) for RETRY_S; then
    half-open: the next caller is let through as the trial while the others are still refused, and the
    trial's success closes it (its failure opens it again). Thread-safe; one per client.

    breaker = CircuitBreaker()
    admission = breaker.admit()      # None: fail fast now
    ...call the backend, then breaker.succeeded(admission), .failed(admission) or .abandoned(admission)
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._open_until: float | None = None  # None while closed
        self._trial_running = False

    @property
    def closed(self) -> bool:
        """True unless the last attempt failed to reach the backend and no trial has succeeded since."""
        return self._open_until is None

    def admit(self) -> Admission | None:
        """Whether this caller may try the backend now (and in which role); None means fail fast."""
        with self._lock:
            if self._open_until is None:
                return Admission.CLOSED
            if self._trial_running or self._clock() < self._open_until:
                return None
            self._trial_running = True
            return Admission.TRIAL

    def succeeded(self, admission: Admission) -> None:
        """The backend answered. Only the trial closes an open breaker: a call let in before it opened
        may have been answered before the failure that opened it."""
        if admission is Admission.TRIAL:
            with self._lock:
                self._open_until = None
                self._trial_running = False

    def failed(self, admission: Admission) -> None:
        """The backend could not be reached: refuse every call for RETRY_S from now."""
        with self._lock:
            self._open_until = self._clock() + RETRY_S
            if admission is Admission.TRIAL:
                self._trial_running = False

    def abandoned(self, admission: Admission) -> None:
        """The call ended without saying whether the backend answers: let the next caller try instead."""
        if admission is Admission.TRIAL:
            with self._lock:
                self._trial_running = False
