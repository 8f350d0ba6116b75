"""Real servers for integration tests: a redis-server and a moto server, each on a free port."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    """A redis-server child process that tests may stop and start again on the same port."""

    port: int
    workdir: Path
    password: str | None = None
    process: subprocess.Popen[bytes] | None = None
    extra: tuple[str, ...] = ()
    """More redis-server arguments (cluster mode, a replica's master, Sentinel mode)."""
    config_file: Path | None = None
    """A configuration file, read before the arguments (a Sentinel needs one it may rewrite)."""

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not on PATH; .ci/run installs it")
        args = [binary] + ([str(self.config_file)] if self.config_file else [])
        args += ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--dir", str(self.workdir)]
        if self.password:
            args += ["--requirepass", self.password]
        args += self.extra
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh, empty redis-server for this test."""
    server = RedisServer(port=free_port(), workdir=tmp_path)
    server.start()
    yield server
    server.stop()


@dataclass
class RedisClusterServers:
    """A local Redis Cluster: three masters (no replicas), each a redis-server child process on a free port."""

    nodes: list[RedisServer]

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}/0"

    def node_of(self, key: str) -> RedisServer:
        """The master that holds `key`'s slot."""
        import redis

        with redis.Redis(port=self.nodes[0].port) as client:
            slot = int(client.execute_command("CLUSTER KEYSLOT", key))
            for start, end, (_host, port, *_rest), *_replicas in client.execute_command("CLUSTER SLOTS"):
                if start <= slot <= end:
                    return next(node for node in self.nodes if node.port == int(port))
        raise RuntimeError(f"no node holds slot {slot}")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def start_redis_cluster(workdir: Path) -> RedisClusterServers:
    """Three cluster-mode redis-servers joined with `redis-cli --cluster create`, waited on until the cluster is ok."""
    import redis

    nodes = []
    for n in range(3):
        folder = workdir / f"cluster-{n}"
        folder.mkdir(parents=True)
        extra = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000")
        extra += ("--cluster-port", str(free_port()))  # the bus port; port + 10000 may be past 65535
        node = RedisServer(port=free_port(), workdir=folder, extra=extra)
        node.start()
        nodes.append(node)
    cluster = RedisClusterServers(nodes)
    addresses = [f"127.0.0.1:{node.port}" for node in nodes]
    subprocess.run(
        ["redis-cli", "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
        check=True,
        capture_output=True,
        timeout=30,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        states = []
        for node in nodes:
            with redis.Redis(port=node.port) as client:
                states.append(client.execute_command("CLUSTER INFO").get("cluster_state"))
        if all(state == "ok" for state in states):
            return cluster
        time.sleep(0.05)
    cluster.stop()
    raise RuntimeError("the local Redis Cluster did not reach cluster_state:ok")


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
