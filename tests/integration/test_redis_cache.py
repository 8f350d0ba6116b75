"""RedisCache and the credentials manager against a real redis-server the fixture starts (and kills)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis

from motion_meta_cli.credentials import CredentialsManager, Marker, marker_key
from motion_meta_cli.errors import BackendUnavailableError, ConfigError
from motion_meta_cli.storage.base import SecretRecord
from motion_meta_cli.storage.breaker import RETRY_S
from motion_meta_cli.storage.local_secrets import LocalSecretsStore
from motion_meta_cli.storage.redis_cache import RedisCache
from tests.integration.conftest import RedisServer, free_port

pytestmark = pytest.mark.integration


def _cache(server: RedisServer, prefix: str = "mm-test:") -> RedisCache:
    return RedisCache.from_url(server.url, prefix=prefix, timeout_s=1.0)


def test_values_live_under_the_prefix_and_expire(redis_server: RedisServer) -> None:
    cache = _cache(redis_server)
    cache.set("a", "1", ttl_s=0.15)
    cache.set("b", "2")
    raw = redis.Redis(port=redis_server.port, decode_responses=True)
    assert sorted(raw.keys("*")) == ["mm-test:a", "mm-test:b"]
    assert cache.get("a") == "1"
    time.sleep(0.3)  # Redis itself expires the key; nothing to inject here
    assert cache.get("a") is None
    assert cache.get("b") == "2"
    assert cache.delete("b") is True
    assert cache.delete("b") is False


def test_lock_is_exclusive_across_clients(redis_server: RedisServer) -> None:
    first, second = _cache(redis_server), _cache(redis_server)
    held = first.lock("refresh:acme", ttl_s=30)
    assert held.acquire(blocking=False)
    assert not second.lock("refresh:acme", ttl_s=30).acquire(blocking=False)
    held.release()
    assert second.lock("refresh:acme", ttl_s=30).acquire(blocking=False)


def test_a_lock_whose_holder_was_killed_lapses_at_its_ttl(redis_server: RedisServer) -> None:
    script = (
        "import sys, time\nfrom motion_meta_cli.storage.redis_cache import RedisCache\n"
        "lock = RedisCache.from_url(sys.argv[1], prefix='mm-test:').lock('lease', ttl_s=1.0)\n"
        "assert lock.acquire()\nprint('held', flush=True)\ntime.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", script, redis_server.url], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait()
    holder.stdout.close()
    waiter = _cache(redis_server).lock("lease", ttl_s=1.0)
    assert not waiter.acquire(blocking=False), "the lease outlives its holder until the TTL"
    assert waiter.acquire(timeout_s=3), "then Redis expires it"


def test_markers_written_by_one_process_are_honoured_by_another(redis_server: RedisServer, tmp_path: Path) -> None:
    secrets = LocalSecretsStore(tmp_path / "secrets.json")
    version = secrets.put_secret("acme", "EAAacme-token-0000000000")
    script = (
        "import sys\nfrom pathlib import Path\nfrom motion_meta_cli.credentials import CredentialsManager\n"
        "from motion_meta_cli.storage.local_secrets import LocalSecretsStore\n"
        "from motion_meta_cli.storage.redis_cache import RedisCache\n"
        "cache = RedisCache.from_url(sys.argv[1], prefix='mm-test:')\n"
        "m = CredentialsManager(LocalSecretsStore(Path(sys.argv[2])), cache)\n"
        "m.token('acme')"
    )
    subprocess.run([sys.executable, "-c", script, redis_server.url, str(tmp_path / "secrets.json")], check=True)
    marker = Marker.parse(_cache(redis_server).get(marker_key("acme")))
    assert marker is not None and marker.version == version
    assert CredentialsManager(secrets, _cache(redis_server)).status("acme").marker == "current"


class SlowCountingSecrets(LocalSecretsStore):
    """Counts reads and the most that ever ran at once."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.reads = 0
        self.in_flight = 0
        self.peak = 0
        self._guard = threading.Lock()

    def get_secret(self, customer: str) -> SecretRecord:
        with self._guard:
            self.reads += 1
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        try:
            time.sleep(0.02)  # a Secrets Manager round trip, so overlaps would show
            return super().get_secret(customer)
        finally:
            with self._guard:
                self.in_flight -= 1


def test_refresh_is_single_flight_within_and_across_instances(redis_server: RedisServer, tmp_path: Path) -> None:
    secrets = SlowCountingSecrets(tmp_path / "secrets.json")
    secrets.put_secret("acme", "EAAacme-token-0000000000")
    instances = [CredentialsManager(secrets, _cache(redis_server)) for _ in range(4)]
    barrier = threading.Barrier(4 * 8)

    def worker(manager: CredentialsManager) -> None:
        barrier.wait()
        manager.token("acme")

    threads = [threading.Thread(target=worker, args=(m,)) for m in instances for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert secrets.reads == 4, "one read per instance, however many threads asked"
    assert secrets.peak == 1, "instances took turns instead of stampeding the secrets store"


def test_unreachable_redis_is_a_backend_error(redis_server: RedisServer) -> None:
    now = [1000.0]
    cache = RedisCache.from_url(redis_server.url, prefix="mm-test:", timeout_s=1.0, clock=lambda: now[0])
    cache.set("k", "v")
    redis_server.stop()
    with pytest.raises(BackendUnavailableError, match=f"cannot reach Redis at 127.0.0.1:{redis_server.port}/0"):
        cache.get("k")
    redis_server.start()
    now[0] += RETRY_S  # the breaker's retry period (test_redis_outage.py)
    assert cache.get("k") is None, "a restarted server (no persistence) answers again on the same client"


def test_nothing_listening_is_a_backend_error() -> None:
    cache = RedisCache.from_url(f"redis://127.0.0.1:{free_port()}/0", prefix="x:", timeout_s=0.5)
    with pytest.raises(BackendUnavailableError, match="is it running"):
        cache.ping()


def test_wrong_password_is_a_config_error_without_the_password(tmp_path: Path) -> None:
    server = RedisServer(port=free_port(), workdir=tmp_path, password="s3cret-pass")
    server.start()
    try:
        wrong = RedisCache.from_url(f"redis://:wrong-pass@127.0.0.1:{server.port}/0", prefix="x:", timeout_s=1)
        with pytest.raises(ConfigError) as caught:
            wrong.get("k")
        assert "refused authentication" in str(caught.value)
        assert "wrong-pass" not in str(caught.value)
        missing = RedisCache.from_url(f"redis://127.0.0.1:{server.port}/0", prefix="x:", timeout_s=1)
        with pytest.raises(ConfigError, match="refused authentication"):
            missing.get("k")
        assert RedisCache.from_url(server.url, prefix="x:").get("k") is None
    finally:
        server.stop()
