"""Build the cache, customer store and secrets store the settings name; SDKs are imported only when chosen."""

from __future__ import annotations

import time
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING

from motion_meta_cli.config import Settings, masked_url
from motion_meta_cli.errors import ConfigError, MotionMetaError
from motion_meta_cli.moderation.state import ModerationState
from motion_meta_cli.storage.base import Cache, CustomerStore, SecretsStore

if TYPE_CHECKING:
    from motion_meta_cli.app import AppHandler


def _missing_extra(variable: str, extra: str) -> ConfigError:
    return ConfigError(f"{variable} needs the {extra} extra: pip install 'motion-meta[{extra}]'")


def build_cache(settings: Settings) -> Cache:
    """The embedded SQLite cache, or Redis for the redis schemes (a server, a Cluster, or a Sentinel's master)."""
    backend = settings.cache_backend
    if backend.scheme == "sqlite":
        from motion_meta_cli.storage.sqlite_cache import SQLiteCache

        return SQLiteCache(Path(backend.target))
    if find_spec("redis") is None:
        raise _missing_extra("MOTION_META_CACHE_URL", "redis")
    from motion_meta_cli.storage.redis_cache import RedisCache

    cache = RedisCache.from_url(
        backend.url, prefix=settings.motion_meta_cache_prefix, timeout_s=settings.motion_meta_redis_timeout_s
    )
    # Unreachable at start-up is a one-line error (exit 8); later outages fall back (moderation.failsafe).
    cache.ping()
    return cache


def build_store(settings: Settings) -> CustomerStore:
    """The embedded SQLite store, or DynamoDB for dynamodb://TABLE."""
    backend = settings.store_backend
    if backend.scheme == "sqlite":
        from motion_meta_cli.storage.sqlite_store import SQLiteCustomerStore

        return SQLiteCustomerStore(Path(backend.target))
    if find_spec("boto3") is None:
        raise _missing_extra("MOTION_META_STORE_URL", "aws")
    from motion_meta_cli.storage.dynamodb_store import DynamoCustomerStore

    return DynamoCustomerStore(backend.target)


def build_secrets(settings: Settings) -> SecretsStore:
    """The local secrets file, or AWS Secrets Manager for aws-secretsmanager://PREFIX."""
    backend = settings.secrets_backend
    if backend.scheme == "local":
        from motion_meta_cli.storage.local_secrets import LocalSecretsStore

        return LocalSecretsStore(Path(backend.target))
    if find_spec("boto3") is None:
        raise _missing_extra("MOTION_META_SECRETS_URL", "aws")
    from motion_meta_cli.storage.aws_secrets import AwsSecretsStore

    return AwsSecretsStore(backend.target)


def build_moderation(settings: Settings, cache: Cache) -> ModerationState:
    """Moderation shared beside the cache: a SQLite file next to a SQLite cache, or Redis; either way with an
    in-process fallback while it cannot be reached."""
    from motion_meta_cli.moderation.failsafe import FailSafeState

    if settings.cache_backend.scheme == "sqlite":
        from motion_meta_cli.moderation.sqlite_state import SQLiteState, moderation_path

        return FailSafeState(SQLiteState(moderation_path(Path(settings.cache_backend.target))))
    from motion_meta_cli.moderation.redis_state import RedisState
    from motion_meta_cli.storage.redis_cache import RedisCache

    if not isinstance(cache, RedisCache):
        raise TypeError(f"no moderation state for {type(cache).__name__}")
    return FailSafeState(RedisState(cache))


PING_KEY = "config-check"


def ping_backends(app: AppHandler) -> list[tuple[str, str, str | None, float]]:
    """Ask the cache, the store and the secrets store one cheap question each: (name, where, problem or None,
    seconds). A backend that cannot be built counts as not answering."""
    settings = app.settings
    checks: list[tuple[str, str, Callable[[], object]]] = [
        ("cache", settings.cache_backend.url, lambda: app.cache.get(PING_KEY)),
        ("store", settings.store_backend.url, lambda: app.store.get_note(PING_KEY)),
        ("secrets", settings.secrets_backend.url, lambda: app.secrets.has_secret(PING_KEY)),
    ]
    results: list[tuple[str, str, str | None, float]] = []
    for name, url, ask in checks:
        where = masked_url(url)
        start = time.monotonic()
        try:
            ask()
            problem = None
        except MotionMetaError as exc:
            problem = exc.message
        results.append((name, where, problem, time.monotonic() - start))
    return results
