"""Moderation policy with an injected clock: budget learning, admission, strikes, probes, give-up."""

from __future__ import annotations

import pytest

from motion_meta_cli.config import MetaPlatformConfig, ThrottleHandling
from motion_meta_cli.errors import ThrottledError
from motion_meta_cli.meta import Classification, ErrorKind, ScopeKind, ThrottleScope, Usage, UsageCounters
from motion_meta_cli.moderation.capacity import estimate_capacity
from motion_meta_cli.moderation.moderator import (
    APP_SCOPE,
    BUDGET_PROBE,
    RELEASE_WITHIN_S,
    RESERVATION_FRESH_S,
    Moderator,
)
from motion_meta_cli.moderation.state import UNMETERED, AdmitRule, LocalState, admission_wait, merged_capacity
from motion_meta_cli.policy import RetryPolicy


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 3))
        self.now += seconds


RULE = AdmitRule(window_ms=2000, pacing=True, threshold_pct=80)


@pytest.mark.parametrize(
    ("sends", "pct", "expected"),
    [(1, 1, 50), (1, 0, 100), (49, 49, 98), (50, 50, 100), (100, 100, 100), (60, 100, 60), (10, 120, 8), (0, 5, None)],
)
def test_capacity_estimates_are_lower_bounds_that_tighten_with_usage(sends: int, pct: float, expected: int) -> None:
    assert estimate_capacity(sends, pct) == expected


def test_capacity_merge_grows_and_unmetered_never_wins() -> None:
    assert merged_capacity(None, 50) == 50
    assert merged_capacity(50, 40) == 50
    assert merged_capacity(50, 100) == 100
    assert merged_capacity(None, UNMETERED) == UNMETERED
    assert merged_capacity(80, UNMETERED) == 80
    assert merged_capacity(UNMETERED, 30) == 30


def test_admission_without_a_budget_or_with_pacing_off_is_free() -> None:
    log = list(range(0, 1000, 10))
    assert admission_wait(log, 1000, RULE, None, limited=False, precise=True) == 0
    assert admission_wait(log, 1000, RULE, UNMETERED, limited=True, precise=True) == 0
    unpaced = AdmitRule(window_ms=2000, pacing=False, threshold_pct=80)
    assert admission_wait(log, 1000, unpaced, 10, limited=False, precise=True) == 0
    assert admission_wait(log, 1000, unpaced, 100, limited=True, precise=True) == 1000, "after a throttle it binds"


def test_admission_waits_for_the_entry_that_frees_a_slot() -> None:
    log = [100, 200, 300, 400]
    assert admission_wait(log, 500, RULE, 4, limited=False, precise=True) == 100 + 2000 - 500
    assert admission_wait(log, 500, RULE, 2, limited=False, precise=True) == 300 + 2000 - 500
    assert admission_wait(log, 500, RULE, 5, limited=False, precise=True) == 0


def test_a_coarse_budget_spaces_sends_above_the_threshold() -> None:
    log = [0, 10, 20, 30]  # 4 of 5: at the 80 % threshold
    assert admission_wait(log, 40, RULE, 5, limited=False, precise=False) == 30 + 400 - 40
    assert admission_wait(log, 40, RULE, 5, limited=False, precise=True) == 0


def test_cooldowns_only_ever_extend() -> None:
    clock = Clock()
    state = LocalState(clock)
    assert state.pause("app", 5000, recovering=False, limited_ms=0, relearn_window_ms=0)
    assert not state.pause("app", 1000, recovering=False, limited_ms=0, relearn_window_ms=0)
    assert state.hold(["app"]).wait_ms == 5000
    clock.now += 2
    assert state.hold(["user:a", "app"]).wait_ms == 3000


def test_a_burst_already_in_flight_is_one_strike() -> None:
    clock = Clock()
    state = LocalState(clock)
    sent = state.now_ms()
    clock.now += 0.1
    assert state.strike("app", sent) == (1, True)
    assert state.strike("app", sent) == (1, False), "left before the cooldown began"
    clock.now += 1
    assert state.strike("app", state.now_ms()) == (2, True), "a request sent after it is new information"
    state.observe_success("app", state.now_ms(), 2000, 40)
    clock.now += 0.1
    assert state.strike("app", state.now_ms()) == (1, True), "a success resets the count"


def _moderator(clock: Clock) -> Moderator:
    return Moderator(LocalState(clock), sleep=clock.sleep, clock=clock)


HANDLING = ThrottleHandling(window_s=2.0, window_guard_pct=0)
USAGE = Usage(app=UsageCounters(call_count_pct=1))


def _throttle(eta_s: float | None = None) -> Classification:
    return Classification(ErrorKind.THROTTLED, 400, "(#4) limit", scope=ThrottleScope(ScopeKind.APP), eta_s=eta_s)


def test_the_first_paced_request_learns_the_budget_alone() -> None:
    clock = Clock()
    moderator = _moderator(clock)
    first = moderator.acquire([APP_SCOPE], HANDLING, budget_s=10)
    assert BUDGET_PROBE in first.probes
    other = moderator.state.try_probe(BUDGET_PROBE, 1000)
    assert other is None, "a second request must wait for the first reading"
    moderator.succeeded(first, USAGE, HANDLING)
    assert moderator.state.hold([APP_SCOPE]).budget_known
    second = moderator.acquire([APP_SCOPE], HANDLING, budget_s=10)
    assert second.probes == {}


def test_a_throttle_without_eta_pauses_then_one_probe_goes_first() -> None:
    clock = Clock()
    moderator = _moderator(clock)
    unpaced = ThrottleHandling(window_s=60.0, pacing=False, pause_floor_s=1, pause_cap_s=8)
    policy = RetryPolicy(MetaPlatformConfig(throttle=unpaced).merged({"retry": {"jitter_ratio": 0}}))
    ticket = moderator.acquire([APP_SCOPE], unpaced, budget_s=100)
    assert moderator.throttled(ticket, APP_SCOPE, _throttle(), unpaced, policy) == 1
    probe = moderator.acquire([APP_SCOPE], unpaced, budget_s=100)
    assert clock.sleeps == [1.0], "waited out the pause before sending"
    assert APP_SCOPE in probe.probes
    assert moderator.state.try_probe(APP_SCOPE, 1000) is None, "only one probe at a time"
    assert moderator.throttled(probe, APP_SCOPE, _throttle(), unpaced, policy) == 2, "a failed probe doubles"


def test_a_throttle_eta_is_waited_exactly_without_a_probe() -> None:
    clock = Clock()
    moderator = _moderator(clock)
    hour = ThrottleHandling(window_s=3600.0)
    policy = RetryPolicy(MetaPlatformConfig(throttle=hour))
    ticket = moderator.acquire([APP_SCOPE, "buc:1:ads"], hour, budget_s=100)
    moderator.succeeded(ticket, USAGE, hour)
    ticket = moderator.acquire([APP_SCOPE, "buc:1:ads"], hour, budget_s=100)
    assert moderator.throttled(ticket, "buc:1:ads", _throttle(eta_s=60), hour, policy) == 60
    after = moderator.acquire([APP_SCOPE, "buc:1:ads"], hour, budget_s=100)
    assert clock.sleeps == [60.0]
    assert after.probes == {}


def test_giving_up_raises_throttled_without_sleeping() -> None:
    clock = Clock()
    moderator = _moderator(clock)
    moderator.state.pause("user:a", 30_000, recovering=False, limited_ms=0, relearn_window_ms=0)
    with pytest.raises(ThrottledError) as caught:
        moderator.acquire([APP_SCOPE, "user:a"], HANDLING, budget_s=10)
    assert caught.value.scope == "user:a"
    assert caught.value.retry_after_s == pytest.approx(30)
    assert clock.sleeps == []


def test_a_learned_budget_holds_sends_to_the_window() -> None:
    clock = Clock()
    moderator = _moderator(clock)
    moderator.state.raise_capacity(APP_SCOPE, 3, 60_000, precise=True)
    sent = [moderator.acquire([APP_SCOPE], HANDLING, budget_s=10).sent_ms for _ in range(4)]
    assert sent[3] - sent[0] == 2000, "the fourth send waited for the first to leave the window"


def test_customer_slots_cap_requests_in_flight() -> None:
    clock = Clock()
    moderator = _moderator(clock)
    with moderator.customer_slot("acme", 1, lease_s=60, budget_s=5):
        busy = moderator.customer_slot("acme", 1, lease_s=60, budget_s=1)
        with pytest.raises(ThrottledError, match="already has 1 request"), busy:
            pass
        with moderator.customer_slot("other", 1, lease_s=60, budget_s=1):
            pass
    with moderator.customer_slot("acme", 1, lease_s=60, budget_s=1):
        pass


def test_successes_are_counted_when_the_reading_moves_or_a_hundredth_of_a_window_later() -> None:
    clock = Clock()
    moderator = _moderator(clock)
    counts: list[bool] = []
    observe = moderator.state.observe_success

    def recording(scope: str, sent_ms: int, window_ms: int, margin_ms: int, *, count: bool = True) -> int:
        counts.append(count)
        return observe(scope, sent_ms, window_ms, margin_ms, count=count)

    moderator.state.observe_success = recording  # type: ignore[method-assign]
    at = {pct: Usage(app=UsageCounters(call_count_pct=pct)) for pct in (5, 6)}
    for pct in (5, 5, 5, 6, 6):
        ticket = moderator.acquire([APP_SCOPE], HANDLING, budget_s=10)
        moderator.succeeded(ticket, at[pct], HANDLING)
    assert counts == [True, False, False, True, False], "counted on the first reading and each change only"
    clock.now += HANDLING.window_s / 50
    moderator.succeeded(moderator.acquire([APP_SCOPE], HANDLING, budget_s=10), at[6], HANDLING)
    assert counts[-1] is True, "once a hundredth of a window has passed, the same reading is counted again"
    assert moderator.state.hold([APP_SCOPE]).budget_known, "the counts taught the budget"


def test_a_fresh_reservation_serves_one_request_and_a_stale_one_is_replaced() -> None:
    clock = Clock()
    moderator = _moderator(clock)
    state = moderator.state
    with moderator.batched_slot_releases():
        with moderator.customer_slot("busy", 1, lease_s=60, budget_s=5):
            assert moderator.reserve_slots(["acme", "busy", "globex"], 1, lease_s=60) == 2
        assert moderator.reserve_slots(["acme"], 1, lease_s=60) == 0, "acme is reserved already"
        calls: list[tuple[int, int]] = []
        acquire = state.acquire_slots

        def counting(names: list[str], limit: int, lease_ms: int, *, releasing: list[tuple[str, str]] = ()) -> list:
            calls.append((len(names), len(releasing)))
            return acquire(names, limit, lease_ms, releasing=releasing)

        state.acquire_slots = counting  # type: ignore[method-assign]
        with moderator.customer_slot("acme", 1, lease_s=60, budget_s=1):
            pass
        assert calls == [], "the reservation served: no state call"
        assert acquire(["customer:acme"], 1, 60_000) == [None], "the finished slot waits for the next call"
        clock.now += RESERVATION_FRESH_S + 1
        with moderator.customer_slot("globex", 1, lease_s=60, budget_s=1):
            assert calls == [(1, 2)], "globex's stale reservation and acme's slot went back as it took a new one"
    assert None not in acquire(["customer:acme", "customer:globex", "customer:busy"], 1, 60_000), "all back"


def test_a_finished_slot_goes_back_once_another_request_ends_a_second_later() -> None:
    clock = Clock()
    moderator = _moderator(clock)
    state = moderator.state
    with moderator.batched_slot_releases():
        with moderator.customer_slot("acme", 1, lease_s=60, budget_s=5):
            with moderator.customer_slot("globex", 1, lease_s=60, budget_s=5):
                pass
            assert state.acquire_slots(["customer:globex"], 1, 60_000) == [None], "queued, not yet back"
            clock.now += RELEASE_WITHIN_S
        # acme ended a second after globex was queued: both went back with it, before the batch ended
        assert None not in state.acquire_slots(["customer:acme", "customer:globex"], 1, 60_000)


def test_batched_releases_go_back_with_the_next_slot_taken_and_all_at_the_end() -> None:
    clock = Clock()
    moderator = _moderator(clock)
    state = moderator.state
    calls: list[str] = []
    acquire = state.acquire_slots
    state.acquire_slots = lambda *a, **k: (calls.append("acquire"), acquire(*a, **k))[1]  # type: ignore[method-assign]

    with moderator.batched_slot_releases():
        with moderator.customer_slot("acme", 1, lease_s=60, budget_s=5):
            pass
        assert acquire(["customer:acme"], 1, 60_000) == [None], "acme's slot waits for the next one taken"
        with moderator.customer_slot("globex", 1, lease_s=60, budget_s=5):
            assert acquire(["customer:acme"], 1, 60_000, releasing=[]) != [None], "... and went with it"
        calls.clear()
    assert calls == ["acquire"], "globex's slot went back when the batch ended, in one call"
    assert acquire(["customer:globex"], 1, 60_000) != [None]
    with moderator.customer_slot("initech", 1, lease_s=60, budget_s=5):
        calls.clear()
    assert calls == ["acquire"], "outside a batch every slot goes back at once, in a call of its own"
    assert acquire(["customer:initech"], 1, 60_000) != [None]
