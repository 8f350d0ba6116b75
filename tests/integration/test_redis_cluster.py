"""A local Redis Cluster of three masters as the cache and the shared moderation state, and one master killed.

The contracts themselves run on the cluster in test_cache_contract.py and test_moderation_state.py."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from motion_meta_cli.errors import BackendUnavailableError
from motion_meta_cli.moderation.failsafe import FailSafeState
from motion_meta_cli.moderation.redis_state import TAG, RedisState
from motion_meta_cli.moderation.rules import Limit
from motion_meta_cli.storage.redis_cache import RedisCache
from tests.integration.conftest import RedisClusterServers
from tests.integration.helpers import poll_once_on

pytestmark = pytest.mark.integration

TIMEOUT_S = 1.0


def test_keys_spread_over_the_masters_and_moderation_keys_share_one_slot(redis_cluster: RedisClusterServers) -> None:
    cache = RedisCache.from_url(redis_cluster.url, prefix="p:", timeout_s=TIMEOUT_S)
    keys = [f"credentials:marker:c{n:03d}" for n in range(60)]
    cache.set_many(dict.fromkeys(keys, "v1"))
    assert cache.get_many(keys) == ["v1"] * 60
    assert len({redis_cluster.node_of(f"p:{key}").port for key in keys}) == 3, "the cache's keys use every master"
    moderation = {redis_cluster.node_of(f"p:{TAG}:{key}").port for key in ("app", "buc:1", "slots:c001")}
    moderation |= {redis_cluster.node_of(f"p:{TAG}log:{log}").port for log in ("app", "buc:1")}
    assert len(moderation) == 1, "records and send logs of every scope live in one slot: one script may take them all"
    state = RedisState(cache)
    admitted = state.admit([Limit("app", 10), Limit("buc:1", 10), Limit("user:c001", 1)], 60_000, 0)
    assert admitted.wait_ms == 0 and admitted.counted == (0, 0, 0)
    cache.close()


def test_a_killed_master_is_a_backend_error_within_a_timeout_and_moderation_goes_on_in_process(
    redis_cluster: RedisClusterServers,
) -> None:
    cache = RedisCache.from_url(redis_cluster.url, prefix="p:", timeout_s=TIMEOUT_S)
    state = FailSafeState(RedisState(cache))
    limits = [Limit("app", 100)]
    assert state.admit(limits, 60_000, 0).wait_ms == 0
    assert not state.degraded
    victim = redis_cluster.node_of(f"p:{TAG}log:app")
    on_victim = next(f"k{n}" for n in range(1000) if redis_cluster.node_of(f"p:k{n}") is victim)
    cache.set(on_victim, "there")
    victim.stop()  # SIGKILL

    started = time.monotonic()
    admitted = state.admit(limits, 60_000, 0)
    assert time.monotonic() - started < 3 * TIMEOUT_S
    assert admitted.wait_ms == 0, "admitted in process"
    assert state.degraded
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError, match=r"Redis Cluster at 127\.0\.0\.1") as caught:
        cache.get(on_victim)
    assert time.monotonic() - started < 3 * TIMEOUT_S
    assert "\n" not in str(caught.value)
    cache.close()


def test_poll_runs_on_a_redis_cluster(redis_cluster: RedisClusterServers, tmp_path: Path) -> None:
    app = poll_once_on(redis_cluster.url, tmp_path / "h", ["acme", "globex", "initech"])
    assert app["budget"] is not None, "the app's budget was learned, and kept in the cluster"


def test_a_password_the_cluster_refuses_is_a_config_error_not_an_outage(redis_cluster: RedisClusterServers) -> None:
    import redis

    from motion_meta_cli.errors import ConfigError

    for node in redis_cluster.nodes:
        with redis.Redis(port=node.port) as client:
            client.config_set("requirepass", "s3cret")
    port = redis_cluster.nodes[0].port
    for url in (f"redis+cluster://:wrong@127.0.0.1:{port}", f"redis+cluster://127.0.0.1:{port}"):
        with pytest.raises(ConfigError, match="refused authentication; check the password"):
            RedisCache.from_url(url, prefix="p:", timeout_s=TIMEOUT_S)
    cache = RedisCache.from_url(f"redis+cluster://:s3cret@127.0.0.1:{port}", prefix="p:", timeout_s=TIMEOUT_S)
    cache.set("k", "v")
    assert cache.get("k") == "v"
    cache.close()
