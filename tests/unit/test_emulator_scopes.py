"""The emulator's throttling scopes on a fake clock: check order, per-token counts, business-use-case blocks."""

from __future__ import annotations

import pytest

from motion_meta_cli.emulator import CHECK_ORDER, THROTTLES, EmulatorConfig, Scope, ScopeLimits
from tests.unit.test_emulator_limiter import FakeClock

TOKEN_A = "EAAtokenA" + "x" * 20
TOKEN_B = "EAAtokenB" + "x" * 20


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def limits(clock: FakeClock, **config: object) -> ScopeLimits:
    return ScopeLimits(EmulatorConfig(**config), clock)  # type: ignore[arg-type]


class TestCheckOrder:
    def test_order_is_app_page_token_business(self) -> None:
        assert CHECK_ORDER == (Scope.APP, Scope.PAGE, Scope.TOKEN, Scope.BUSINESS_USE_CASE)
        assert [THROTTLES[scope].code for scope in CHECK_ORDER] == [4, 32, 17, 80004]

    def test_the_first_blocked_scope_answers(self, clock: FakeClock) -> None:
        scopes = limits(clock, app_limit=4, page_limit=3, token_limit=2, buc_limit=1)

        refused_by = [scopes.record(TOKEN_A).refused_by for _ in range(6)]

        assert refused_by == [
            None,
            Scope.BUSINESS_USE_CASE,
            Scope.TOKEN,
            Scope.PAGE,
            Scope.APP,
            Scope.APP,
        ]

    def test_a_call_refused_by_the_app_still_counts_everywhere(self, clock: FakeClock) -> None:
        scopes = limits(clock, app_limit=1, page_limit=10, token_limit=10, buc_limit=10)
        scopes.record(TOKEN_A)

        verdict = scopes.record(TOKEN_A)

        assert verdict.refused_by is Scope.APP
        assert verdict.page is not None and verdict.page.count_in_window == 2
        assert verdict.token is not None and verdict.token.count_in_window == 2
        assert verdict.business_use_case is not None and verdict.business_use_case.count_in_window == 2

    def test_calls_without_a_user_count_for_app_and_page_only(self, clock: FakeClock) -> None:
        scopes = limits(clock, app_limit=10, page_limit=10, token_limit=1, buc_limit=1)

        verdicts = [scopes.record(None) for _ in range(3)]

        assert all(v.refused_by is None for v in verdicts)
        assert (verdicts[-1].token, verdicts[-1].business_use_case) == (None, None)
        assert verdicts[-1].page is not None and verdicts[-1].page.count_in_window == 3
        assert scopes.record(TOKEN_A).refused_by is None  # the user's own budgets are untouched

    def test_scopes_that_are_off_never_refuse(self, clock: FakeClock) -> None:
        scopes = limits(clock)

        verdicts = [scopes.record(TOKEN_A) for _ in range(100)]

        assert all(v.refused_by is None and v.blocked_on_arrival == () for v in verdicts)
        assert verdicts[-1].app.count_in_window == 100  # the app still counts, as before


class TestTokenScope:
    def test_each_token_has_its_own_budget(self, clock: FakeClock) -> None:
        scopes = limits(clock, token_limit=2, window_s=60.0)

        a = [scopes.record(TOKEN_A).refused_by for _ in range(3)]
        b = scopes.record(TOKEN_B).refused_by

        assert a == [None, None, Scope.TOKEN]
        assert b is None

    def test_calls_while_blocked_count(self, clock: FakeClock) -> None:
        scopes = limits(clock, token_limit=2, window_s=10.0)
        scopes.record(TOKEN_A)
        scopes.record(TOKEN_A)
        for _ in range(3):  # probing every 4 s keeps the window full
            clock.advance(4.0)
            assert scopes.record(TOKEN_A).refused_by is Scope.TOKEN

        clock.advance(10.0)
        assert scopes.record(TOKEN_A).refused_by is None


class TestBusinessUseCase:
    def test_eta_is_the_block_in_whole_minutes_rounded_up(self, clock: FakeClock) -> None:
        scopes = limits(clock, buc_limit=2, window_s=1.0, buc_block_minutes=2.5)
        scopes.record(TOKEN_A)
        scopes.record(TOKEN_A)

        refused = scopes.record(TOKEN_A)

        assert refused.refused_by is Scope.BUSINESS_USE_CASE
        assert scopes.business_use_case_usage(refused.business_use_case).regain_access_minutes == 3
        start = clock.now_s
        etas = []
        for offset_s in (29.0, 30.0, 31.0, 90.0, 149.5, 150.0):
            clock.now_s = start + offset_s
            etas.append(scopes.business_use_case_usage().regain_access_minutes)
        assert etas == [3, 2, 2, 1, 1, 0]

    def test_usage_pct_reflects_the_window_and_may_exceed_100(self, clock: FakeClock) -> None:
        scopes = limits(clock, buc_limit=4, window_s=60.0)

        pcts = [
            scopes.business_use_case_usage(scopes.record(TOKEN_A).business_use_case).call_count_pct for _ in range(5)
        ]

        assert pcts == [25, 50, 75, 100, 125]

    def test_allowed_calls_show_no_wait(self, clock: FakeClock) -> None:
        scopes = limits(clock, buc_limit=2)

        verdict = scopes.record(TOKEN_A)

        assert scopes.business_use_case_usage(verdict.business_use_case).regain_access_minutes == 0

    @pytest.mark.parametrize(("time_scale", "minute_s"), [(1.0, 60.0), (1 / 60, 1.0), (0.5, 30.0)])
    def test_time_scale_sets_the_length_of_a_minute(self, clock: FakeClock, time_scale: float, minute_s: float) -> None:
        scopes = limits(clock, buc_limit=1, window_s=0.001, buc_block_minutes=1.0, time_scale=time_scale)
        scopes.record(TOKEN_A)
        refused = scopes.record(TOKEN_A)
        assert refused.business_use_case is not None
        assert refused.business_use_case.blocked_for_s == pytest.approx(minute_s)

        clock.advance(minute_s * 0.99)
        assert scopes.business_use_case_usage().regain_access_minutes == 1
        assert scopes.record(TOKEN_A).refused_by is Scope.BUSINESS_USE_CASE
        clock.advance(minute_s * 0.02)
        assert scopes.record(TOKEN_A).refused_by is None

    def test_calls_during_the_block_never_shorten_it_and_extend_it_only_through_the_window(
        self, clock: FakeClock
    ) -> None:
        scopes = limits(clock, buc_limit=1, window_s=0.5, buc_block_minutes=1.0, time_scale=1 / 60)
        start = clock.now_s
        scopes.record(TOKEN_A)
        scopes.record(TOKEN_A)  # blocked until +1 s

        ends = []
        for _ in range(3):  # probes at +0.25, +0.5 and +0.75 s
            clock.advance(0.25)
            verdict = scopes.record(TOKEN_A)
            assert verdict.refused_by is Scope.BUSINESS_USE_CASE
            assert verdict.business_use_case is not None
            ends.append(clock.now_s + verdict.business_use_case.blocked_for_s - start)

        # The first two probes leave the 0.5 s window before +1 s; the third is still in it then.
        assert ends == [1.0, 1.0, 1.25]
        clock.advance(0.25)
        assert scopes.record(TOKEN_A).refused_by is Scope.BUSINESS_USE_CASE

    def test_probing_that_keeps_the_window_full_keeps_the_business_blocked(self, clock: FakeClock) -> None:
        scopes = limits(clock, buc_limit=2, window_s=120.0, buc_block_minutes=1.0)
        scopes.record(TOKEN_A)
        scopes.record(TOKEN_A)
        first = scopes.record(TOKEN_A)
        assert scopes.business_use_case_usage(first.business_use_case).regain_access_minutes == 2  # window drains

        clock.advance(60.0)
        scopes.record(TOKEN_A)  # each probe is recorded, pushing the drain out
        probe = scopes.record(TOKEN_A)

        assert probe.refused_by is Scope.BUSINESS_USE_CASE
        assert scopes.business_use_case_usage(probe.business_use_case).regain_access_minutes == 2

    def test_asking_for_usage_when_off_is_a_bug(self, clock: FakeClock) -> None:
        with pytest.raises(RuntimeError, match="off"):
            limits(clock).business_use_case_usage()


class TestBlockedOnArrival:
    def test_lists_every_scope_already_blocked_when_the_call_arrived(self, clock: FakeClock) -> None:
        scopes = limits(clock, app_limit=3, page_limit=2, token_limit=1, buc_limit=10)

        arrivals = [scopes.record(TOKEN_A).blocked_on_arrival for _ in range(4)]

        assert arrivals == [
            (),
            (Scope.TOKEN,),
            (Scope.PAGE, Scope.TOKEN),
            (Scope.APP, Scope.PAGE, Scope.TOKEN),
        ]

    def test_another_tokens_block_is_not_this_calls_block(self, clock: FakeClock) -> None:
        scopes = limits(clock, token_limit=1)
        scopes.record(TOKEN_A)
        scopes.record(TOKEN_A)

        assert scopes.record(TOKEN_B).blocked_on_arrival == ()
        assert scopes.record(TOKEN_A).blocked_on_arrival == (Scope.TOKEN,)

    def test_the_call_that_starts_a_block_did_not_arrive_blocked_only_if_allowed(self, clock: FakeClock) -> None:
        scopes = limits(clock, app_limit=1)

        first, second = scopes.record(None), scopes.record(None)

        assert first.blocked_on_arrival == ()
        assert second.blocked_on_arrival == (Scope.APP,)


def test_reset_forgets_every_scope(clock: FakeClock) -> None:
    scopes = limits(clock, app_limit=1, page_limit=1, token_limit=1, buc_limit=1, buc_block_minutes=60.0)
    scopes.record(TOKEN_A)
    scopes.record(TOKEN_A)

    scopes.reset()

    assert scopes.record(TOKEN_A).refused_by is None
    assert scopes.business_use_case_usage().regain_access_minutes == 0
