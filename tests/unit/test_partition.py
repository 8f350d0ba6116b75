"""The fair share while partitioned, as pure rules: the instances record and `rules.share` (two moderators, one
cut off, are in tests/integration/test_moderation_state.py, on every backend)."""

from __future__ import annotations

from typing import Any

import pytest

from motion_meta_cli.config import ThrottleHandling
from motion_meta_cli.moderation import rules
from motion_meta_cli.moderation.rules import APP, Scope, Share

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
