"""AppHandler: builds every part from `Settings` and runs fetches on demand.

    with AppHandler.from_settings(load_settings()) as app:
        result = app.fetch("motion_test_user", fields=("id", "name"))
        report = app.handle_request()           # every active customer: fetched, failed, skipped

Parts are built on first use, so a command that only lists customers never connects to Redis or
Secrets Manager.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from functools import cached_property
from types import TracebackType

import requests

from motion_meta_cli.agent import MetaUserAgent, normalize_fields
from motion_meta_cli.backends import build_cache, build_moderation, build_secrets, build_store
from motion_meta_cli.config import DEMO_CUSTOMER, Settings
from motion_meta_cli.credentials import CredentialsManager
from motion_meta_cli.errors import MissingCredentialsError, UnknownCustomerError
from motion_meta_cli.models import Customer, FetchResult
from motion_meta_cli.moderation.moderator import Moderator
from motion_meta_cli.moderation.rules import probe_ttl_ms
from motion_meta_cli.moderation.slots import CustomerSlots
from motion_meta_cli.request_manager import MetaRequestManager
from motion_meta_cli.service import CycleReport, MetaUserService
from motion_meta_cli.storage.base import Cache, CustomerStore, SecretRecord, SecretsStore

log = logging.getLogger(__name__)


class AppHandler:
    """The wired application: storage, credentials, request manager, agent and service."""

    def __init__(
        self,
        settings: Settings,
        *,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self._session = session
        self._sleep = sleep

    @classmethod
    def from_settings(cls, settings: Settings) -> AppHandler:
        """The application as configured."""
        return cls(settings)

    @cached_property
    def cache(self) -> Cache:
        """Markers, locks and (later) shared cooldowns."""
        return build_cache(self.settings)

    @cached_property
    def store(self) -> CustomerStore:
        """Customers, snapshots and history."""
        return build_store(self.settings)

    @cached_property
    def secrets(self) -> SecretsStore:
        """Where tokens live."""
        return build_secrets(self.settings)

    @cached_property
    def credentials(self) -> CredentialsManager:
        """Tokens with validity markers; seeds the demo customer from META_ACCESS_TOKEN first."""
        # Only a remote secrets store is worth a cross-instance lease against stampedes.
        remote = self.settings.secrets_backend.scheme != "local"
        manager = CredentialsManager(self.secrets, self.cache, shared_refresh=remote)
        self._seed_demo_customer(manager)
        return manager

    @cached_property
    def moderator(self) -> Moderator:
        """Shared self-moderation, kept beside the cache."""
        return Moderator(build_moderation(self.settings, self.cache), sleep=self._sleep)

    @cached_property
    def slots(self) -> CustomerSlots:
        """The per-customer cap on requests in flight, in the moderation state; a slot lasts one attempt."""
        retry = self.settings.platform_for("me").retry
        return CustomerSlots(
            self.moderator.state,
            limit=self.settings.services_meta_user_concurrent_requests,
            lease_s=probe_ttl_ms(retry.attempt_s) / 1000,
            sleep=self._sleep,
        )

    @cached_property
    def requests(self) -> MetaRequestManager:
        """HTTP to the Graph API."""
        return MetaRequestManager(
            graph_url=self.settings.meta_graph_url,
            api_version=self.settings.meta_api_version,
            config_for=self.settings.platform_for,
            max_connections=self.settings.motion_meta_concurrency,
            session=self._session,
            moderator=self.moderator,
            slots=self.slots,
            sleep=self._sleep,
        )

    @cached_property
    def agent(self) -> MetaUserAgent:
        """Fetches `/me` with a customer's credentials."""
        return MetaUserAgent(self.requests, self.credentials)

    @cached_property
    def service(self) -> MetaUserService:
        """Fetches and stores many customers."""
        return MetaUserService(
            self.agent,
            self.store,
            fields=normalize_fields(self.settings.user_fields),
            max_workers=self.settings.motion_meta_concurrency,
            credentials=self.credentials,
        )

    def fetch(self, customer: str, fields: Sequence[str] | None = None) -> FetchResult:
        """Fetch and store one customer (which must exist); the result carries any error."""
        self.require_customer(customer)
        return self.service.fetch_one(customer, normalize_fields(fields) if fields else None)

    def require_customer(self, customer: str) -> Customer:
        """The customer (the demo customer seeded first); UnknownCustomerError, with a hint for the demo one."""
        self._seed()
        try:
            return self.store.get_customer(customer)
        except UnknownCustomerError as exc:
            if customer == DEMO_CUSTOMER and self.settings.meta_access_token is None:
                raise UnknownCustomerError(
                    f"{exc}; the demo customer is added once META_ACCESS_TOKEN is set (in the environment or .env), "
                    "or name one of yours with --customer"
                ) from None
            raise

    def customers(self) -> list[Customer]:
        """The active customers, in name order (the demo customer seeded first when META_ACCESS_TOKEN is set)."""
        self._seed()
        return self.store.list_customers()

    def remove_customer(self, name: str) -> None:
        """Remove a customer (its snapshots and history stay); a seeded demo customer stays removed."""
        self._seed()
        self.store.remove_customer(name)

    def handle_request(self, customers: Sequence[str] | None = None) -> CycleReport:
        """Fetch and store `customers` (default: every active customer) in one cycle (`MetaUserService.run_cycle`,
        without leases); the report holds one result per customer fetched or failed."""
        self._seed()
        if customers is None:
            names = [c.name for c in self.customers()]
        else:
            names = [self.store.get_customer(name).name for name in customers]
        return self.service.run_cycle(names)

    def rest(self) -> None:
        """Idle until further notice (a Lambda environment between invocations, frozen): this instance stops
        announcing itself, so that the others do not hold its share of the budgets for it."""
        if "moderator" in self.__dict__:
            self.moderator.presence.leave()

    def close(self) -> None:
        """Release connections and files of the parts that were built."""
        built = self.__dict__
        if "requests" in built:
            self.requests.close()
        if "moderator" in built:
            self.moderator.close()
        for name in ("cache", "store", "secrets"):
            if name in built:
                built[name].close()

    def __enter__(self) -> AppHandler:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _seed(self) -> None:
        """Seed the demo customer where META_ACCESS_TOKEN asks for it (building the credentials does)."""
        if self.settings.meta_access_token is not None:
            self.credentials  # noqa: B018 - seeds the demo customer

    def _seed_demo_customer(self, credentials: CredentialsManager) -> None:
        """META_ACCESS_TOKEN is the demo customer's token (`motion_test_user`), as in the original demo.

        The customer is added the first time a token is seeded, and never again: a `customers remove`
        stands. The environment's token is stored only when it differs from the one seeded last, and
        never over a token set since with `credentials set`: that one wins. The store keeps a note of
        what was seeded (a fingerprint of the token, never the token, and the secret's version)."""
        token = self.settings.meta_access_token
        if token is None:
            return
        secret = token.get_secret_value()
        fingerprint = hashlib.sha256(secret.encode()).hexdigest()[:16]
        seeded = _parse_note(self.store.get_note(DEMO_SEED_NOTE))
        current = self._demo_secret()
        if seeded.get("fingerprint") == fingerprint and (current is not None or not self._demo_listed()):
            return  # seeded already (a token set by hand since, or a removal, stands); a lost one is stored again
        if not seeded:  # the first seed in this home (or one from before the note existed)
            self.store.add_customer(DEMO_CUSTOMER)
        elif not self._demo_listed():
            self._note_seed(fingerprint, seeded.get("version"))  # removed since: it stays removed
            return
        elif current is not None and current.version != seeded.get("version"):
            log.warning(
                "META_ACCESS_TOKEN changed, but %s's token was set with `credentials set` since it was last "
                "seeded; keeping that one",
                DEMO_CUSTOMER,
            )
            self._note_seed(fingerprint, seeded.get("version"))
            return
        if current is not None and current.token.get_secret_value() == secret:
            version = current.version
        else:
            version = credentials.set_token(DEMO_CUSTOMER, secret)
            log.info("stored META_ACCESS_TOKEN as the credentials of %s", DEMO_CUSTOMER)
        self._note_seed(fingerprint, version)

    def _demo_secret(self) -> SecretRecord | None:
        try:
            return self.secrets.get_secret(DEMO_CUSTOMER)
        except MissingCredentialsError:
            return None

    def _demo_listed(self) -> bool:
        try:
            self.store.get_customer(DEMO_CUSTOMER)
        except UnknownCustomerError:
            return False
        return True

    def _note_seed(self, fingerprint: str, version: object) -> None:
        self.store.set_note(DEMO_SEED_NOTE, json.dumps({"fingerprint": fingerprint, "version": version}))


DEMO_SEED_NOTE = "demo_seed"
"""The store note recording what META_ACCESS_TOKEN last seeded (see `AppHandler._seed_demo_customer`)."""


def _parse_note(raw: str | None) -> dict[str, object]:
    try:
        note = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return note if isinstance(note, dict) else {}
