"""The emulator's rolling-window limiter, driven by a fake clock."""

from __future__ import annotations

import pytest

from motion_meta_cli.emulator import RollingWindowLimiter


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
