"""The production cache: Redis, shared by every instance. Only imported when MOTION_META_CACHE_URL is redis://
(or a Redis Cluster's or Sentinel's URL)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import redis
import redis.cluster
import redis.exceptions
import redis.sentinel
from redis.backoff import NoBackoff
from redis.lock import Lock
from redis.retry import Retry

from motion_meta_cli.config import parse_sentinel_url
from motion_meta_cli.errors import BackendUnavailableError, ConfigError
from motion_meta_cli.storage.breaker import RETRY_S, CircuitBreaker

LOCK_POLL_S = 0.02

_AUTH_ERRORS = (redis.exceptions.AuthenticationError, redis.exceptions.AuthorizationError)
_AUTH_REFUSALS = ("NOAUTH", "WRONGPASS", "NOPERM", "invalid username-password", "HELLO must be called")
"""How Redis says no to a password, in the text redis-py's RedisCluster folds every start-up error into."""


def _refused_authentication(exc: BaseException) -> bool:
    """Whether `exc` (or what it wraps) is Redis refusing the credentials."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, _AUTH_ERRORS) or any(text in str(seen) for text in _AUTH_REFUSALS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class RedisCache:
    """`Cache` on Redis: every key under one prefix; locks are `redis.lock.Lock` leases with a timeout.

    A call waits at most about one timeout. Once one fails to reach Redis, every call (moderation's
    scripts through `errors()` too) fails at once with `BackendUnavailableError` for RETRY_S; then one
    caller at a time tries Redis again while the others keep failing fast (`breaker.CircuitBreaker`).

    cache = RedisCache.from_url("redis://127.0.0.1:6379/0", prefix="motion-meta:")
    cache.set("credentials:marker:acme", "...", ttl_s=3600)
    with cache.lock("refresh:acme", ttl_s=10):
        ...
    """

    def __init__(
        self,
        client: redis.Redis | redis.cluster.RedisCluster,
        *,
        prefix: str = "motion-meta:",
        where: str = "Redis",
        sentinel: redis.sentinel.Sentinel | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._sentinel = sentinel
        self.prefix = prefix
        self._where = where
        self._breaker = CircuitBreaker(clock)
        self._last_failure = "connection failed"

    @classmethod
    def from_url(
        cls, url: str, *, prefix: str, timeout_s: float = 2.0, clock: Callable[[], float] = time.monotonic
    ) -> RedisCache:
        """A cache on the Redis at `url` (redis:// or rediss://), on the Redis Cluster that one node of `url`
        (redis+cluster:// or rediss+cluster://) belongs to, or on the master that the Sentinels of `url`
        (redis+sentinel:// or rediss+sentinel://) name; `timeout_s` bounds connecting and each reply."""
        # One attempt per call, so a call waits one timeout at most: retrying a timeout or a refused
        # connection only adds waits, and the breaker decides when to try again. No PING health check
        # either: it costs a round trip, and the pool already replaces a connection Redis closed.
        options: dict[str, Any] = {
            "socket_timeout": timeout_s,
            "socket_connect_timeout": timeout_s,
            "decode_responses": True,
            "retry": Retry(NoBackoff(), 0),
            "health_check_interval": 0,
        }
        scheme, _, rest = url.partition("://")
        if scheme.endswith("+sentinel"):
            return cls._on_sentinel(url, options, prefix=prefix, clock=clock)
        if scheme.endswith("+cluster"):
            parts = urlsplit(url)
            plain = f"{scheme.removesuffix('+cluster')}://{rest}"
            try:
                # The first node answers which nodes hold which slots; later MOVED answers are followed.
                cluster = redis.cluster.RedisCluster.from_url(plain, **options)
            except (redis.exceptions.RedisClusterException, redis.exceptions.RedisError) as exc:
                if _refused_authentication(exc):
                    raise ConfigError(
                        f"the Redis Cluster at {parts.hostname}:{parts.port} refused authentication; "
                        "check the password in MOTION_META_CACHE_URL"
                    ) from None
                raise BackendUnavailableError(
                    f"cannot reach the Redis Cluster at {parts.hostname}:{parts.port} ({str(exc)[:120]}); "
                    "is it running? (MOTION_META_CACHE_URL)"
                ) from None
            return cls(cluster, prefix=prefix, where=f"Redis Cluster at {parts.hostname}:{parts.port}", clock=clock)
        client = redis.Redis.from_url(url, **options)
        kwargs = client.connection_pool.connection_kwargs
        where = f"Redis at {kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
        return cls(client, prefix=prefix, where=where, clock=clock)

    @classmethod
    def _on_sentinel(cls, url: str, options: dict[str, Any], *, prefix: str, clock: Callable[[], float]) -> RedisCache:
        # Nothing is asked yet: each new connection asks the Sentinels (in turn, with the same timeouts) where
        # the master is, so a failover is followed, and a master or Sentinels out of reach are a connection
        # error like any other Redis's. The URL's credentials are the master's; Sentinels are asked without.
        target = parse_sentinel_url(url)
        tls = {"ssl": True} if target.tls else {}
        # redis-py leaves Sentinel untyped; master_for returns a plain redis.Redis on a Sentinel-managed pool.
        sentinel = redis.sentinel.Sentinel(list(target.sentinels), sentinel_kwargs={**options, **tls})  # type: ignore[no-untyped-call]
        client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
            target.service, db=target.db, username=target.username, password=target.password, **options, **tls
        )
        hosts = ",".join(f"{host}:{port}" for host, port in target.sentinels)
        where = f"Redis master {target.service!r}/{target.db} of the Sentinels at {hosts}"
        return cls(client, prefix=prefix, where=where, sentinel=sentinel, clock=clock)

    @property
    def reachable(self) -> bool:
        """False from a call that could not reach Redis until a later one does; asks Redis nothing."""
        return self._breaker.closed

    @property
    def client(self) -> redis.Redis | redis.cluster.RedisCluster:
        """The redis-py client (for moderation's scripts)."""
        return self._client

    def errors(self) -> AbstractContextManager[None]:
        """A context manager for calls on `client`: it raises `BackendUnavailableError` at once, before its
        body runs, while Redis is held unreachable, and turns redis-py errors into motion-meta errors."""
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
        """One pipelined SET per key, in one round trip (per node, on a cluster: the keys' slots differ)."""
        if items:
            with self._errors():
                pipe = self._client.pipeline(transaction=False)
                for key, value in items.items():
                    pipe.set(self.prefix + key, value)
                pipe.execute()

    def get_many(self, keys: Sequence[str]) -> list[str | None]:
        """One pipelined GET per key, in one round trip (per node, on a cluster)."""
        if not keys:
            return []
        with self._errors():
            pipe = self._client.pipeline(transaction=False)
            for key in keys:
                pipe.get(self.prefix + key)
            values: list[Any] = pipe.execute()
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
        """Close the connection pool (and the Sentinels' connections)."""
        self._client.close()
        if self._sentinel is not None:
            self._sentinel.close()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        admission = self._breaker.admit()
        if admission is None:
            raise self._unreachable(self._last_failure)
        try:
            yield
        except _AUTH_ERRORS:
            self._breaker.succeeded(admission)  # Redis answered; waiting will not fix a password
            raise self._auth_error() from None
        except redis.sentinel.MasterNotFoundError as exc:
            if "AuthenticationError" not in str(exc):  # no Sentinel answered, or none names a master that is up
                self._last_failure = "no master found"
                self._breaker.failed(admission)
                raise self._unreachable(self._last_failure) from None
            self._breaker.succeeded(admission)  # a Sentinel answered: it wants a password
            raise ConfigError(
                f"{self._where}: a Sentinel refused to answer without a password, and motion-meta sends Sentinels "
                "none (the password in MOTION_META_CACHE_URL is the master's)"
            ) from None
        except redis.exceptions.ResponseError as exc:
            self._breaker.succeeded(admission)
            if str(exc).startswith(("NOAUTH", "WRONGPASS", "NOPERM")):
                raise self._auth_error() from None
            raise BackendUnavailableError(f"{self._where} answered an error: {str(exc)[:120]}") from None
        except (
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
            redis.exceptions.ClusterDownError,
            redis.exceptions.RedisClusterException,
        ) as exc:
            self._last_failure = "timed out" if isinstance(exc, redis.exceptions.TimeoutError) else "connection failed"
            self._breaker.failed(admission)
            raise self._unreachable(self._last_failure) from None
        except BaseException:
            self._breaker.abandoned(admission)
            raise
        self._breaker.succeeded(admission)

    def _unreachable(self, reason: str) -> BackendUnavailableError:
        return BackendUnavailableError(
            f"cannot reach {self._where} ({reason}; tried again every {RETRY_S:g} s); is it running? "
            "(MOTION_META_CACHE_URL)"
        )

    def _auth_error(self) -> ConfigError:
        whose = " (the master's: Sentinels are asked without one)" if self._sentinel is not None else ""
        return ConfigError(f"{self._where} refused authentication; check the password in MOTION_META_CACHE_URL{whose}")


class RedisLock:
    """A `redis.lock.Lock` with motion-meta's acquire signature and errors."""

    def __init__(
        self,
        lock: Lock,
        errors: Callable[[], AbstractContextManager[None]],
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._lock = lock
        self._errors = errors
        self._clock = clock
        self._sleep = sleep

    def acquire(self, blocking: bool = True, timeout_s: float | None = None) -> bool:
        """Take the lock, waiting up to `timeout_s` (forever when None) if blocking. Each try is one call,
        so an unreachable Redis raises `BackendUnavailableError` within about one Redis timeout."""
        deadline = None if timeout_s is None else self._clock() + timeout_s
        while True:
            with self._errors():
                if self._lock.acquire(blocking=False):
                    return True
            if not blocking or (deadline is not None and self._clock() + LOCK_POLL_S > deadline):
                return False
            self._sleep(LOCK_POLL_S)

    def release(self) -> None:
        """Give the lock back if we still hold it; a lease that already lapsed is not an error."""
        try:
            with self._errors():
                self._lock.release()
        except redis.exceptions.LockError:
            pass

    def renew(self) -> bool:
        """Reset the lease to its full TTL; False when it lapsed and someone else may hold it."""
        try:
            with self._errors():
                return bool(self._lock.reacquire())
        except redis.exceptions.LockError:
            return False

    def __enter__(self) -> RedisLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
