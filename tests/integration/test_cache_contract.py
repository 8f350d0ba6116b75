"""The atomic-add and batch operations of every Cache, run against SQLite (a file), Redis (a real server), a
local Redis Cluster of three masters (keys spread over their slots) and a master found through a Redis Sentinel.

The poller's per-cycle leases rest on them: `add_many` must store a key only where it is absent or expired,
key by key, and say which ones this call stored, even when two instances race for the same keys.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from motion_meta_cli.storage.base import Cache
from motion_meta_cli.storage.sqlite_cache import MAX_PARAMS, SQLiteCache
from tests.integration.conftest import RedisClusterServers, RedisSentinelServers, RedisServer

pytestmark = pytest.mark.integration

OpenCache = Callable[[], Cache]
REDIS_FIXTURES = {
    "redis": "redis_server",
    "redis-cluster": "empty_redis_cluster",
    "redis-sentinel": "empty_redis_sentinel",
}


@pytest.fixture(params=["sqlite", "redis", "redis-cluster", "redis-sentinel"])
def open_cache(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenCache]:
    """Opens another client of one backend; all of them share the same file or server."""
    opened: list[Cache] = []
    prefix = f"contract-{time.monotonic_ns()}:"

    def open_one() -> Cache:
        cache: Cache
        if request.param == "sqlite":
            cache = SQLiteCache(tmp_path / "cache.db")
        else:
            from motion_meta_cli.storage.redis_cache import RedisCache

            server: RedisServer | RedisClusterServers | RedisSentinelServers = request.getfixturevalue(
                REDIS_FIXTURES[request.param]
            )
            cache = RedisCache.from_url(server.url, prefix=prefix, timeout_s=2.0)
        opened.append(cache)
        return cache

    yield open_one
    for cache in opened:
        cache.close()


def test_add_stores_only_when_absent(open_cache: OpenCache) -> None:
    cache = open_cache()
    assert cache.add_many(["lease"], "first", ttl_s=30) == [True]
    assert cache.add_many(["lease"], "second", ttl_s=30) == [False]
    assert cache.get("lease") == "first"


def test_add_takes_over_an_expired_key_but_never_a_permanent_one(open_cache: OpenCache) -> None:
    cache = open_cache()
    assert cache.add_many(["short"], "old", ttl_s=0.05) == [True]
    cache.set("forever", "kept")
    time.sleep(0.2)
    assert cache.add_many(["short", "forever"], "new", ttl_s=30) == [True, False]
    assert cache.get_many(["short", "forever"]) == ["new", "kept"]


def test_add_many_reports_each_key_and_keeps_its_order(open_cache: OpenCache) -> None:
    cache = open_cache()
    cache.set("b", "taken", ttl_s=30)
    assert cache.add_many(["a", "b", "c"], "mine", ttl_s=30) == [True, False, True]
    assert cache.get_many(["c", "missing", "b", "a"]) == ["mine", None, "taken", "mine"]
    assert cache.add_many([], "mine", ttl_s=30) == []
    assert cache.get_many([]) == []


def test_get_many_skips_expired_values(open_cache: OpenCache) -> None:
    cache = open_cache()
    cache.set("gone", "x", ttl_s=0.05)
    cache.set("here", "y", ttl_s=30)
    time.sleep(0.2)
    assert cache.get_many(["gone", "here"]) == [None, "y"]


def test_get_many_reads_more_keys_than_one_query_may_bind(open_cache: OpenCache) -> None:
    cache = open_cache()
    keys = [f"k{n}" for n in range(MAX_PARAMS * 2 + 3)]
    assert all(cache.add_many(keys, "v", ttl_s=30))
    values = cache.get_many([*keys, "absent"])
    assert values[:-1] == ["v"] * len(keys)
    assert values[-1] is None


def test_racing_add_many_gives_each_key_to_exactly_one_client(open_cache: OpenCache) -> None:
    keys = [f"poll:lease:7:c{n:03d}" for n in range(200)]
    clients = [open_cache() for _ in range(4)]
    won: dict[int, list[str]] = {}
    start = threading.Barrier(len(clients))

    def claim(index: int) -> None:
        start.wait()
        mine: list[str] = []
        for offset in range(0, len(keys), 16):  # as the poller claims: 16 at a time
            chunk = keys[offset : offset + 16]
            mine += [key for key, ok in zip(chunk, clients[index].add_many(chunk, f"i{index}", 30), strict=True) if ok]
        won[index] = mine

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    claimed = [key for mine in won.values() for key in mine]
    assert sorted(claimed) == sorted(keys)  # every key once: no duplicate, no miss
    owners = clients[0].get_many(keys)
    assert all(owners[keys.index(key)] == f"i{index}" for index, mine in won.items() for key in mine)


def test_a_renewed_lock_outlives_its_ttl_and_a_lapsed_one_cannot_be_renewed(open_cache: OpenCache) -> None:
    cache = open_cache()
    held = cache.lock("guard", ttl_s=0.3)
    assert held.acquire(blocking=False)
    time.sleep(0.2)
    assert held.renew()
    time.sleep(0.2)  # 0.4 s after it was taken: alive only because it was renewed
    assert not cache.lock("guard", ttl_s=0.3).acquire(blocking=False)
    time.sleep(0.35)
    assert not held.renew(), "lapsed: renewing would steal it from whoever takes it next"
    assert cache.lock("guard", ttl_s=0.3).acquire(blocking=False)


def test_the_once_guard_is_renewed_while_the_run_lasts(open_cache: OpenCache, monkeypatch: pytest.MonkeyPatch) -> None:
    import motion_meta_cli.poller as poller

    monkeypatch.setattr(poller, "ONCE_GUARD_TTL_S", 0.3)
    cache = open_cache()
    with poller.once_guard(cache) as held:
        assert held
        time.sleep(0.7)  # more than two TTLs
        with poller.once_guard(cache) as second:
            assert not second, "another run must not start"
    with poller.once_guard(cache) as again:
        assert again, "given back when the run ended"
