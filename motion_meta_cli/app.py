"""AppHandler: builds every part from `Settings` and runs fetches on demand.

    with AppHandler.from_settings(load_settings()) as app:
        result = app.fetch("motion_test_user", fields=("id", "name"))
        report = app.handle_request()           # every active customer: fetched, failed, skipped

Parts are built on first use, so a command that only lists customers never connects to Redis or
Secrets Manager.
"""

from __future__ import annotations

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
from motion_meta_cli.models import FetchResult
from motion_meta_cli.moderation.moderator import Moderator
from motion_meta_cli.moderation.rules import probe_ttl_ms
from motion_meta_cli.moderation.slots import CustomerSlots
from motion_meta_cli.request_manager import MetaRequestManager
from motion_meta_cli.service import CycleReport, MetaUserService
from motion_meta_cli.storage.base import Cache, CustomerStore, SecretsStore

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
            lease_s=probe_ttl_ms(retry.connect_timeout_s, retry.read_timeout_s) / 1000,
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
        self.credentials  # noqa: B018 - seeds the demo customer before it is looked up
        self.store.get_customer(customer)
        return self.service.fetch_one(customer, normalize_fields(fields) if fields else None)

    def handle_request(self, customers: Sequence[str] | None = None) -> CycleReport:
        """Fetch and store `customers` (default: every active customer) in one cycle (`MetaUserService.run_cycle`,
        without leases); the report holds one result per customer fetched or failed."""
        self.credentials  # noqa: B018 - seeds the demo customer before customers are listed
        if customers is None:
            names = [c.name for c in self.store.list_customers()]
        else:
            names = [self.store.get_customer(name).name for name in customers]
        return self.service.run_cycle(names)

    def close(self) -> None:
        """Release connections and files of the parts that were built."""
        built = self.__dict__
        if "requests" in built:
            self.requests.close()
        if "moderator" in built:
            close = getattr(self.moderator.state, "close", None)
            if close is not None:
                close()
        for name in ("cache", "store"):
            if name in built:
                built[name].close()

    def __enter__(self) -> AppHandler:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _seed_demo_customer(self, credentials: CredentialsManager) -> None:
        # As in the original demo: META_ACCESS_TOKEN is the demo customer's token.
        token = self.settings.meta_access_token
        if token is None:
            return
        try:
            self.store.get_customer(DEMO_CUSTOMER)
        except UnknownCustomerError:
            self.store.add_customer(DEMO_CUSTOMER)
        try:
            current = self.secrets.get_secret(DEMO_CUSTOMER).token.get_secret_value()
        except MissingCredentialsError:
            current = None
        if current != token.get_secret_value():
            credentials.set_token(DEMO_CUSTOMER, token.get_secret_value())
            log.info("stored META_ACCESS_TOKEN as the credentials of %s", DEMO_CUSTOMER)
