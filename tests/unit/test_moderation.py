"""Moderation rules and the moderator on an injected clock: pauses, strikes, probes, budgets, named scopes."""

from __future__ import annotations

import pytest

from motion_meta_cli.config import ThrottleHandling
from motion_meta_cli.errors import ThrottledError
from motion_meta_cli.meta import (
    BusinessUseCaseUsage,
    Classification,
    ErrorKind,
    ScopeKind,
    ThrottleScope,
    Usage,
    UsageCounters,
)
from motion_meta_cli.moderation import rules
from motion_meta_cli.moderation.moderator import Moderator
from motion_meta_cli.moderation.rules import APP, UNMETERED, Probe, Scope, Wait
from motion_meta_cli.moderation.slots import CustomerSlots
from motion_meta_cli.moderation.state import LocalState


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 3))
        self.now += seconds


HANDLING = ThrottleHandling(window_s=2.0, window_guard_pct=0)
HOUR = ThrottleHandling(window_s=3600.0, pause_floor_s=60, pause_cap_s=900)
TTL = 5_000


@pytest.mark.parametrize(
    ("sends", "pct", "expected"),
    [(1, 1, 50), (1, 0, 100), (49, 49, 98), (50, 50, 100), (100, 100, 100), (60, 100, 60), (10, 120, 8), (0, 5, None)],
)
def test_budget_estimates_are_lower_bounds_that_tighten_with_usage(sends: int, pct: float, expected: int) -> None:
    assert rules.estimate_budget(sends, pct) == expected


def test_pauses_grow_from_the_floor_to_the_cap_and_an_eta_is_kept_but_clamped() -> None:
    assert [rules.pause_s(n, None, HOUR, jitter=0)[0] for n in (1, 2, 3, 4, 5)] == [60, 120, 240, 480, 900]
    assert 60 <= rules.pause_s(1, None, HOUR, jitter=1)[0] <= 75, "jitter only upwards, a little"
    assert rules.pause_s(1, 1140, HOUR, jitter=1) == (1140, None), "an ETA exactly"
    assert rules.pause_s(1, 6e13, HOUR, jitter=0) == (HOUR.pause_max_s, 6e13), "an absurd ETA is clamped"


def test_a_cooldown_is_only_ever_extended_and_a_burst_in_flight_is_one_strike() -> None:
    scope, pause = rules.after_throttle(Scope(), 100, sent_ms=90, holder="", eta_s=None, handling=HOUR, jitter=0)
    assert (pause.strikes, pause.new, scope.cooldown_until_ms, scope.recovering) == (1, True, 60_100, True)
    again, pause = rules.after_throttle(scope, 200, sent_ms=95, holder="", eta_s=30, handling=HOUR, jitter=0)
    assert (pause.strikes, pause.new) == (1, False), "left before the cooldown began: no new strike"
    assert again.cooldown_until_ms == 60_100, "a shorter pause never shortens the cooldown"
    later, pause = rules.after_throttle(again, 60_200, sent_ms=60_150, holder="", eta_s=None, handling=HOUR, jitter=0)
    assert (pause.strikes, later.cooldown_until_ms) == (2, 60_200 + 120_000)
    assert rules.after_success(later, "").strikes == 0


def test_a_request_waits_out_the_longest_cooldown_then_probes_a_recovering_scope() -> None:
    scopes = {APP: Scope(cooldown_until_ms=500, recovering=True), "user:a": Scope(cooldown_until_ms=900)}
    assert rules.blocker(scopes, 100, HOUR, set()) == Wait("user:a", 800, "cooldown")
    assert rules.blocker(scopes, 1000, HOUR, set()) == Probe(APP)
    probed = rules.take_probe(scopes[APP], 1000, "me", TTL)
    assert rules.take_probe(probed, 1001, "other", TTL).probe == "me", "one probe at a time"
    assert rules.blocker({APP: probed}, 1001, HOUR, set()) == Wait(APP, TTL - 1, "probe")
    assert rules.blocker({APP: probed}, 1001, HOUR, {APP}) is None, "the probe itself goes"
    assert rules.take_probe(probed, 1000 + TTL, "other", TTL).probe == "other", "a lapsed probe is free"
    assert rules.end_probe(probed, "other") == probed and rules.end_probe(probed, "me").probe == ""


def test_pacing_starts_cold_with_one_probe_of_the_app_budget() -> None:
    assert rules.blocker({APP: Scope()}, 0, HANDLING, set()) == Probe(APP)
    unpaced = ThrottleHandling(window_s=2.0, pacing=False)
    assert rules.blocker({APP: Scope()}, 0, unpaced, set()) is None


def test_a_learned_budget_binds_while_pacing_or_once_throttled() -> None:
    coarse = Scope(budget=50, budget_until_ms=10_000)
    assert rules.limit(APP, coarse, 0, HANDLING) == rules.Limit(APP, 50, 40, 40)
    assert rules.limit(APP, Scope(budget=50, budget_until_ms=10_000, precise=True), 0, HANDLING).spacing_ms == 0
    unpaced = ThrottleHandling(window_s=2.0, pacing=False)
    assert rules.limit(APP, coarse, 0, unpaced).limit is None
    assert rules.limit(APP, Scope(budget=50, budget_until_ms=10_000, limited_until_ms=1), 0, unpaced).limit == 50
    assert rules.limit(APP, Scope(budget=UNMETERED, budget_until_ms=10_000), 0, HANDLING).limit is None
    assert rules.limit(APP, coarse, 10_000, HANDLING).limit is None, "an expired budget binds nothing"


def test_budgets_only_grow_and_unmetered_never_replaces_a_learned_one() -> None:
    learned = rules.learn(Scope(), 0, usage_pct=10, counted=11, handling=HANDLING)
    assert (learned.budget, learned.precise) == (100, False)
    assert rules.learn(learned, 1, usage_pct=30, counted=10, handling=HANDLING) == learned, "lower: kept"
    assert rules.learn(learned, 1, usage_pct=None, counted=1, handling=HANDLING) == learned
    assert rules.learn(Scope(), 0, usage_pct=None, counted=1, handling=HANDLING).budget == UNMETERED
    pinned = rules.learn(learned, 1, usage_pct=60, counted=66, handling=HANDLING)
    assert (pinned.budget, pinned.precise) == (110, True)


def _moderator(clock: Clock) -> Moderator:
    return Moderator(LocalState(clock), sleep=clock.sleep, clock=clock, random=lambda: 0.0)


USAGE = Usage(app=UsageCounters(call_count_pct=1))


def _throttle(eta_s: float | None = None) -> Classification:
    return Classification(ErrorKind.THROTTLED, 400, "(#4) limit", scope=ThrottleScope(ScopeKind.APP), eta_s=eta_s)


def test_the_first_paced_request_learns_the_budget_alone() -> None:
    clock = Clock()
    moderator = _moderator(clock)
    first = moderator.acquire("acme", HANDLING, budget_s=10, probe_ttl_ms=TTL)
    assert first.probes == {APP}
    with pytest.raises(ThrottledError, match="another request probes it"):
        moderator.acquire("globex", HANDLING, budget_s=0.05, probe_ttl_ms=TTL)
    moderator.answered(first, USAGE, HANDLING)
    second = moderator.acquire("globex", HANDLING, budget_s=10, probe_ttl_ms=TTL)
    assert second.probes == set(), "the budget is known: no probe"


def test_a_request_waiting_on_a_probe_of_its_own_process_goes_as_soon_as_it_answers() -> None:
    clock = Clock()
    moderator = _moderator(clock)
    first = moderator.acquire("acme", HOUR, budget_s=10, probe_ttl_ms=TTL)
    real_sleep = clock.sleep

    def sleep(seconds: float) -> None:  # the probe's answer arrives during the first nap
        real_sleep(seconds)
        if len(clock.sleeps) == 1:
            moderator.answered(first, USAGE, HOUR)

    moderator._sleep = sleep
    second = moderator.acquire("globex", HOUR, budget_s=10, probe_ttl_ms=TTL)
    assert second.probes == set()
    assert clock.sleeps == [0.01], "woken after one short nap, not after the probe's 0.1 s poll of the state"


def test_a_probe_interrupted_by_anything_goes_back() -> None:
    clock = Clock()
    moderator = _moderator(clock)
    ticket = moderator.acquire("acme", HANDLING, budget_s=10, probe_ttl_ms=TTL)
    moderator.finish(ticket)  # e.g. after KeyboardInterrupt in the send
    assert moderator.acquire("globex", HANDLING, budget_s=10, probe_ttl_ms=TTL).probes == {APP}


def test_a_throttle_without_eta_pauses_then_one_probe_goes_first() -> None:
    clock = Clock()
    moderator = _moderator(clock)
    unpaced = ThrottleHandling(window_s=60.0, pacing=False, pause_floor_s=1, pause_cap_s=8)
    ticket = moderator.acquire("acme", unpaced, budget_s=100, probe_ttl_ms=TTL)
    assert moderator.throttled(ticket, APP, _throttle(), unpaced) == 1
    probe = moderator.acquire("acme", unpaced, budget_s=100, probe_ttl_ms=TTL)
    assert clock.sleeps == [1.0], "waited out the pause before sending"
    assert moderator.stats.paused_s == pytest.approx(1.0), "paused_s: the time between asking and being admitted"
    assert probe.probes == {APP}
    assert moderator.throttled(probe, APP, _throttle(), unpaced) == 2, "a failed probe doubles the pause"


def test_a_throttle_eta_is_waited_exactly_without_a_probe_and_an_absurd_one_is_clamped() -> None:
    clock = Clock()
    moderator = _moderator(clock)
    ticket = moderator.acquire("acme", HOUR, budget_s=100, probe_ttl_ms=TTL)
    moderator.answered(ticket, USAGE, HOUR)
    ticket = moderator.acquire("acme", HOUR, budget_s=100, probe_ttl_ms=TTL)
    assert moderator.throttled(ticket, "buc:1:ads", _throttle(eta_s=60), HOUR) == 60
    after = moderator.acquire("acme", HOUR, budget_s=100, probe_ttl_ms=TTL)
    assert clock.sleeps == [60.0] and after.probes == set()
    assert moderator.throttled(after, APP, _throttle(eta_s=1e12 * 60), HOUR) == HOUR.pause_max_s
    with pytest.raises(ThrottledError, match="on app: 10800 s left of its pause"):
        moderator.acquire("acme", HOUR, budget_s=100, probe_ttl_ms=TTL)
    assert moderator.clear([APP]) == [APP]
    assert moderator.acquire("acme", HOUR, budget_s=100, probe_ttl_ms=TTL).probes == {APP}, "cleared: relearn"


def test_a_named_business_use_case_holds_every_customer_of_that_business() -> None:
    clock = Clock()
    moderator = _moderator(clock)
    buc = BusinessUseCaseUsage("42", "ads_management", 10, None, None, None, None)
    for customer in ("acme", "globex"):
        ticket = moderator.acquire(customer, HOUR, budget_s=100, probe_ttl_ms=TTL)
        moderator.answered(ticket, Usage(app=UsageCounters(call_count_pct=1), business_use_cases=(buc,)), HOUR)
    ticket = moderator.acquire("acme", HOUR, budget_s=100, probe_ttl_ms=TTL)
    assert "buc:42:ads_management" in ticket.scopes
    moderator.throttled(ticket, "buc:42:ads_management", _throttle(eta_s=600), HOUR)
    with pytest.raises(ThrottledError) as caught:
        moderator.acquire("globex", HOUR, budget_s=100, probe_ttl_ms=TTL)
    assert caught.value.scope == "buc:42:ads_management"
    assert moderator.acquire("initech", HOUR, budget_s=100, probe_ttl_ms=TTL).probes == set(), "another business"


def test_giving_up_raises_throttled_with_the_real_time_left_without_sleeping() -> None:
    clock = Clock()
    moderator = _moderator(clock)
    moderator.state.update("user:a", lambda r, now: Scope(cooldown_until_ms=now + 30_000).dump())
    with pytest.raises(ThrottledError, match="on user:a: 30 s left of its pause") as caught:
        moderator.acquire("a", HANDLING, budget_s=10, probe_ttl_ms=TTL)
    assert caught.value.scope == "user:a"
    assert caught.value.retry_after_s == pytest.approx(30)
    assert clock.sleeps == []


def test_a_learned_budget_holds_sends_to_the_window() -> None:
    clock = Clock()
    moderator = _moderator(clock)
    moderator.state.update(APP, lambda r, now: Scope(budget=3, budget_until_ms=now + 60_000, precise=True).dump())
    sent = [moderator.acquire("a", HANDLING, budget_s=10, probe_ttl_ms=TTL).sent_ms for _ in range(4)]
    assert sent[3] - sent[0] == 2000, "the fourth send waited for the first to leave the window"


def test_customer_slots_cap_requests_in_flight_and_lapse_after_one_attempt() -> None:
    clock = Clock()
    state = LocalState(clock)
    slots = CustomerSlots(state, limit=1, lease_s=4, sleep=clock.sleep, clock=clock)
    with slots.hold("acme", wait_s=5):
        with pytest.raises(ThrottledError, match="already has 1 request"), slots.hold("acme", wait_s=1):
            pass
        with slots.hold("other", wait_s=1):
            pass
    with slots.hold("acme", wait_s=1):
        pass
    assert state.read(None)[1] == {}, "every slot went back"
    held = slots.hold("acme", wait_s=1)
    held.__enter__()  # a holder that dies without giving it back
    clock.now += 4
    with slots.hold("acme", wait_s=1):
        pass


def test_a_named_scope_is_kept_while_answers_keep_naming_it() -> None:
    clock = Clock()
    moderator = _moderator(clock)
    buc = BusinessUseCaseUsage("42", "ads_management", 10, None, None, None, None)
    usage = Usage(app=UsageCounters(call_count_pct=1), business_use_cases=(buc,))
    ten_windows_ms = int(HOUR.window_s * 1000 * rules.LIMITED_WINDOWS)

    def until() -> int:
        return int(moderator.state.read(["names:acme"])[1]["names:acme"]["scopes"]["buc:42:ads_management"])

    moderator.answered(moderator.acquire("acme", HOUR, budget_s=100, probe_ttl_ms=TTL), usage, HOUR)
    first = until()
    clock.now += HOUR.window_s  # an answer soon after writes nothing new
    moderator.answered(moderator.acquire("acme", HOUR, budget_s=100, probe_ttl_ms=TTL), usage, HOUR)
    assert until() == first
    clock.now += 5 * HOUR.window_s  # past half its life: the next answer naming it keeps it
    moderator.answered(moderator.acquire("acme", HOUR, budget_s=100, probe_ttl_ms=TTL), usage, HOUR)
    assert until() == int(clock.now * 1000) + ten_windows_ms > first
