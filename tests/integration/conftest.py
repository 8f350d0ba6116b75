"""Real servers for integration tests: a redis-server, a local Redis Cluster and a moto server, each on a free port.

The server helpers live in `benchmarks/_support.py`, which the benchmarks share; they are imported (and so
importable) from here as before.
"""

from __future__ import annotations

from collections.abc import Iterator
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
