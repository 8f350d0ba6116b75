"""The three seams for state: a cache (markers, locks, cooldowns), a customer store and a secrets store.

Embedded defaults live beside this module (SQLite files and a local secrets file); production
backends (Redis, DynamoDB, AWS Secrets Manager) implement the same protocols.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol

from pydantic import SecretStr

from motion_meta_cli.models import Customer, FetchResult


class CacheLock(Protocol):
    """A lease on a name: it expires by itself after its TTL even if the holder dies."""

    def acquire(self, blocking: bool = True, timeout_s: float | None = None) -> bool:
        """Take the lock; False when not blocking (or timed out) and someone else holds it."""
        ...

    def release(self) -> None:
        """Give the lock back if we still hold it."""
        ...

    def renew(self) -> bool:
        """Extend the lease to its full TTL from now; False when we no longer hold it."""
        ...

    def __enter__(self) -> CacheLock: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class Cache(Protocol):
    """Small shared key-value state with expiry, visible to every instance that shares the backend."""

    def get(self, key: str) -> str | None:
        """The value, or None when missing or expired."""
        ...

    def set(self, key: str, value: str, ttl_s: float | None = None) -> None:
        """Store `value`; it disappears after `ttl_s` seconds when given."""
        ...

    def delete(self, key: str) -> bool:
        """Remove the key; True when it existed."""
        ...

    def add_many(self, keys: Sequence[str], value: str, ttl_s: float) -> list[bool]:
        """Store `value` under each key that is absent (or expired), each key on its own and atomically, in one
        round trip; True where this call stored it."""
        ...

    def get_many(self, keys: Sequence[str]) -> list[str | None]:
        """`get` for each key in one round trip, in the order given."""
        ...

    def set_many(self, items: Mapping[str, str]) -> None:
        """`set` (without expiry) for each key in one round trip."""
        ...

    def lock(self, name: str, ttl_s: float) -> CacheLock:
        """A lock on `name` held for at most `ttl_s` seconds."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The latest stored user of a customer."""

    customer: str
    fetched_at: datetime
    user: dict[str, Any]


class CustomerStore(Protocol):
    """Customers, and for each the latest user snapshot and a fetch history."""

    def initialize(self) -> bool:
        """Create the tables if missing; True when this call created them."""
        ...

    def get_note(self, key: str) -> str | None:
        """A small value the app keeps beside the customers (e.g. what the environment last seeded)."""
        ...

    def set_note(self, key: str, value: str) -> None:
        """Store a note, replacing any under `key`."""
        ...

    def add_customer(self, name: str) -> Customer:
        """Add (or re-activate) a customer; safe to repeat."""
        ...

    def remove_customer(self, name: str) -> None:
        """Remove a customer; its snapshots and history stay. Raises UnknownCustomerError."""
        ...

    def get_customer(self, name: str) -> Customer:
        """The customer; raises UnknownCustomerError."""
        ...

    def list_customers(self, active_only: bool = True) -> list[Customer]:
        """Customers in name order."""
        ...

    def save_result(self, result: FetchResult) -> None:
        """Append to history; on success also replace the snapshot unless a newer one is stored."""
        ...

    def save_results(self, results: Sequence[FetchResult]) -> None:
        """`save_result` for each, in order, as cheaply as the backend allows (SQLite: one transaction)."""
        ...

    def latest(self, customer: str) -> Snapshot | None:
        """The newest stored user of `customer`."""
        ...

    def history(self, customer: str, limit: int = 20) -> Sequence[dict[str, Any]]:
        """The most recent fetches of `customer`, newest first."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


@dataclass(frozen=True, slots=True)
class SecretRecord:
    """A customer's token and the version id of the secret it came from."""

    token: SecretStr
    version: str


class SecretsStore(Protocol):
    """Where tokens live; the only place they are ever written."""

    def get_secret(self, customer: str) -> SecretRecord:
        """The current token of `customer`; raises MissingCredentialsError."""
        ...

    def get_secrets(self, customers: Sequence[str]) -> dict[str, SecretRecord]:
        """The current tokens of those of `customers` that have a usable one, read as cheaply as the backend
        allows (a cold poll batch); the others are left out, for `get_secret` to say why."""
        ...

    def put_secret(self, customer: str, token: str) -> str:
        """Store a new current token; returns its version id."""
        ...

    def put_secrets(self, tokens: dict[str, str]) -> dict[str, str]:
        """Store many tokens (customer -> token) as cheaply as the backend allows; their version ids."""
        ...

    def has_secret(self, customer: str) -> bool:
        """Whether a token is stored for `customer`."""
        ...

    def close(self) -> None:
        """Release the client's connections (a no-op for a file)."""
        ...
