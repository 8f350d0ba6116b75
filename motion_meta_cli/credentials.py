"""Customers' access tokens: read from the secrets store, kept in memory, revalidated through the cache.

The cache holds, per customer, a *validity marker*: the version id of the secret the token came from
(and when it was set), never the token. A missing or different marker means "read the secrets store
again". That is the rotation contract for the service that owns the tokens: write the new secret
version first, then delete (or change) the customer's marker; every instance picks the new token up on
its next request. A refresh is single-flight per customer: threads of one process share one read,
and instances take turns under a short lock in the cache instead of stampeding the secrets store.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from pydantic import SecretStr

from motion_meta_cli import metrics
from motion_meta_cli.config import mask_token, token_problem
from motion_meta_cli.errors import (
    BackendUnavailableError,
    CredentialsRejectedError,
    MissingCredentialsError,
    MotionMetaError,
    UsageError,
)
from motion_meta_cli.storage.base import Cache, SecretsStore

log = logging.getLogger(__name__)

T = TypeVar("T")

MARKER_PREFIX = "credentials:marker:"
REJECTED_PREFIX = "credentials:rejected:"
REFRESH_LOCK_TTL_S = 10.0
PREPARED_FOR_S = 2.0
"""How long a marker check made by `prepare` stands in for the one `token` makes (once per customer): a
marker expired within this time before a batch's request is honoured from the next request on."""


def marker_key(customer: str) -> str:
    """The cache key of `customer`'s validity marker."""
    return MARKER_PREFIX + customer


def validate_token(token: str) -> str:
    """`token` stripped; raises UsageError (without echoing it) when it cannot be a Meta token."""
    token = token.strip()
    problem = token_problem(token)
    if problem is not None:
        raise UsageError(problem)
    return token


@dataclass(frozen=True, slots=True)
class Marker:
    """What the cache says about a customer's secret: its version id and when that was recorded (epoch s)."""

    version: str
    since: float | None

    @classmethod
    def parse(cls, raw: str | None) -> Marker | None:
        """Read a marker; a value some other service wrote by hand is taken as a bare version id."""
        if raw is None:
            return None
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("version"), str):
            since = data.get("since")
            return cls(data["version"], float(since) if isinstance(since, int | float) else None)
        return cls(raw, None)

    def dump(self) -> str:
        """The cache value."""
        return json.dumps({"version": self.version, "since": self.since})


@dataclass(frozen=True, slots=True)
class CredentialStatus:
    """What `credentials list/show` report about one customer; never the token itself."""

    customer: str
    stored: bool
    masked: str | None
    version: str | None
    marker: str  # "current", "stale" (points at another version), "missing" or "rejected" (see `status`)
    marker_age_s: float | None
    held_age_s: float | None


@dataclass(frozen=True, slots=True)
class _Held:
    token: SecretStr
    version: str
    loaded_at: float


class CredentialsManager:
    """Hands out a customer's token, re-reading the secrets store only when the marker says so.

        creds = CredentialsManager(secrets, cache)
        user = creds.call("acme", lambda token: agent_request(token))   # one re-read + retry on a 190

    `shared_refresh=False` skips the cross-instance refresh lease, for a secrets store that costs
    nothing to read (the local file); threads of one process still share one read.

    `call` is how requests should use a token: when Meta rejects it, the manager reads the secrets
    store again and, if the token there is a different one, retries once with it; otherwise (or if the
    new token is rejected too) it raises `CredentialsRejectedError`.
    """

    def __init__(
        self,
        secrets: SecretsStore,
        cache: Cache,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        shared_refresh: bool = True,
    ) -> None:
        self._secrets = secrets
        self._shared_refresh = shared_refresh
        self._cache = cache
        self._clock = clock
        self._wall_clock = wall_clock
        self._held: dict[str, _Held] = {}
        self._lock = threading.Lock()
        self._refreshing: dict[str, threading.Lock] = {}
        self._cache_down_warned = False
        self._prepared: dict[str, float] = {}

    def token(self, customer: str) -> SecretStr:
        """`customer`'s token: the copy in memory while its marker is unchanged, else a fresh read.

        While the cache cannot be reached, the copy in memory is used as is (or the secrets store read).
        """
        with self._lock:
            prepared = self._prepared.pop(customer, None)
            held = self._held.get(customer)
        if prepared is not None and held is not None and self._clock() - prepared <= PREPARED_FOR_S:
            return held.token  # `prepare` checked the marker a moment ago
        try:
            marker = self._marker(customer)
        except BackendUnavailableError as exc:
            self._warn_cache_down(exc)
            held = self._held_copy(customer)
            return held.token if held is not None else self._read(customer).token
        held = self._valid_held(customer, marker)
        return held.token if held is not None else self.reload(customer, only_if_stale=True, seen=marker)

    def prepare(self, customers: Sequence[str]) -> None:
        """Get ready to hand out the tokens of `customers` (a poll batch) in bulk: one cache round trip reads
        their markers; the tokens not held at their marked version are read in one bulk read of the secrets
        store (`get_secrets`: the file once, or BatchGetSecretValue), and the markers missing or behind are
        written in one more cache round trip. The check stands in for `token`'s own marker read at each ready
        customer's next request, if it comes within PREPARED_FOR_S. Problems are left for `token` to report,
        customer by customer.
        """
        checked = self._clock()  # the stand-in counts from the marker read, however long the rest takes
        try:
            markers = self._cache.get_many([marker_key(customer) for customer in customers])
        except BackendUnavailableError:
            return
        written: dict[str, str] = {}
        ready: list[str] = []
        stale: dict[str, Marker | None] = {}
        for customer, raw in zip(customers, markers, strict=True):
            marker = Marker.parse(raw)
            if self._valid_held(customer, marker) is not None:
                ready.append(customer)
            else:
                stale[customer] = marker
        try:
            records = self._secrets.get_secrets(list(stale)) if stale else {}
        except MotionMetaError:
            records = {}  # `token` reads them one by one, and reports what fails
        metrics.secrets_reads.inc(len(records))
        for customer, record in records.items():
            with self._lock:
                self._held[customer] = _Held(record.token, record.version, self._clock())
            marker = stale[customer]
            if marker is None or marker.version != record.version:
                written[marker_key(customer)] = Marker(record.version, self._wall_clock()).dump()
            else:
                ready.append(customer)
        if written:
            try:
                self._cache.set_many(written)
            except BackendUnavailableError:
                written = {}
            ready += [customer for customer in customers if marker_key(customer) in written]
        with self._lock:
            self._prepared.update(dict.fromkeys(ready, checked))

    def mark_rejected(self, customer: str) -> bool:
        """Remember that Meta rejected the token version held now; True if it was not marked already."""
        held = self._held_copy(customer)
        if held is None:
            return False
        key = REJECTED_PREFIX + customer
        try:
            if self._cache.get(key) == held.version:
                return False
            self._cache.set(key, held.version)
        except BackendUnavailableError:
            return True
        return True

    def rejected_among(self, customers: Sequence[str]) -> set[str]:
        """Those of `customers` whose rejected token version is still the current one (its marker unchanged),
        in one or two cache round trips (none when the cache is down)."""
        try:
            rejected = self._cache.get_many([REJECTED_PREFIX + customer for customer in customers])
            marked = {customer: version for customer, version in zip(customers, rejected, strict=True) if version}
            if not marked:
                return set()
            markers = self._cache.get_many([marker_key(customer) for customer in marked])
        except BackendUnavailableError:
            return set()
        return {
            customer
            for (customer, version), raw in zip(marked.items(), markers, strict=True)
            if (marker := Marker.parse(raw)) is not None and marker.version == version
        }

    def _read(self, customer: str) -> _Held:
        metrics.secrets_reads.inc()
        record = self._secrets.get_secret(customer)
        held = _Held(record.token, record.version, self._clock())
        with self._lock:
            self._held[customer] = held
        return held

    def _warn_cache_down(self, exc: BackendUnavailableError) -> None:
        if not self._cache_down_warned:
            self._cache_down_warned = True
            log.warning("%s; using credentials held in memory until it answers", exc)

    def reload(self, customer: str, *, only_if_stale: bool = False, seen: Marker | None = None) -> SecretStr:
        """Read `customer`'s token from the secrets store (single-flight) and make the marker match its version."""
        with self._lock:
            flight = self._refreshing.setdefault(customer, threading.Lock())
        before = self._held_copy(customer)
        with flight:
            current = self._held_copy(customer)
            if current is not None and current is not before:
                return current.token  # another thread of this process refreshed while we waited
            lease = (
                self._cache.lock(f"credentials:refresh:{customer}", ttl_s=REFRESH_LOCK_TTL_S)
                if self._shared_refresh
                else None
            )
            # Waiting is bounded by the lease: a holder that died frees it, and we read anyway after that.
            leased = lease is not None and lease.acquire(timeout_s=REFRESH_LOCK_TTL_S)
            try:
                # Re-read the marker only where another instance may have refreshed it while we waited.
                marker = self._marker(customer) if leased or seen is None else seen
                if only_if_stale and (held := self._valid_held(customer, marker)) is not None:
                    return held.token
                metrics.credential_refreshes.inc()
                metrics.secrets_reads.inc()
                record = self._secrets.get_secret(customer)
                if marker is None or marker.version != record.version:
                    self._cache.set(marker_key(customer), Marker(record.version, self._wall_clock()).dump())
                with self._lock:
                    self._held[customer] = _Held(record.token, record.version, self._clock())
            finally:
                if leased and lease is not None:
                    lease.release()
        log.debug("loaded credentials for %s (version %s)", customer, record.version)
        return record.token

    def expire(self, customer: str) -> bool:
        """Delete `customer`'s marker so every instance re-reads the secrets store; True if one existed."""
        with self._lock:
            self._held.pop(customer, None)
        return self._cache.delete(marker_key(customer))

    def set_token(self, customer: str, token: str) -> str:
        """Store a new current token for `customer`, then expire the marker; returns the new version id."""
        version = self._secrets.put_secret(customer, validate_token(token))
        self.expire(customer)
        return version

    def set_tokens(self, tokens: dict[str, str]) -> dict[str, str]:
        """`set_token` for many customers, in as few secrets-store writes as it allows; their version ids."""
        versions = self._secrets.put_secrets({customer: validate_token(token) for customer, token in tokens.items()})
        for customer in tokens:
            self.expire(customer)
        return versions

    def held_age_s(self, customer: str) -> float | None:
        """Seconds since this process loaded `customer`'s token, or None when it holds none."""
        held = self._held_copy(customer)
        return None if held is None else self._clock() - held.loaded_at

    def status(self, customer: str) -> CredentialStatus:
        """Whether a token is stored, its masked form and version, and the marker's state and age.

        The marker is "rejected" when Meta rejected the version it points at (as `rejected_among` sees it,
        so poll skips the customer) until a new token is stored.
        """
        raw_marker, rejected = self._cache.get_many([marker_key(customer), REJECTED_PREFIX + customer])
        marker = Marker.parse(raw_marker)
        try:
            record = self._secrets.get_secret(customer)
        except MissingCredentialsError:
            record = None
        if marker is None:
            state = "missing"
        elif marker.version == rejected:
            state = "rejected"
        else:
            state = "current" if record is not None and marker.version == record.version else "stale"
        return CredentialStatus(
            customer=customer,
            stored=record is not None,
            masked=mask_token(record.token.get_secret_value()) if record else None,
            version=record.version if record else None,
            marker=state,
            marker_age_s=None if marker is None or marker.since is None else self._wall_clock() - marker.since,
            held_age_s=self.held_age_s(customer),
        )

    def call(self, customer: str, request: Callable[[SecretStr], T]) -> T:
        """Run `request` with `customer`'s token; on rejection re-read once and retry once with a new token."""
        token = self.token(customer)
        try:
            return request(token)
        except CredentialsRejectedError as first:
            try:
                fresh = self.reload(customer)
            except BackendUnavailableError as exc:
                # Meta's answer stands: what could not be checked is only whether a newer token exists.
                log.warning("could not look for a newer token of %s: %s", customer, exc)
                raise _rejected(customer, first) from None
            if fresh.get_secret_value() == token.get_secret_value():
                raise _rejected(customer, first) from None
            log.info("credentials of %s changed in the secrets store; retrying once with the new token", customer)
            try:
                return request(fresh)
            except CredentialsRejectedError as second:
                raise _rejected(customer, second) from None

    def _marker(self, customer: str) -> Marker | None:
        return Marker.parse(self._cache.get(marker_key(customer)))

    def _held_copy(self, customer: str) -> _Held | None:
        with self._lock:
            return self._held.get(customer)

    def _valid_held(self, customer: str, marker: Marker | None) -> _Held | None:
        held = self._held_copy(customer)
        return held if held is not None and marker is not None and marker.version == held.version else None


def _rejected(customer: str, cause: CredentialsRejectedError) -> CredentialsRejectedError:
    return CredentialsRejectedError(
        f"Meta rejected the access token of customer {customer!r} ({cause.message}); "
        f"store a new one with `motion-meta credentials set --customer {customer}`",
        cause.classification,
    )
