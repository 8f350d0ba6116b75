"""A master found through a Redis Sentinel as the cache and the shared moderation state, and that master killed.

The contracts themselves run on a Sentinel's master in test_cache_contract.py and test_moderation_state.py."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from motion_meta_cli.errors import BackendUnavailableError, ConfigError
from motion_meta_cli.moderation.failsafe import FailSafeState
from motion_meta_cli.moderation.redis_state import RedisState
from motion_meta_cli.moderation.rules import Limit
from motion_meta_cli.storage.breaker import RETRY_S
from motion_meta_cli.storage.redis_cache import RedisCache
from tests.integration.conftest import (
    SENTINEL_DOWN_AFTER_MS,
    SENTINEL_FAILOVER_TIMEOUT_MS,
    SENTINEL_SERVICE,
    RedisSentinelServers,
    RedisServer,
    free_port,
    start_redis_sentinel,
)
from tests.integration.helpers import poll_once_on

pytestmark = pytest.mark.integration

TIMEOUT_S = 1.0
FAILOVER_BOUND_S = (SENTINEL_DOWN_AFTER_MS + SENTINEL_FAILOVER_TIMEOUT_MS) / 1000 + 2 * RETRY_S + 2
"""The Sentinel calls the master down, promotes the replica within its failover timeout, and the two breakers
(the cache's, then moderation's) each wait one retry period before they try again; 2 s for a noisy machine."""


def test_a_killed_master_fails_over_to_the_replica_and_moderation_goes_on_in_process_meanwhile(
    redis_sentinel: RedisSentinelServers,
) -> None:
    import redis

    cache = RedisCache.from_url(redis_sentinel.url, prefix="p:", timeout_s=TIMEOUT_S)
    state = FailSafeState(RedisState(cache))
    limits = [Limit("app", 100)]
    for _ in range(3):
        assert state.admit(limits, 60_000, 0).wait_ms == 0
    cache.set("marker", "before")
    with redis.Redis(port=redis_sentinel.master.port) as master:
        # Replication is asynchronous: without this the last writes could die with the master (see README).
        assert master.wait(1, 5000) == 1, "the replica has every write so far"
    redis_sentinel.master.stop()  # SIGKILL
    killed = time.monotonic()

    with pytest.raises(BackendUnavailableError, match=r"Redis master 'mymaster'/0 of the Sentinels at") as caught:
        cache.get("marker")
    assert time.monotonic() - killed < 2 * TIMEOUT_S
    assert "\n" not in str(caught.value)
    slowest_s, in_process = 0.0, 0
    while True:
        started = time.monotonic()
        assert state.admit(limits, 60_000, 0).wait_ms == 0, "admitted, in process while Redis is away"
        slowest_s = max(slowest_s, time.monotonic() - started)
        if not state.degraded:
            break
        in_process += 1
        assert time.monotonic() - killed < FAILOVER_BOUND_S, "moderation is shared again within the bound"
        time.sleep(0.05)

    assert in_process > 0 and slowest_s < 2 * TIMEOUT_S, "meanwhile every call went on in process, each at once"
    assert redis_sentinel.master_port() == redis_sentinel.replica.port
    with redis.Redis(port=redis_sentinel.replica.port, decode_responses=True) as promoted:
        assert promoted.info("replication")["role"] == "master"
    assert cache.get("marker") == "before", "what reached the replica before the kill is there"
    admitted = state.admit(limits, 60_000, 0)
    assert admitted.counted == (4,), "the three sends before the kill and the one that found Redis back"
    cache.set("marker", "after")
    assert cache.get("marker") == "after"
    cache.close()


def test_sentinels_that_do_not_answer_are_passed_over_and_none_answering_is_a_backend_error(
    redis_sentinel: RedisSentinelServers,
) -> None:
    dead, live = f"127.0.0.1:{free_port()}", f"127.0.0.1:{redis_sentinel.sentinel.port}"
    cache = RedisCache.from_url(f"redis+sentinel://{dead},{live}/{SENTINEL_SERVICE}", prefix="p:", timeout_s=TIMEOUT_S)
    cache.set("k", "v")
    assert cache.get("k") == "v"
    cache.close()

    for url in (f"redis+sentinel://{dead}/{SENTINEL_SERVICE}", f"redis+sentinel://{live}/unknown"):
        cache = RedisCache.from_url(url, prefix="p:", timeout_s=TIMEOUT_S)
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError, match=r"of the Sentinels at .*\(no master found; ") as caught:
            cache.ping()
        assert time.monotonic() - started < 2 * TIMEOUT_S
        assert "\n" not in str(caught.value)
        cache.close()


def test_a_password_the_master_refuses_is_a_config_error_not_an_outage(tmp_path: Path) -> None:
    servers = start_redis_sentinel(tmp_path, password="s3cret")
    try:
        port = servers.sentinel.port
        for url in (
            f"redis+sentinel://:wrong@127.0.0.1:{port}/mymaster",
            f"redis+sentinel://127.0.0.1:{port}/mymaster",
        ):
            cache = RedisCache.from_url(url, prefix="p:", timeout_s=TIMEOUT_S)
            with pytest.raises(ConfigError, match="refused authentication; check the password") as caught:
                cache.get("k")
            assert "wrong" not in str(caught.value)
            assert cache.reachable, "a refused password does not open the breaker"
            cache.close()
        cache = RedisCache.from_url(servers.url, prefix="p:", timeout_s=TIMEOUT_S)
        cache.set("k", "v")
        assert cache.get("k") == "v"
        cache.close()
    finally:
        servers.stop()


def test_a_sentinel_that_wants_a_password_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "sentinel.conf"
    config.write_text(f"sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {free_port()} 1\nrequirepass s3cret\n")
    sentinel = RedisServer(free_port(), tmp_path, extra=("--sentinel",), config_file=config)
    sentinel.start()
    try:
        url = f"redis+sentinel://:s3cret@127.0.0.1:{sentinel.port}/{SENTINEL_SERVICE}"
        cache = RedisCache.from_url(url, prefix="p:", timeout_s=TIMEOUT_S)
        with pytest.raises(ConfigError, match="a Sentinel refused to answer without a password"):
            cache.get("k")
        cache.close()
    finally:
        sentinel.stop()


def test_poll_runs_on_a_sentinels_master(empty_redis_sentinel: RedisSentinelServers, tmp_path: Path) -> None:
    app = poll_once_on(empty_redis_sentinel.url, tmp_path / "h", ["acme", "globex"])
    assert app["budget"] is not None, "the app's budget was learned, and kept on the Sentinel's master"
