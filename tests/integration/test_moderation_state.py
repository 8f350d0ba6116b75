"""One contract for every moderation state: in-process, the SQLite cache, and a real redis-server."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from motion_meta_cli.moderation.redis_state import RedisState
from motion_meta_cli.moderation.sqlite_state import SQLiteState
from motion_meta_cli.moderation.state import AdmitRule, LocalState, ModerationState
from motion_meta_cli.storage.redis_cache import RedisCache
from motion_meta_cli.storage.sqlite_cache import SQLiteCache
from tests.integration.conftest import RedisServer

pytestmark = pytest.mark.integration

RULE = AdmitRule(window_ms=600, pacing=True, threshold_pct=80)


@pytest.fixture(params=["local", "sqlite", "redis"])
def state(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ModerationState]:
    if request.param == "local":
        yield LocalState(time.time)
    elif request.param == "sqlite":
        yield SQLiteState(SQLiteCache(tmp_path / "cache.db"))
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        yield RedisState(RedisCache.from_url(server.url, prefix="t:"))


def test_a_cooldown_is_never_shortened(state: ModerationState) -> None:
    assert state.pause("app", 800, recovering=False, limited_ms=0, relearn_window_ms=0)
    assert not state.pause("app", 100, recovering=False, limited_ms=0, relearn_window_ms=0)
    hold = state.hold(["user:a", "app"])
    assert hold.scope == "app"
    assert 600 < hold.wait_ms <= 800
    assert 0.6 < state.active_cooldowns()["app"] <= 0.8
    assert state.pause("app", 2000, recovering=True, limited_ms=0, relearn_window_ms=0)
    assert state.hold(["app"]).recovering == ("app",)


def test_strikes_count_new_information_only(state: ModerationState) -> None:
    before = state.now_ms()
    time.sleep(0.01)
    assert state.strike("user:a", before) == (1, True)
    assert state.strike("user:a", before) == (1, False)
    time.sleep(0.01)
    assert state.strike("user:a", state.now_ms()) == (2, True)
    state.observe_success("user:a", state.now_ms(), 1000, 10)
    time.sleep(0.01)
    assert state.strike("user:a", state.now_ms())[0] == 1


def test_admission_follows_the_learned_budget(state: ModerationState) -> None:
    assert state.hold(["app"]).budget_known is False
    assert state.admit("app", RULE)[0] == 0, "no budget yet: nothing to hold back"
    state.raise_capacity("app", 3, 60_000, precise=True)
    assert state.hold(["app"]).budget_known
    assert state.admit("app", RULE)[0] == 0
    assert state.admit("app", RULE)[0] == 0
    wait, _ = state.admit("app", RULE)
    assert 0 < wait <= 600, "three sends in the window: the fourth waits for the first to age out"
    assert state.admit("app", RULE, record=False)[0] > 0
    time.sleep(wait / 1000 + 0.05)
    assert state.admit("app", RULE)[0] == 0


def test_capacity_merges_and_relearns_on_a_throttle(state: ModerationState) -> None:
    assert state.raise_capacity("app", 50, 60_000, precise=False) == 50
    assert state.raise_capacity("app", 40, 60_000, precise=False) == 50
    assert state.raise_capacity("app", 0, 60_000, precise=False) == 50, "unmetered never replaces a budget"
    sent = state.now_ms()
    for _ in range(7):
        state.observe_success("app", sent, 60_000, 0)
    state.pause("app", 10, recovering=False, limited_ms=60_000, relearn_window_ms=60_000)
    # The relearned budget is the 7 successes that left within the window.
    assert state.raise_capacity("app", 5, 60_000, precise=False) == 7


def test_successes_count_only_if_back_before_a_request_left(state: ModerationState) -> None:
    first = state.now_ms()
    assert state.observe_success("app", first, 10_000, 0) == 0
    time.sleep(0.02)
    second = state.now_ms()
    assert state.observe_success("app", second, 10_000, 0) == 1
    assert state.observe_success("app", first - 5, 10_000, 0) == 0, "nothing had come back before it left"


def test_one_probe_and_bounded_slots(state: ModerationState) -> None:
    holder = state.try_probe("app", 5_000)
    assert holder is not None
    assert state.try_probe("app", 5_000) is None
    state.end_probe("app", "someone-else")
    assert state.try_probe("app", 5_000) is None
    state.end_probe("app", holder)
    assert state.try_probe("app", 5_000) is not None
    [a] = state.acquire_slots(["customer:acme"], 2, 5_000)
    [b] = state.acquire_slots(["customer:acme"], 2, 5_000)
    assert a and b and state.acquire_slots(["customer:acme"], 2, 5_000) == [None]
    state.acquire_slots([], 2, 5_000, releasing=[("customer:acme", a)])
    assert state.acquire_slots(["customer:acme"], 2, 5_000) != [None]


def test_slots_are_taken_in_batches_after_the_ones_being_returned(state: ModerationState) -> None:
    [held] = state.acquire_slots(["customer:b"], 1, 5_000)
    assert held is not None
    taken = state.acquire_slots(["customer:a", "customer:b", "customer:c", "customer:a"], 1, 5_000)
    assert taken[0] is not None and taken[2] is not None
    assert taken[1] is None, "b's only slot is held"
    assert taken[3] is None, "a's only slot went to the first entry of this very batch"
    assert len({taken[0], taken[2], held}) == 3, "every holder id is unique"
    again = state.acquire_slots(["customer:b"], 1, 5_000, releasing=[("customer:b", held), ("customer:x", "nobody")])
    assert again[0] is not None, "b's slot went back first, in the same call"
    assert state.acquire_slots([], 1, 5_000, releasing=[("customer:a", str(taken[0]))]) == []
    assert state.acquire_slots(["customer:a", "customer:b"], 1, 5_000) != [None, None]
    assert state.acquire_slots(["customer:a", "customer:b"], 1, 5_000) == [None, None]


def test_leases_lapse(state: ModerationState) -> None:
    assert state.try_probe("app", 50) is not None
    assert state.acquire_slots(["c"], 1, 50) != [None]
    time.sleep(0.1)
    assert state.try_probe("app", 50) is not None
    assert state.acquire_slots(["c"], 1, 50) != [None]


def test_no_budget_is_relearned_where_none_was_learned(state: ModerationState) -> None:
    sent = state.now_ms()
    state.observe_success("app", sent, 60_000, 0)  # one logged success, no usage headers ever
    state.raise_capacity("app", 0, 60_000, precise=False)
    state.pause("app", 10, recovering=False, limited_ms=60_000, relearn_window_ms=60_000)
    assert state.raise_capacity("app", 0, 60_000, precise=False) == 0, "still unmetered, not a budget of 1"


def test_an_admission_relying_on_a_hold_admits_nothing_once_the_state_moved_on(state: ModerationState) -> None:
    hold = state.hold(["app", "user:acme"])
    assert hold.wait_ms == 0
    assert state.admit("app", RULE, since=hold.epoch)[0] == 0, "nothing changed: admitted"
    state.pause("user:acme", 5_000, recovering=False, limited_ms=0, relearn_window_ms=0)
    wait, _ = state.admit("app", RULE, since=hold.epoch)
    if hold.epoch is not None:  # a backend that may serve holds from memory refuses, and holds afresh
        assert wait > 0
    assert state.hold(["app", "user:acme"]).scope == "user:acme", "the next hold sees the pause"


def _epoch(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT n FROM mod_epoch").fetchone()[0])
    finally:
        conn.close()


def test_sqlite_holds_come_from_memory_until_another_process_changes_what_they_depend_on(tmp_path: Path) -> None:
    path = tmp_path / "cache.db"
    mine, other = SQLiteState(SQLiteCache(path)), SQLiteState(SQLiteCache(path))
    other.raise_capacity("app", 5, 60_000, precise=True)
    first = mine.hold(["app", "user:acme"])
    assert first.wait_ms == 0 and first.budget_known and first.epoch == _epoch(path)
    sent = other.now_ms()
    other.observe_success("app", sent, 60_000, 0)  # clears what is not set: nothing a hold reads changes ...
    other.strike("user:acme", sent)  # ... nor do strikes
    assert _epoch(path) == first.epoch
    assert mine.admit("app", RULE, since=first.epoch)[0] == 0

    other.pause("user:acme", 5_000, recovering=True, limited_ms=0, relearn_window_ms=0)
    assert _epoch(path) > first.epoch
    cached = mine.hold(["app", "user:acme"])
    assert cached == first, "a clear hold is served from memory, epoch and all ..."
    assert mine.admit("app", RULE, since=cached.epoch)[0] == 1, "... so the admission relying on it is refused"
    fresh = mine.hold(["app", "user:acme"])
    assert fresh.scope == "user:acme" and fresh.wait_ms > 4_000 and fresh.recovering == ("user:acme",)
    assert fresh.epoch == _epoch(path)
    admitted = [other.admit("app", RULE)[0] == 0 for _ in range(5)]
    assert admitted == [True] * 4 + [False], "one send of the budget of 5 was logged: the refused one was not"


def test_sqlite_keeps_each_scope_s_send_count_equal_to_its_log(tmp_path: Path) -> None:
    path = tmp_path / "cache.db"
    state = SQLiteState(SQLiteCache(path))
    short = AdmitRule(window_ms=50, pacing=True, threshold_pct=100)
    state.raise_capacity("app", 1_000, 60_000, precise=True)
    for _ in range(30):
        assert state.admit("app", short)[0] == 0
    time.sleep(0.1)
    assert state.admit("app", short)[0] == 0  # prunes the 30 that left the window, logs one
    state.admit("other", RULE)
    conn = sqlite3.connect(path)
    try:
        counts = dict(conn.execute("SELECT scope, sends FROM mod_scopes WHERE scope IN ('app', 'other')"))
        logged = dict(conn.execute("SELECT scope, COUNT(*) FROM mod_sends GROUP BY scope"))
    finally:
        conn.close()
    assert counts == logged == {"app": 1, "other": 1}
