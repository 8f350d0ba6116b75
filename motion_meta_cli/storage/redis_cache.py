"""The production cache: Redis, shared by every instance. Only imported when MOTION_META_CACHE_URL is redis://."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any

import redis
import redis.exceptions
from redis.lock import Lock

from motion_meta_cli.errors import BackendUnavailableError, ConfigError

LOCK_POLL_S = 0.02


class RedisCache:
    """`Cache` on Redis: every key under one prefix; locks are `redis.lock.Lock` leases with a timeout.

    cache = RedisCache.from_url("redis://127.0.0.1:6379/0", prefix="motion-meta:")
    cache.set("credentials:marker:acme", "...", ttl_s=3600)
    with cache.lock("refresh:acme", ttl_s=10):
        ...
    """

    def __init__(self, client: redis.Redis, *, prefix: str = "motion-meta:", where: str = "Redis") -> None:
        self._client = client
        self.prefix = prefix
        self._where = where

    @classmethod
    def from_url(cls, url: str, *, prefix: str, timeout_s: float = 2.0) -> RedisCache:
        """A cache on the Redis at `url` (redis:// or rediss://), with socket and connect timeouts."""
        client = redis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            decode_responses=True,
            health_check_interval=30,
        )
        kwargs = client.connection_pool.connection_kwargs
        where = f"Redis at {kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
        return cls(client, prefix=prefix, where=where)

    @property
    def client(self) -> redis.Redis:
        """The redis-py client (for moderation's scripts)."""
        return self._client

    def errors(self) -> Any:
        """A context manager turning redis-py errors into motion-meta errors."""
        return self._errors()

    def get(self, key: str) -> str | None:
        """The value, or None when missing or expired."""
        with self._errors():
            value: Any = self._client.get(self.prefix + key)
        return None if value is None else str(value)

    def set(self, key: str, value: str, ttl_s: float | None = None) -> None:
        """Store `value`, expiring after `ttl_s` seconds when given (millisecond precision)."""
        with self._errors():
            if ttl_s is None:
                self._client.set(self.prefix + key, value)
            else:
                self._client.set(self.prefix + key, value, px=max(1, int(ttl_s * 1000)))

    def delete(self, key: str) -> bool:
        """Remove the key; True when it existed."""
        with self._errors():
            return bool(self._client.delete(self.prefix + key))

    def add_many(self, keys: Sequence[str], value: str, ttl_s: float) -> list[bool]:
        """One pipelined SET NX per key (each atomic on its own), in one round trip."""
        with self._errors():
            pipe = self._client.pipeline(transaction=False)
            for key in keys:
                pipe.set(self.prefix + key, value, nx=True, px=max(1, int(ttl_s * 1000)))
            return [bool(stored) for stored in pipe.execute()]

    def set_many(self, items: Mapping[str, str]) -> None:
        """MSET."""
        if items:
            with self._errors():
                self._client.mset({self.prefix + key: value for key, value in items.items()})

    def get_many(self, keys: Sequence[str]) -> list[str | None]:
        """MGET."""
        if not keys:
            return []
        with self._errors():
            values: list[Any] = self._client.mget([self.prefix + key for key in keys])
        return [None if value is None else str(value) for value in values]

    def lock(self, name: str, ttl_s: float) -> RedisLock:
        """A lease on `name` that Redis expires after `ttl_s` seconds even if its holder dies."""
        if ttl_s <= 0:
            raise ValueError("a lock needs a positive TTL")
        lock = Lock(self._client, self.prefix + "lock:" + name, timeout=ttl_s, sleep=LOCK_POLL_S, thread_local=False)
        return RedisLock(lock, self._errors)

    def ping(self) -> None:
        """Check that Redis answers; raises a motion-meta error naming what to fix."""
        with self._errors():
            self._client.ping()

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except redis.exceptions.AuthenticationError:
            raise self._auth_error() from None
        except redis.exceptions.ResponseError as exc:
            if str(exc).startswith(("NOAUTH", "WRONGPASS", "NOPERM")):
                raise self._auth_error() from None
            raise BackendUnavailableError(f"{self._where} answered an error: {str(exc)[:120]}") from None
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            reason = "timed out" if isinstance(exc, redis.exceptions.TimeoutError) else "connection failed"
            raise BackendUnavailableError(
                f"cannot reach {self._where} ({reason}); is it running? (MOTION_META_CACHE_URL)"
            ) from None

    def _auth_error(self) -> ConfigError:
        return ConfigError(f"{self._where} refused authentication; check the password in MOTION_META_CACHE_URL")


class RedisLock:
    """A `redis.lock.Lock` with motion-meta's acquire signature and errors."""

    def __init__(self, lock: Lock, errors: Any) -> None:
        self._lock = lock
        self._errors = errors

    def acquire(self, blocking: bool = True, timeout_s: float | None = None) -> bool:
        """Take the lock, waiting up to `timeout_s` (forever when None) if blocking."""
        with self._errors():
            return bool(self._lock.acquire(blocking=blocking, blocking_timeout=timeout_s))

    def release(self) -> None:
        """Give the lock back if we still hold it; a lease that already lapsed is not an error."""
        try:
            with self._errors():
                self._lock.release()
        except redis.exceptions.LockError:
            pass

    def __enter__(self) -> RedisLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
