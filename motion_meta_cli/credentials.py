"""Customers' access tokens: read from the secrets store, kept in memory, revalidated through the cache.

The cache holds, per customer, a *validity marker*: the version id of the secret the token came from,
never the token. A missing or different marker means "read the secrets store again". That is the
rotation contract for the service that owns the tokens: write the new secret version, then delete
the customer's marker; every instance picks the new token up on its next request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from pydantic import SecretStr

from motion_meta_cli.errors import CredentialsRejectedError
from motion_meta_cli.storage.base import Cache, SecretsStore

log = logging.getLogger(__name__)

T = TypeVar("T")

MARKER_PREFIX = "credentials:marker:"


def marker_key(customer: str) -> str:
    """The cache key of `customer`'s validity marker."""
    return MARKER_PREFIX + customer


@dataclass(frozen=True, slots=True)
class _Held:
    token: SecretStr
    version: str
    loaded_at: float


class CredentialsManager:
    """Hands out a customer's token, re-reading the secrets store only when the marker says so.

        creds = CredentialsManager(secrets, cache)
        user = creds.call("acme", lambda token: agent_request(token))   # one re-read + retry on a 190

    `call` is how requests should use a token: when Meta rejects it, the manager reads the secrets
    store again and, if the token there is a different one, retries once with it; otherwise (or if the
    new token is rejected too) it raises `CredentialsRejectedError`.
    """

    def __init__(self, secrets: SecretsStore, cache: Cache, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._secrets = secrets
        self._cache = cache
        self._clock = clock
        self._held: dict[str, _Held] = {}
        self._lock = threading.Lock()

    def token(self, customer: str) -> SecretStr:
        """`customer`'s token: the copy in memory while its marker is unchanged, else a fresh read."""
        marker = self._cache.get(marker_key(customer))
        with self._lock:
            held = self._held.get(customer)
        if held is not None and marker is not None and marker == held.version:
            return held.token
        return self.reload(customer, marker=marker)

    def reload(self, customer: str, *, marker: str | None = None) -> SecretStr:
        """Read `customer`'s token from the secrets store and make the marker match its version."""
        record = self._secrets.get_secret(customer)
        if marker != record.version:
            self._cache.set(marker_key(customer), record.version)
        with self._lock:
            self._held[customer] = _Held(record.token, record.version, self._clock())
        log.debug("loaded credentials for %s (version %s)", customer, record.version)
        return record.token

    def expire(self, customer: str) -> bool:
        """Delete `customer`'s marker so every instance re-reads the secrets store; True if one existed."""
        with self._lock:
            self._held.pop(customer, None)
        return self._cache.delete(marker_key(customer))

    def held_age_s(self, customer: str) -> float | None:
        """Seconds since this process loaded `customer`'s token, or None when it holds none."""
        with self._lock:
            held = self._held.get(customer)
        return None if held is None else self._clock() - held.loaded_at

    def call(self, customer: str, request: Callable[[SecretStr], T]) -> T:
        """Run `request` with `customer`'s token; on rejection re-read once and retry once with a new token."""
        token = self.token(customer)
        try:
            return request(token)
        except CredentialsRejectedError as first:
            fresh = self.reload(customer)
            if fresh.get_secret_value() == token.get_secret_value():
                raise _rejected(customer, first) from None
            log.info("credentials of %s changed in the secrets store; retrying once with the new token", customer)
            try:
                return request(fresh)
            except CredentialsRejectedError as second:
                raise _rejected(customer, second) from None


def _rejected(customer: str, cause: CredentialsRejectedError) -> CredentialsRejectedError:
    return CredentialsRejectedError(
        f"Meta rejected the access token of customer {customer!r} ({cause.message}); "
        "store a new token for this customer, then run the command again",
        cause.classification,
    )
