"""One contract for every moderation state: in-process, SQLite, a real redis-server, a local Redis Cluster and a
master found through a Redis Sentinel; every assertion runs on each of them."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from motion_meta_cli.config import ThrottleHandling
from motion_meta_cli.errors import BackendUnavailableError, ThrottledError
from motion_meta_cli.moderation import rules
from motion_meta_cli.moderation.failsafe import FailSafeState
from motion_meta_cli.moderation.moderator import Moderator
from motion_meta_cli.moderation.redis_state import RedisState
from motion_meta_cli.moderation.rules import APP, INSTANCES, Limit, Scope
from motion_meta_cli.moderation.sqlite_state import SQLiteState
from motion_meta_cli.moderation.state import LocalState, ModerationState, Record
from motion_meta_cli.storage.redis_cache import RedisCache
from tests.integration.conftest import RedisClusterServers, RedisSentinelServers, RedisServer

pytestmark = pytest.mark.integration

WINDOW_MS = 600
REDIS_FIXTURES = {
    "redis": "redis_server",
    "redis-cluster": "empty_redis_cluster",
    "redis-sentinel": "empty_redis_sentinel",
}


@pytest.fixture(params=["local", "sqlite", "redis", "redis-cluster", "redis-sentinel"])
def state(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ModerationState]:
    if request.param == "local":
        yield LocalState(time.time)
    elif request.param == "sqlite":
        sqlite = SQLiteState(tmp_path / "cache.moderation.db")
        yield sqlite
        sqlite.close()
    else:
        server: RedisServer | RedisClusterServers | RedisSentinelServers = request.getfixturevalue(
            REDIS_FIXTURES[request.param]
        )
        cache = RedisCache.from_url(server.url, prefix="t:")
        yield RedisState(cache)
        cache.close()


def _set(value: int, ttl_ms: int = 60_000) -> object:
    def change(record: Record | None, now: int) -> Record:
        return {"n": value, "seen": None if record is None else record["n"], "expires_ms": now + ttl_ms}

    return change


def test_records_are_read_changed_atomically_and_deleted(state: ModerationState) -> None:
    now, found = state.read(["a", "b"])
    assert found == {} and now > 0
    stored = state.update("a", _set(1))  # type: ignore[arg-type]
    assert stored is not None and stored["n"] == 1 and stored["seen"] is None
    assert state.update("a", _set(2))["seen"] == 1  # type: ignore[arg-type,index]
    state.update("b", _set(3))  # type: ignore[arg-type]
    _, found = state.read(["a", "b", "c"])
    assert {key: record["n"] for key, record in found.items()} == {"a": 2, "b": 3}
    assert set(state.read(None)[1]) == {"a", "b"}, "None reads every record"
    assert state.update("a", lambda record, now: None) is None
    assert set(state.read(None)[1]) == {"b"}


def test_records_expire(state: ModerationState) -> None:
    state.update("short", _set(1, ttl_ms=50))  # type: ignore[arg-type]
    assert "short" in state.read(["short"])[1]
    time.sleep(0.12)
    assert state.read(["short"])[1] == {}
    assert state.update("short", _set(2))["seen"] is None, "an expired record is no record"  # type: ignore[arg-type,index]


def test_concurrent_updates_lose_nothing(state: ModerationState) -> None:
    def bump(record: Record | None, now: int) -> Record:
        return {"n": (record or {"n": 0})["n"] + 1, "expires_ms": now + 60_000}

    def worker() -> None:
        for _ in range(25):
            state.update("counter", bump)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert state.read(["counter"])[1]["counter"]["n"] == 200


def test_a_change_that_fails_fails_alone(state: ModerationState) -> None:
    def bump(record: Record | None, now: int) -> Record:
        return {"n": (record or {"n": 0})["n"] + 1, "expires_ms": now + 60_000}

    def broken(record: Record | None, now: int) -> Record:
        raise ValueError("a bug in one change")

    errors: list[BaseException] = []

    def worker(n: int) -> None:
        for _ in range(10):
            try:
                state.update("counter", broken if n % 4 == 0 else bump)
            except ValueError as exc:
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(errors) == 40, "each broken change raised to its own caller"
    assert state.read(["counter"])[1]["counter"]["n"] == 120, "every other change was applied"


def test_concurrent_admissions_never_exceed_the_limit(state: ModerationState) -> None:
    rule = Limit("app", 20, 0, 0)
    admitted: list[int] = []

    def worker() -> None:
        for _ in range(4):
            if state.admit([rule], 60_000, 0).wait_ms <= 0:
                admitted.append(1)

    threads = [threading.Thread(target=worker) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(admitted) == 20


def test_a_send_log_admits_up_to_its_limit_per_window(state: ModerationState) -> None:
    rule = Limit("app", 3, 0, 0)
    first = state.admit([rule], WINDOW_MS, 0)
    assert first.wait_ms == 0 and first.counted == (0,)
    assert state.admit([rule], WINDOW_MS, 0).counted == (1,)
    assert state.admit([rule], WINDOW_MS, 0).wait_ms == 0
    refused = state.admit([rule], WINDOW_MS, 0)
    assert 0 < refused.wait_ms <= WINDOW_MS, "three sends in the window: the fourth waits for the first to age out"
    assert state.admit([Limit("app", None, 0, 0)], WINDOW_MS, 0).wait_ms == 0, "no ceiling: logged all the same"
    time.sleep(refused.wait_ms / 1000 + 0.05)
    assert state.admit([rule], WINDOW_MS, 0).wait_ms == 0


def test_logs_admit_together_or_not_at_all(state: ModerationState) -> None:
    full = Limit("buc:1:ads", 1, 0, 0)
    assert state.admit([Limit("app", None, 0, 0), full], WINDOW_MS, 0).wait_ms == 0
    assert state.admit([Limit("app", None, 0, 0), full], WINDOW_MS, 0).wait_ms > 0
    assert state.admit([Limit("app", None, 0, 0)], WINDOW_MS, 0).counted == (1,), "the refused send was not logged"


def test_sends_are_spaced_from_a_count_on(state: ModerationState) -> None:
    spaced = Limit("app", 10, 2, 200)
    assert state.admit([spaced], WINDOW_MS, 0).wait_ms == 0
    assert state.admit([spaced], WINDOW_MS, 0).wait_ms == 0, "below the spacing count: no spacing"
    wait = state.admit([spaced], WINDOW_MS, 0).wait_ms
    assert 100 < wait <= 200


def test_a_log_can_be_counted_without_recording_and_its_oldest_sends_are_not_counted(
    state: ModerationState,
) -> None:
    state.admit([Limit("answers")], 1000, 0)
    assert state.admit([Limit("answers", record=False)], 1000, 0).counted == (1,)
    assert state.admit([Limit("answers", record=False)], 1000, 0).counted == (1,), "nothing recorded"
    time.sleep(0.15)
    assert state.admit([Limit("answers", record=False)], 1000, 900).counted == (0,), "too near the window's start"


class _Down:
    """A shared state that cannot be reached."""

    def __getattr__(self, name: str) -> object:
        from motion_meta_cli.errors import BackendUnavailableError

        def fail(*args: object, **kwargs: object) -> object:
            raise BackendUnavailableError("cannot reach the test's backend")

        return fail


def test_failsafe_moderates_in_process_while_the_shared_state_is_away(caplog: pytest.LogCaptureFixture) -> None:
    failsafe = FailSafeState(_Down())  # type: ignore[arg-type]
    failsafe.update("app", _set(1))  # type: ignore[arg-type]
    assert failsafe.degraded
    assert failsafe.read(["app"])[1]["app"]["n"] == 1
    assert failsafe.admit([Limit("app", 1, 0, 0)], WINDOW_MS, 0).wait_ms == 0
    assert failsafe.admit([Limit("app", 1, 0, 0)], WINDOW_MS, 0).wait_ms > 0
    assert sum("moderating in this process only" in r.message for r in caplog.records) == 1


def test_sqlite_writes_queued_behind_an_interrupted_transaction_still_land(tmp_path: Path) -> None:
    """Writes of threads that queue while one transaction runs share the next one; when that transaction is
    interrupted (Ctrl-C lands in whichever thread runs it), the others are written all the same."""
    state = SQLiteState(tmp_path / "cache.moderation.db")
    real = state._db.transaction
    interrupted = threading.Event()

    @contextlib.contextmanager
    def once_interrupted() -> Iterator[object]:
        if not interrupted.is_set():
            interrupted.set()
            raise KeyboardInterrupt
        with real() as conn:
            yield conn

    def bump(record: Record | None, now: int) -> Record:
        return {"n": (record or {"n": 0})["n"] + 1, "expires_ms": now + 60_000}

    outcomes: list[str] = []

    def worker() -> None:
        try:
            state.update("counter", bump)
            outcomes.append("stored")
        except KeyboardInterrupt:
            outcomes.append("interrupted")

    state._db.transaction = once_interrupted  # type: ignore[method-assign]
    threads = [threading.Thread(target=worker) for _ in range(4)]
    with state._leader:  # hold the transaction slot until every write has queued
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while len(state._queue) < 4 and time.monotonic() < deadline:
            time.sleep(0.001)
        assert len(state._queue) == 4
    for thread in threads:
        thread.join()
    state._db.transaction = real  # type: ignore[method-assign]
    assert sorted(outcomes) == ["interrupted", "stored", "stored", "stored"]
    assert state.read(["counter"])[1]["counter"]["n"] == 3, "the interrupted thread's write alone was dropped"
    state.close()


SHORT = ThrottleHandling(window_s=4.0, window_guard_pct=0)
"""Heartbeats every 0.1 s; an instance is away after 0.3 s without one."""
SHORT_WINDOW_MS = 4_000


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
            moderator.finish(moderator.acquire("c", SHORT, budget_s=0, probe_ttl_ms=1_000))
        except ThrottledError:
            return count
        count += 1


def _until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_two_instances_stay_within_the_budget_while_one_is_cut_off_and_after_it_rejoins(
    state: ModerationState,
) -> None:
    """Two moderators share `state`; the test cuts one's link to it (the fallback's clock is the epoch, as
    every backend's), then restores it."""
    shared = state
    shared.update(APP, lambda r, now: Scope(budget=100, budget_until_ms=now + 600_000, precise=True).dump())
    link_b, breaker_b = Link(shared), Breaker()
    a = Moderator(FailSafeState(Link(shared)))  # type: ignore[arg-type]
    b = Moderator(FailSafeState(link_b, clock=breaker_b))  # type: ignore[arg-type]
    try:
        for moderator in (a, b):
            moderator.finish(moderator.acquire("c", SHORT, budget_s=5, probe_ttl_ms=1_000))
        assert set(shared.read([INSTANCES])[1][INSTANCES]["instances"]) == {a.presence.me, b.presence.me}

        link_b.up = False
        started = time.monotonic()
        b.finish(b.acquire("c", SHORT, budget_s=5, probe_ttl_ms=1_000))
        assert b.state.degraded  # type: ignore[attr-defined]
        assert time.monotonic() - started >= 0.2, "it waited for the others to see it away"
        alone = 1 + _sends(b)
        assert alone == 49, "half of the budget it knew, less what it had sent before the cut"
        assert b.state.alone(SHORT_WINDOW_MS) == {APP: 49}  # type: ignore[attr-defined]
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


def test_the_fallback_starts_from_what_the_shared_state_last_said(state: ModerationState) -> None:
    shared = state
    shared.update("user:c", lambda r, now: Scope(cooldown_until_ms=now + 60_000).dump())
    link = Link(shared)
    failsafe = FailSafeState(link)  # type: ignore[arg-type]
    assert "user:c" in failsafe.read(["user:c", APP])[1]
    link.up = False
    assert failsafe.read(["user:c"])[1]["user:c"]["cooldown_until_ms"] > time.time() * 1000, "the cooldown is kept"
    assert failsafe.degraded
    assert failsafe.admit([rules.Limit(APP)], SHORT_WINDOW_MS, 0).wait_ms == 0
    assert failsafe.alone(SHORT_WINDOW_MS) == {APP: 1}
