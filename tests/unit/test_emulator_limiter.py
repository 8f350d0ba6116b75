"""The emulator's rolling-window limiters (with minimum blocks, and one per key), driven by a fake clock."""

from __future__ import annotations

import pytest

from motion_meta_cli.emulator import KeyedWindowLimiter, RollingWindowLimiter


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_allows_up_to_the_limit_then_blocks(clock: FakeClock) -> None:
    limiter = RollingWindowLimiter(limit=3, window_s=60.0, clock=clock)

    verdicts = [limiter.hit() for _ in range(4)]

    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert [v.count_in_window for v in verdicts] == [1, 2, 3, 4]
    assert [v.blocked_before for v in verdicts] == [False, False, False, True]


def test_calls_roll_off_after_the_window(clock: FakeClock) -> None:
    limiter = RollingWindowLimiter(limit=2, window_s=60.0, clock=clock)
    limiter.hit()
    clock.advance(30.0)
    limiter.hit()
    assert not limiter.hit().allowed

    clock.advance(30.0)  # the first call is exactly window_s old: out of the window

    verdict = limiter.hit()
    assert verdict.allowed is False  # the refused call at t=30 still counts
    clock.advance(30.0)
    assert limiter.count_in_window() == 1
    assert limiter.hit().allowed


def test_calls_while_blocked_extend_the_block(clock: FakeClock) -> None:
    limiter = RollingWindowLimiter(limit=2, window_s=10.0, clock=clock)
    limiter.hit()
    limiter.hit()
    for _ in range(5):  # a client that keeps probing every 4 s
        clock.advance(4.0)
        assert not limiter.hit().allowed

    # Had it stopped probing, it would have been free at t=10; it is still blocked at t=20.
    assert limiter.count_in_window() == 3
    clock.advance(4.0)
    assert not limiter.hit().allowed

    clock.advance(10.0)  # silence for a whole window clears it
    assert limiter.hit().allowed


def test_usage_pct_is_whole_and_may_exceed_100(clock: FakeClock) -> None:
    limiter = RollingWindowLimiter(limit=3, window_s=60.0, clock=clock)
    assert limiter.usage_pct() == 0

    verdicts = [limiter.hit() for _ in range(4)]

    assert [v.usage_pct for v in verdicts] == [33, 66, 100, 133]
    assert limiter.usage_pct() == 133
    clock.advance(60.0)
    assert limiter.usage_pct() == 0


def test_unlimited_never_blocks_but_counts(clock: FakeClock) -> None:
    limiter = RollingWindowLimiter(limit=None, window_s=1.0, clock=clock)

    verdicts = [limiter.hit() for _ in range(1000)]

    assert all(v.allowed and not v.blocked_before for v in verdicts)
    assert verdicts[-1].count_in_window == 1000
    assert limiter.usage_pct() == 0


def test_reset_forgets_every_call(clock: FakeClock) -> None:
    limiter = RollingWindowLimiter(limit=1, window_s=60.0, clock=clock)
    limiter.hit()
    limiter.hit()

    limiter.reset()

    assert limiter.count_in_window() == 0
    assert limiter.hit().allowed


@pytest.mark.parametrize(("limit", "window_s"), [(0, 60.0), (-1, 60.0), (10, 0.0), (10, -5.0)])
def test_rejects_nonsense_settings(limit: int, window_s: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        RollingWindowLimiter(limit=limit, window_s=window_s)


class TestMinimumBlock:
    def test_a_block_lasts_at_least_min_block_s_even_once_the_window_drains(self, clock: FakeClock) -> None:
        limiter = RollingWindowLimiter(limit=2, window_s=1.0, clock=clock, min_block_s=30.0)
        limiter.hit()
        limiter.hit()

        refused = limiter.hit()

        assert (refused.allowed, refused.blocked_for_s) == (False, 30.0)
        clock.advance(29.0)  # the window emptied long ago, but the penalty still runs
        assert limiter.count_in_window() == 0
        assert limiter.blocked_for_s() == 1.0
        clock.advance(1.0)
        assert limiter.blocked_for_s() == 0.0
        assert limiter.hit().allowed

    def test_calls_during_a_block_never_shorten_it(self, clock: FakeClock) -> None:
        limiter = RollingWindowLimiter(limit=1, window_s=1.0, clock=clock, min_block_s=10.0)
        limiter.hit()
        limiter.hit()  # starts a block ending at +10 s

        ends = []
        for _ in range(5):
            clock.advance(1.5)
            ends.append(clock.now_s + limiter.hit().blocked_for_s)

        assert ends == [1010.0] * 5

    def test_calls_during_a_block_extend_it_while_they_keep_the_window_full(self, clock: FakeClock) -> None:
        limiter = RollingWindowLimiter(limit=2, window_s=60.0, clock=clock, min_block_s=5.0)
        limiter.hit()
        limiter.hit()
        assert limiter.hit().blocked_for_s == 60.0  # the window drains at +60 s, later than the 5 s penalty

        clock.advance(10.0)
        assert limiter.hit().blocked_for_s == 50.0  # one probe: still the calls at +0 s that must leave
        second = limiter.hit()

        assert second.blocked_for_s == 60.0  # two probes: the window now drains only when they leave, at +70 s
        clock.advance(59.0)
        assert limiter.blocked_for_s() == 1.0
        clock.advance(1.0)
        assert limiter.hit().allowed

    def test_without_a_minimum_the_block_lasts_until_the_window_drains(self, clock: FakeClock) -> None:
        limiter = RollingWindowLimiter(limit=2, window_s=10.0, clock=clock)
        limiter.hit()
        clock.advance(4.0)
        limiter.hit()

        verdict = limiter.hit()

        # The refused call counts too, so access returns when the call at +4 s leaves, at +14 s.
        assert verdict.blocked_for_s == 10.0
        clock.advance(9.0)
        assert limiter.count_in_window() == 2
        clock.advance(1.0)
        assert limiter.hit().allowed

    def test_allowed_calls_report_no_block(self, clock: FakeClock) -> None:
        limiter = RollingWindowLimiter(limit=2, window_s=10.0, clock=clock, min_block_s=60.0)

        assert [limiter.hit().blocked_for_s for _ in range(2)] == [0.0, 0.0]

    def test_reset_ends_a_block(self, clock: FakeClock) -> None:
        limiter = RollingWindowLimiter(limit=1, window_s=1.0, clock=clock, min_block_s=60.0)
        limiter.hit()
        limiter.hit()

        limiter.reset()

        assert limiter.blocked_for_s() == 0.0
        assert limiter.hit().allowed

    def test_rejects_a_negative_minimum(self) -> None:
        with pytest.raises(ValueError, match="min_block_s must not be negative"):
            RollingWindowLimiter(limit=1, window_s=1.0, min_block_s=-1.0)


def test_long_runs_keep_memory_to_the_window(clock: FakeClock) -> None:
    limiter = RollingWindowLimiter(limit=None, window_s=1.0, clock=clock)
    for _ in range(10_000):
        limiter.hit()
        clock.advance(0.01)

    assert limiter.count_in_window() == 100
    assert len(limiter._calls) < 2 * 1024 + 100  # evicted calls are compacted away


class TestKeyedWindowLimiter:
    def test_each_key_has_its_own_count(self, clock: FakeClock) -> None:
        limiter = KeyedWindowLimiter(limit=2, window_s=60.0, clock=clock)

        a = [limiter.hit("a").allowed for _ in range(3)]
        b = [limiter.hit("b").allowed for _ in range(2)]

        assert (a, b) == ([True, True, False], [True, True])
        assert len(limiter) == 2

    def test_keys_roll_off_and_reset(self, clock: FakeClock) -> None:
        limiter = KeyedWindowLimiter(limit=1, window_s=60.0, clock=clock)
        limiter.hit("a")
        assert limiter.hit("a").blocked_before

        clock.advance(120.0)
        assert limiter.hit("a").allowed
        limiter.reset()
        assert len(limiter) == 0

    @pytest.mark.parametrize(("limit", "window_s"), [(0, 60.0), (1, 0.0)])
    def test_rejects_nonsense_settings(self, limit: int, window_s: float) -> None:
        with pytest.raises(ValueError, match="must be"):
            KeyedWindowLimiter(limit=limit, window_s=window_s)
