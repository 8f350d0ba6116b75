"""Two `poll` instances share one Redis, each from a network namespace of its own (`netns.py`); one is cut off
Redis mid-run and brought back. Meta's budget (the emulator's, for the whole app) holds throughout: no
throttle, and no window with more calls than the limit, while the instance cut off goes on fetching at its
share. Making namespaces needs root and iproute2's `ip`; without them the test fails and says so.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from motion_meta_cli.moderation.redis_state import TAG
from motion_meta_cli.moderation.rules import INSTANCES
from tests.integration.netns import (
    NamespacesUnavailable,
    TwoInstances,
    busiest_window,
    quiet,
    two_instances_on_one_redis,
    until,
)

pytestmark = pytest.mark.integration

LIMIT = 40
"""Calls per window for the whole app, at the emulator."""
WINDOW_S = 6.0
CUSTOMERS = 20
"""Per instance: each polls its own, 4 at a time every 0.5 s, far more than the budget allows."""


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[TwoInstances]:
    try:
        # The guard covers the time a request takes to reach Meta after it is logged: 5 % of a few seconds is
        # less than a loaded test machine's stalls.
        with two_instances_on_one_redis(
            tmp_path, limit=LIMIT, window_s=WINDOW_S, customers=CUSTOMERS, guard_pct=15
        ) as made:
            yield made
    except NamespacesUnavailable as exc:
        pytest.fail(str(exc))


def test_an_instance_cut_off_redis_keeps_to_its_share_and_rejoins_without_a_burst(pair: TwoInstances) -> None:
    def total() -> int:
        return int(pair.stats()["requests"])

    throttles: dict[str, int] = {}
    until(lambda: total() >= 2 * LIMIT, "both instances have paced for two windows")
    assert pair.calls(pair.a) > 0 and pair.calls(pair.b) > 0
    # Cut while the window's budget is spent (no call for a while), as it is most of the time: a cut just before
    # the window frees its budget lets the other instance take all of it before it sees this one away, which is
    # the first bound the README gives.
    until(quiet(total, 0.5), "the window's budget is spent")
    throttles["before"] = pair.stats()["throttled"]

    pair.cut()
    pair.a.wait_for("moderating in this process only")
    a_at_cut, b_at_cut, at_cut = pair.calls(pair.a), pair.calls(pair.b), time.monotonic()
    until(
        lambda: pair.calls(pair.a) > a_at_cut and time.monotonic() - at_cut >= WINDOW_S,
        "the instance cut off has fetched alone, for a window",
    )
    a_alone, b_meanwhile = pair.calls(pair.a) - a_at_cut, pair.calls(pair.b) - b_at_cut
    throttles["cut"] = pair.stats()["throttled"]

    pair.restore()
    pair.a.wait_for("moderation is shared again")
    after = total()
    until(lambda: total() >= after + 2 * LIMIT, "both instances have paced together again for two windows")
    throttles["after"] = pair.stats()["throttled"]
    instances_key = f"motion-meta:{TAG}:{INSTANCES}"
    assert len(json.loads(pair.redis("GET", instances_key))["instances"]) == 2, "both announce themselves"
    for instance in (pair.a, pair.b):
        instance.stop()
        assert instance.proc.returncode == 0, "".join(instance.log)[-2000:]
        assert "Traceback" not in "".join(instance.log), "".join(instance.log)[-2000:]

    assert pair.redis("EXISTS", instances_key) == "0", "both left the instances record when they stopped"
    busiest = busiest_window(pair.timeline(), WINDOW_S)
    assert throttles["after"] == 0, f"throttled answers by the end of each phase: {throttles}"
    assert busiest <= LIMIT, f"{busiest} calls in one {WINDOW_S} s window; Meta allows {LIMIT}"
    assert a_alone > 0 and b_meanwhile > 0, "both went on fetching, each at its share"
