"""Build the cache, customer store and secrets store the settings name; SDKs are imported only when chosen."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

from motion_meta_cli.config import Settings
from motion_meta_cli.errors import ConfigError
from motion_meta_cli.moderation.state import ModerationState
from motion_meta_cli.storage.base import Cache, CustomerStore, SecretsStore


def _missing_extra(variable: str, extra: str) -> ConfigError:
    return ConfigError(f"{variable} needs the {extra} extra: pip install 'motion-meta[{extra}]'")


def build_cache(settings: Settings) -> Cache:
    """The embedded SQLite cache, or Redis for redis:// and rediss://."""
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
