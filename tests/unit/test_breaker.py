"""The circuit breaker on an injected clock: closed, open, half-open with one trial, closed again."""

from __future__ import annotations

import threading

from motion_meta_cli.storage.breaker import RETRY_S, Admission, CircuitBreaker


class FakeClock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _opened() -> tuple[CircuitBreaker, FakeClock]:
    clock = FakeClock()
    breaker = CircuitBreaker(clock)
    admission = breaker.admit()
    assert admission is Admission.CLOSED
    breaker.failed(admission)
    return breaker, clock


def test_a_closed_breaker_lets_everyone_through() -> None:
    breaker = CircuitBreaker(FakeClock())
    admissions = [breaker.admit() for _ in range(5)]
    assert admissions == [Admission.CLOSED] * 5
    breaker.succeeded(Admission.CLOSED)
    assert breaker.closed


def test_a_failure_refuses_every_caller_for_the_retry_period() -> None:
    breaker, clock = _opened()
    assert not breaker.closed
    assert breaker.admit() is None
    clock.now += RETRY_S - 0.01
    assert breaker.admit() is None


def test_after_the_retry_period_exactly_one_caller_tries_and_its_success_closes_it() -> None:
    breaker, clock = _opened()
    clock.now += RETRY_S
    trial = breaker.admit()
    assert trial is Admission.TRIAL
    assert [breaker.admit() for _ in range(3)] == [None] * 3, "the others keep failing fast meanwhile"
    clock.now += 60  # however long the trial takes
    assert breaker.admit() is None
    breaker.succeeded(trial)
    assert breaker.closed
    assert breaker.admit() is Admission.CLOSED


def test_a_failed_trial_opens_it_for_another_retry_period() -> None:
    breaker, clock = _opened()
    clock.now += RETRY_S
    trial = breaker.admit()
    assert trial is Admission.TRIAL
    clock.now += 0.5
    breaker.failed(trial)
    assert not breaker.closed
    clock.now += RETRY_S - 0.01
    assert breaker.admit() is None
    clock.now += 0.01
    assert breaker.admit() is Admission.TRIAL


def test_a_late_success_of_a_call_let_in_before_the_failure_does_not_close_it() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(clock)
    early, failing = breaker.admit(), breaker.admit()
    assert early is Admission.CLOSED and failing is Admission.CLOSED
    breaker.failed(failing)
    breaker.succeeded(early)
    assert not breaker.closed
    assert breaker.admit() is None


def test_an_abandoned_trial_hands_the_next_try_to_another_caller() -> None:
    breaker, clock = _opened()
    clock.now += RETRY_S
    trial = breaker.admit()
    assert trial is Admission.TRIAL
    breaker.abandoned(trial)
    assert not breaker.closed, "abandoning says nothing about the backend"
    assert breaker.admit() is Admission.TRIAL


def test_racing_callers_get_one_trial_between_them() -> None:
    breaker, clock = _opened()
    clock.now += RETRY_S
    barrier = threading.Barrier(16)
    admissions: list[Admission | None] = []
    guard = threading.Lock()

    def caller() -> None:
        barrier.wait()
        admission = breaker.admit()
        with guard:
            admissions.append(admission)

    threads = [threading.Thread(target=caller) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert admissions.count(Admission.TRIAL) == 1
    assert admissions.count(None) == 15
