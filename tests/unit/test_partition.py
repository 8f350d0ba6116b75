"""A fair share while partitioned: the instances record, `rules.share`, and two moderators, one of them cut off
from the shared state it shares with the other (a link the test cuts; the state itself is in memory)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from motion_meta_cli.config import ThrottleHandling
from motion_meta_cli.errors import BackendUnavailableError, ThrottledError
from motion_meta_cli.moderation import rules
from motion_meta_cli.moderation.failsafe import FailSafeState
from motion_meta_cli.moderation.moderator import Moderator
from motion_meta_cli.moderation.rules import APP, INSTANCES, Scope, Share
from motion_meta_cli.moderation.state import LocalState

HANDLING = ThrottleHandling(window_s=4.0, window_guard_pct=0)
"""Heartbeats every 0.1 s; an instance is away after 0.3 s without one."""
WINDOW_MS = 4_000
QUIET_MS = 300


def _record(**seen: int) -> dict[str, Any]:
    return {"instances": {i: {"seen_ms": t, "until_ms": t + 2 * WINDOW_MS} for i, t in seen.items()}}


def test_an_instance_counts_for_two_windows_after_its_last_heartbeat_and_leaves_when_it_stops() -> None:
    record = rules.beat(None, 1_000, "a", WINDOW_MS, {})
    record = rules.beat(record, 2_000, "b", WINDOW_MS, {"app": 3, "app:answered": 9, "user:x": 1})
    assert record["instances"]["b"] == {"seen_ms": 2_000, "until_ms": 10_000, "alone": {"app": 3}}
    assert record["expires_ms"] == 10_000
    assert set(rules.beat(record, 9_500, "b", WINDOW_MS, {})["instances"]) == {"b"}, "a lapsed two windows after"
    assert set(rules.leave(record, 2_500, "a")["instances"]) == {"b"}  # type: ignore[index]
    assert rules.leave(rules.leave(record, 2_500, "a"), 2_500, "b") is None


def test_connected_instances_leave_out_the_shares_of_those_away_and_what_was_sent_alone() -> None:
    assert rules.share(None, 0, "a", partitioned=False, handling=HANDLING) == Share(1.0, {}, 0)
    record = _record(a=10_000, b=10_000 - QUIET_MS + 1, c=10_000 - QUIET_MS)
    assert rules.share(record, 10_000, "a", partitioned=False, handling=HANDLING).fraction == pytest.approx(2 / 3)
    record["instances"]["b"]["alone"] = {"app": 7, "buc:1:ads_management": 2}
    record["instances"]["a"]["alone"] = {"app": 1}
    assert rules.share(record, 10_000, "a", partitioned=False, handling=HANDLING).alone == {
        "app": 8,
        "buc:1:ads_management": 2,
    }
    assert rules.share(record, 10_000, "new", partitioned=False, handling=HANDLING).fraction == pytest.approx(3 / 4)


def test_a_partitioned_instance_takes_one_nth_once_the_others_can_see_it_away() -> None:
    record = _record(a=10_000, b=10_000, c=9_000)
    assert rules.share(record, 10_100, "a", partitioned=True, handling=HANDLING) == Share(1 / 3, {}, 200)
    assert rules.share(record, 10_300, "a", partitioned=True, handling=HANDLING).wait_ms == 0
    later = rules.share(record, 10_000 + 3 * WINDOW_MS, "a", partitioned=True, handling=HANDLING)
    assert later.fraction == pytest.approx(1 / 3), "the others as its last heartbeat saw them, however long ago"
    alone = _record(a=10_000)
    assert rules.share(alone, 10_001, "a", partitioned=True, handling=HANDLING) == Share(1.0, {}, 0), "nobody to tell"


def test_a_share_binds_the_budget_even_without_pacing_and_never_below_one_call() -> None:
    budget = Scope(budget=100, budget_until_ms=10_000, precise=True)
    unpaced = ThrottleHandling(window_s=4.0, pacing=False)
    assert rules.limit(APP, budget, 0, unpaced).limit is None
    assert rules.limit(APP, budget, 0, unpaced, Share(0.5)).limit == 50
    assert rules.limit(APP, budget, 0, HANDLING, Share(1.0, {APP: 30})).limit == 70
    assert rules.limit("buc:1:ads_management", budget, 0, unpaced, Share(1.0, {APP: 30})).limit is None
    assert rules.limit(APP, budget, 0, HANDLING, Share(1 / 3, {APP: 40})).limit == 1
    assert rules.blocker({APP: Scope()}, 0, unpaced, set(), Share(0.5, {}, 250)) == rules.Wait(APP, 250, "partition")


class Link:
    """A shared state behind a link the test can cut."""

    def __init__(self, state: LocalState) -> None:
        self.state, self.up = state, True

    def _through(self, call: Callable[[], Any]) -> Any:
        if not self.up:
            raise BackendUnavailableError("the link to the moderation state is down")
        return call()

    def read(self, keys: Sequence[str] | None) -> Any:
        return self._through(lambda: self.state.read(keys))

    def update(self, key: str, change: Any) -> Any:
        return self._through(lambda: self.state.update(key, change))

    def admit(self, limits: Any, window_ms: int, margin_ms: int) -> Any:
        return self._through(lambda: self.state.admit(limits, window_ms, margin_ms))


class Breaker:
    """The fail-safe state's clock, moved on by hand so that a trial comes when the test says."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _sends(moderator: Moderator) -> int:
    """Attempts admitted at once, until the first that would have to wait."""
    count = 0
    while True:
        try:
            moderator.finish(moderator.acquire("c", HANDLING, budget_s=0, probe_ttl_ms=1_000))
        except ThrottledError:
            return count
        count += 1


def _until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_two_instances_stay_within_the_budget_while_one_is_cut_off_and_after_it_rejoins() -> None:
    shared = LocalState(time.time)  # epoch milliseconds, as Redis's clock and the fallback's
    shared.update(APP, lambda r, now: Scope(budget=100, budget_until_ms=now + 600_000, precise=True).dump())
    link_b, breaker_b = Link(shared), Breaker()
    a = Moderator(FailSafeState(Link(shared)))  # type: ignore[arg-type]
    b = Moderator(FailSafeState(link_b, clock=breaker_b))  # type: ignore[arg-type]
    try:
        for moderator in (a, b):
            moderator.finish(moderator.acquire("c", HANDLING, budget_s=5, probe_ttl_ms=1_000))
        assert set(shared.read([INSTANCES])[1][INSTANCES]["instances"]) == {a.presence.me, b.presence.me}

        link_b.up = False
        started = time.monotonic()
        b.finish(b.acquire("c", HANDLING, budget_s=5, probe_ttl_ms=1_000))
        assert b.state.degraded  # type: ignore[attr-defined]
        assert time.monotonic() - started >= 0.2, "it waited for the others to see it away"
        alone = 1 + _sends(b)
        assert alone == 49, "half of the budget it knew, less what it had sent before the cut"
        assert b.state.alone(WINDOW_MS) == {APP: 49}  # type: ignore[attr-defined]
        together = _sends(a)
        assert together == 48, "half of the budget, less the sends of both already in the shared log"

        link_b.up, breaker_b.now = True, 10.0
        assert _sends(b) == 1, "back: what it sent alone counts until it leaves the window, so 100 in all"
        assert not b.state.degraded  # type: ignore[attr-defined]
        assert shared.read([INSTANCES])[1][INSTANCES]["instances"][b.presence.me]["alone"] == {APP: 49}
        _until(lambda: (a.presence.record or {}).get("instances", {}).get(b.presence.me, {}).get("alone") == {APP: 49})
        assert _sends(a) == 0, "no burst: 100 sends are in the window, 49 of them in no shared log"
    finally:
        a.close()
        b.close()
    assert INSTANCES not in shared.read([INSTANCES])[1], "both left when they stopped"


def test_the_fallback_starts_from_what_the_shared_state_last_said() -> None:
    shared = LocalState(time.time)
    shared.update("user:c", lambda r, now: Scope(cooldown_until_ms=now + 60_000).dump())
    link = Link(shared)
    failsafe = FailSafeState(link)  # type: ignore[arg-type]
    assert "user:c" in failsafe.read(["user:c", APP])[1]
    link.up = False
    assert failsafe.read(["user:c"])[1]["user:c"]["cooldown_until_ms"] > time.time() * 1000, "the cooldown is kept"
    assert failsafe.degraded
    assert failsafe.admit([rules.Limit(APP)], WINDOW_MS, 0).wait_ms == 0
    assert failsafe.alone(WINDOW_MS) == {APP: 1}
