"""Real servers for integration tests: a redis-server, a local Redis Cluster and a moto server, each on a free port.

The server helpers live in `benchmarks/_support.py`, which the benchmarks share; they are imported (and so
importable) from here as before.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from benchmarks._support import RedisClusterServers, RedisServer, free_port, start_redis_cluster

__all__ = ["MotoServer", "RedisClusterServers", "RedisServer", "free_port", "start_redis_cluster"]


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh, empty redis-server for this test."""
    server = RedisServer(port=free_port(), workdir=tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Iterator[RedisClusterServers]:
    """A fresh local Redis Cluster of three masters for this test (one it may kill nodes of)."""
    cluster = start_redis_cluster(tmp_path)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def _shared_redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    cluster = start_redis_cluster(tmp_path_factory.mktemp("redis-cluster"))
    yield cluster
    cluster.stop()


@pytest.fixture
def empty_redis_cluster(_shared_redis_cluster: RedisClusterServers) -> RedisClusterServers:
    """A local Redis Cluster of three masters shared by this worker's tests, emptied for this one."""
    import redis

    for node in _shared_redis_cluster.nodes:
        with redis.Redis(port=node.port) as client:
            client.flushall()
    return _shared_redis_cluster


SENTINEL_SERVICE = "mymaster"
SENTINEL_DOWN_AFTER_MS = 1000
"""How long the Sentinel waits on a silent master before it calls it down and fails over."""
SENTINEL_FAILOVER_TIMEOUT_MS = 3000


@dataclass
class RedisSentinelServers:
    """A master, one replica of it and one Sentinel watching both (quorum 1), each a redis-server child process."""

    master: RedisServer
    replica: RedisServer
    sentinel: RedisServer
    password: str | None = None
    """The master's and the replica's (the Sentinel has none)."""

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis+sentinel://{auth}127.0.0.1:{self.sentinel.port}/{SENTINEL_SERVICE}/0"

    def master_port(self) -> int:
        """The port of the master the Sentinel names now."""
        import redis

        with redis.Redis(port=self.sentinel.port, decode_responses=True) as client:
            _host, port = client.execute_command("SENTINEL GET-MASTER-ADDR-BY-NAME", SENTINEL_SERVICE)
            return int(port)

    def stop(self) -> None:
        for node in (self.sentinel, self.replica, self.master):
            node.stop()


def start_redis_sentinel(workdir: Path, password: str | None = None) -> RedisSentinelServers:
    """A master, a replica (`--replicaof`) waited on until its link is up, then a Sentinel waited on until it
    names the master and sees the replica; every process started is killed if any step fails."""
    import redis

    folders = [workdir / f"sentinel-{name}" for name in ("master", "replica", "sentinel")]
    for folder in folders:
        folder.mkdir(parents=True)
    master = RedisServer(free_port(), folders[0], password, extra=("--repl-diskless-sync-delay", "0"))
    follow = ("--replicaof", "127.0.0.1", str(master.port), *(("--masterauth", password) if password else ()))
    replica = RedisServer(free_port(), folders[1], password, extra=follow)
    config = folders[2] / "sentinel.conf"  # the Sentinel rewrites it as it learns
    lines = [f"sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {master.port} 1"]
    lines += [f"sentinel down-after-milliseconds {SENTINEL_SERVICE} {SENTINEL_DOWN_AFTER_MS}"]
    lines += [f"sentinel failover-timeout {SENTINEL_SERVICE} {SENTINEL_FAILOVER_TIMEOUT_MS}"]
    lines += [f"sentinel parallel-syncs {SENTINEL_SERVICE} 1"]
    lines += [f"sentinel auth-pass {SENTINEL_SERVICE} {password}"] if password else []
    config.write_text("\n".join(lines) + "\n")
    sentinel = RedisServer(free_port(), folders[2], extra=("--sentinel",), config_file=config)
    servers = RedisSentinelServers(master, replica, sentinel, password)
    try:
        master.start()
        replica.start()
        with redis.Redis(port=replica.port, password=password, decode_responses=True) as client:
            _wait_until(lambda: client.info("replication").get("master_link_status") == "up", "the replica's link")
        sentinel.start()  # after the replica's link is up: the Sentinel's first look at the master lists it
        with redis.Redis(port=sentinel.port, decode_responses=True) as client:

            def ready() -> bool:
                replicas = client.execute_command("SENTINEL REPLICAS", SENTINEL_SERVICE)
                return servers.master_port() == master.port and any(
                    int(seen["port"]) == replica.port and seen["flags"] == "slave" for seen in replicas
                )

            _wait_until(ready, "the Sentinel's view of the master and its replica")
    except BaseException:
        servers.stop()
        raise
    return servers


def _wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def redis_sentinel(tmp_path: Path) -> Iterator[RedisSentinelServers]:
    """A fresh master, replica and Sentinel for this test (one it may kill the master of)."""
    servers = start_redis_sentinel(tmp_path)
    yield servers
    servers.stop()


@pytest.fixture(scope="session")
def _shared_redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisSentinelServers]:
    servers = start_redis_sentinel(tmp_path_factory.mktemp("redis-sentinel"))
    yield servers
    servers.stop()


@pytest.fixture
def empty_redis_sentinel(_shared_redis_sentinel: RedisSentinelServers) -> RedisSentinelServers:
    """A master, replica and Sentinel shared by this worker's tests, the master emptied for this one."""
    import redis

    with redis.Redis(port=_shared_redis_sentinel.master_port()) as client:
        client.flushall()
    return _shared_redis_sentinel


@dataclass
class MotoServer:
    """moto's server mode: AWS APIs over real HTTP."""

    url: str

    def env(self) -> dict[str, str]:
        """Environment that points boto3 at this server with dummy credentials."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }


@pytest.fixture(scope="session")
def _moto_process() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def moto_server(_moto_process: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoServer]:
    """A moto server reset for this test, with boto3's environment pointing at it."""
    import requests

    requests.post(f"{_moto_process}/moto-api/reset", timeout=10)
    server = MotoServer(_moto_process)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    yield server
