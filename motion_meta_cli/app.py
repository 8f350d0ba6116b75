"""AppHandler: builds every part from `Settings` and runs fetches on demand.

with AppHandler.from_settings(load_settings()) as app:
    result = app.fetch("motion_test_user", fields=("id", "name"))
    results = app.handle_request()          # every active customer
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from types import TracebackType

import requests

from motion_meta_cli.agent import MetaUserAgent, normalize_fields
from motion_meta_cli.config import DEMO_CUSTOMER, Settings
from motion_meta_cli.credentials import CredentialsManager
from motion_meta_cli.errors import MissingCredentialsError
from motion_meta_cli.models import FetchResult
from motion_meta_cli.request_manager import MetaRequestManager
from motion_meta_cli.service import MetaUserService
from motion_meta_cli.storage.local_secrets import LocalSecretsStore
from motion_meta_cli.storage.sqlite_cache import SQLiteCache
from motion_meta_cli.storage.sqlite_store import SQLiteCustomerStore

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
        home = settings.motion_meta_home
        self.cache = SQLiteCache(home / "cache.db")
        self.store = SQLiteCustomerStore(home / "store.db")
        self.secrets = LocalSecretsStore(home / "secrets.json")
        self.credentials = CredentialsManager(self.secrets, self.cache)
        self.requests = MetaRequestManager(
            graph_url=settings.meta_graph_url,
            api_version=settings.meta_api_version,
            config_for=settings.platform_for,
            max_connections=settings.motion_meta_concurrency,
            session=session,
            sleep=sleep,
        )
        self.agent = MetaUserAgent(self.requests, self.credentials)
        self.service = MetaUserService(
            self.agent,
            self.store,
            fields=normalize_fields(settings.user_fields),
            max_workers=settings.motion_meta_concurrency,
        )
        self._seed_demo_customer()

    @classmethod
    def from_settings(cls, settings: Settings) -> AppHandler:
        """The application as configured."""
        return cls(settings)

    def fetch(self, customer: str, fields: Sequence[str] | None = None) -> FetchResult:
        """Fetch and store one customer (which must exist); the result carries any error."""
        self.store.get_customer(customer)
        return self.service.fetch_one(customer, normalize_fields(fields) if fields else None)

    def handle_request(self, customers: Sequence[str] | None = None) -> list[FetchResult]:
        """Fetch and store `customers` (default: every active customer); one result each."""
        if customers is None:
            names = [c.name for c in self.store.list_customers()]
        else:
            names = [self.store.get_customer(name).name for name in customers]
        return self.service.run_once(names)

    def close(self) -> None:
        """Release connections and files."""
        self.requests.close()
        self.cache.close()
        self.store.close()

    def __enter__(self) -> AppHandler:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _seed_demo_customer(self) -> None:
        # As in the original demo: META_ACCESS_TOKEN is the demo customer's token.
        token = self.settings.meta_access_token
        if token is None:
            return
        self.store.add_customer(DEMO_CUSTOMER)
        try:
            current = self.secrets.get_secret(DEMO_CUSTOMER).token.get_secret_value()
        except MissingCredentialsError:
            current = None
        if current != token.get_secret_value():
            self.secrets.put_secret(DEMO_CUSTOMER, token.get_secret_value())
            self.credentials.expire(DEMO_CUSTOMER)
            log.info("stored META_ACCESS_TOKEN as the credentials of %s", DEMO_CUSTOMER)
