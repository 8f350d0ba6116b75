"""MetaUserService: fetch customers' profiles and store them, one result per customer."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from motion_meta_cli.agent import MetaUserAgent
from motion_meta_cli.credentials import CredentialsManager
from motion_meta_cli.errors import CredentialsRejectedError, MotionMetaError, StoppedError
from motion_meta_cli.models import FetchResult, utc_now
from motion_meta_cli.storage.base import CustomerStore

log = logging.getLogger(__name__)


class MetaUserService:
    """Runs fetches for many customers; one failure never stops the others.

    service = MetaUserService(agent, store, fields=("id", "name"), max_workers=8)
    results = service.run_once(["acme", "globex"])
    """

    def __init__(
        self,
        agent: MetaUserAgent,
        store: CustomerStore,
        *,
        fields: Sequence[str] = ("id", "name"),
        max_workers: int = 1,
        now: Callable[[], datetime] = utc_now,
        credentials: CredentialsManager | None = None,
    ) -> None:
        self._agent = agent
        self._credentials = credentials
        self._store = store
        self._fields = tuple(fields)
        self._max_workers = max_workers
        self._now = now

    def fetch_one(
        self,
        customer: str,
        fields: Sequence[str] | None = None,
        *,
        save: Callable[[FetchResult], None] | None = None,
    ) -> FetchResult:
        """Fetch and store one customer; failures come back in the result (and are stored in history).

        `save` replaces the store's `save_result`, e.g. with a `BatchedResults.add`.
        """
        try:
            user = self._agent.fetch_me(customer, fields or self._fields)
            result = FetchResult(customer=customer, fetched_at=self._now(), user=user)
        except CredentialsRejectedError as exc:
            if self._credentials is not None and self._credentials.mark_rejected(customer):
                log.warning("%s; skipping %s until its credentials change", exc, customer)
            result = FetchResult(customer=customer, fetched_at=self._now(), error=exc)
        except MotionMetaError as exc:
            log.info("fetching %s failed: %s", customer, exc)
            result = FetchResult(customer=customer, fetched_at=self._now(), error=exc)
        except Exception as exc:  # a bug must cost one customer, not the whole run
            log.exception("fetching %s failed unexpectedly", customer)
            failure = MotionMetaError(f"internal error while fetching {customer!r}: {type(exc).__name__}")
            result = FetchResult(customer=customer, fetched_at=self._now(), error=failure)
        if not isinstance(result.error, StoppedError):  # never sent: nothing happened worth recording
            (save or self._store.save_result)(result)
        return result

    def run_once(self, customers: Sequence[str]) -> list[FetchResult]:
        """Fetch every customer in `customers`, in parallel up to `max_workers`; results in input order."""
        if self._max_workers <= 1 or len(customers) <= 1:
            return [self.fetch_one(c) for c in customers]
        with ThreadPoolExecutor(max_workers=min(self._max_workers, len(customers))) as pool:
            return list(pool.map(self.fetch_one, customers))


class BatchedResults:
    """Fetch results stored `size` at a time (one `save_results` call, one SQLite transaction), the rest on flush.

    results = BatchedResults(store, size=16)
    service.fetch_one("acme", save=results.add)
    results.flush()                 # always, when the run ends: until then up to size - 1 results wait here

    A batch the store refused goes back to the front of the queue, so a later flush retries it.
    """

    def __init__(self, store: CustomerStore, size: int) -> None:
        self._store = store
        self._size = max(1, size)
        self._pending: list[FetchResult] = []
        self._lock = threading.Lock()

    def add(self, result: FetchResult) -> None:
        """Queue `result`; store the queue when it holds `size` results."""
        with self._lock:
            self._pending.append(result)
            if len(self._pending) < self._size:
                return
        self.flush()

    def flush(self) -> None:
        """Store everything queued."""
        with self._lock:
            batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            self._store.save_results(batch)
        except BaseException:
            with self._lock:
                self._pending[:0] = batch
            raise
