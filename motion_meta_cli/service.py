"""MetaUserService: fetch customers' profiles and store them. One fan-out cycle serves `poll`, `poll --once`,
the Lambda handler and `AppHandler.handle_request`:

    service = MetaUserService(agent, store, credentials=creds, fields=("id", "name"), max_workers=8)
    report = service.run_cycle(["acme", "globex"], leases=SlotLeases(cache, slot=4242, interval_s=60))
    report.fetched, report.failed, report.skipped_rejected

A cycle claims customers CLAIM_BATCH at a time (their rejected marks and their per-slot leases when
instances share the work: a cache round trip each), until at least CLAIM_BATCH are won; it makes their
credentials ready together (their markers in one cache round trip, the tokens it does not hold in one
bulk read of the secrets store), fetches them on a pool of workers, and stores results CLAIM_BATCH per
call. A store that does not answer does not stop it: results wait in a bounded backlog and go out with
the next store call that works.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from motion_meta_cli import metrics
from motion_meta_cli.agent import MetaUserAgent
from motion_meta_cli.credentials import CredentialsManager
from motion_meta_cli.errors import BackendUnavailableError, CredentialsRejectedError, MotionMetaError, StoppedError
from motion_meta_cli.models import FetchResult, iso_utc, utc_now
from motion_meta_cli.storage.base import Cache, CustomerStore

log = logging.getLogger(__name__)

CLAIM_BATCH = 16
"""Customers claimed per cache round trip, and results stored per store call."""
LEASE_PREFIX = "poll:lease:"
MAX_BACKLOG = 10_000
"""Results kept in memory while the store does not answer; beyond it the oldest are dropped (and counted)."""


@dataclass
class CycleReport:
    """What one instance did in one cycle."""

    cycle: int = 1
    slot: int | None = None
    started_at: float = 0.0
    fetched: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    """Customer -> error kind."""
    errors: dict[str, str] = field(default_factory=dict)
    """Customer -> why it failed, in one line."""
    skipped_rejected: list[str] = field(default_factory=list)
    taken_elsewhere: int = 0
    not_started: int = 0
    duration_s: float = 0.0
    overrun: bool = False
    last_error: str | None = None
    unsaved: int = 0
    """Results fetched but not yet stored (the store did not answer); they wait in memory."""
    lost: int = 0
    """Results dropped from a full backlog, or never stored when the run ended."""
    results: list[FetchResult] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def complete(self) -> bool:
        """Every customer this instance was responsible for was fetched (and nothing is lost)."""
        return not self.failed and not self.skipped_rejected and not self.not_started and not self.lost

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (one object per cycle with `--json`)."""
        return {
            "cycle": self.cycle,
            "slot": self.slot,
            "started_at": iso_utc(datetime.fromtimestamp(self.started_at, UTC)),
            "fetched": len(self.fetched),
            "failed": len(self.failed),
            "skipped": len(self.skipped_rejected),
            "taken_elsewhere": self.taken_elsewhere,
            "not_started": self.not_started,
            "unsaved": self.unsaved,
            "lost": self.lost,
            "duration_s": round(self.duration_s, 3),
            "overrun": self.overrun,
            "last_error": self.last_error,
            "customers": sorted(self.fetched),
            "failures": dict(sorted(self.failed.items())),
            "errors": dict(sorted(self.errors.items())),
            "skipped_customers": sorted(self.skipped_rejected),
        }


@dataclass(frozen=True)
class SlotLeases:
    """Per-customer leases of one poll slot, shared through the cache: whoever adds a customer's key fetches it.

    A late cycle (`covers_next`: started well into its slot, or after an overrun) also takes the next slot's
    lease of each customer it fetched, so nobody fetches that customer again within one interval. A lease
    whose fetch failed or never went out is given back, so a retry in the same slot can take it.
    """

    cache: Cache
    slot: int
    interval_s: float
    owner: str = "instance"
    covers_next: bool = False

    def _keys(self, customer: str) -> list[str]:
        slots = [self.slot, self.slot + 1] if self.covers_next else [self.slot]
        return [f"{LEASE_PREFIX}{slot}:{customer}" for slot in slots]

    def take(self, customers: Sequence[str]) -> list[bool]:
        """Which of `customers` this instance won; without the cache, all (fetching twice beats not at all)."""
        if not customers:
            return []
        keys = [f"{LEASE_PREFIX}{self.slot}:{customer}" for customer in customers]
        try:
            return self.cache.add_many(keys, self.owner, 3 * self.interval_s)
        except BackendUnavailableError as exc:
            metrics.backend_errors.labels("cache").inc()
            log.warning("%s; fetching without per-slot leases until it answers", exc)
            return [True] * len(customers)

    def fetched(self, customer: str) -> None:
        """`customer` was fetched: a late cycle now takes its lease of the next slot too. (Taken only now, so
        that the customers of an instance killed mid-cycle are fetched by the others from the next slot on.)"""
        if self.covers_next:  # without the cache the next slot may fetch it again: twice beats not at all
            with contextlib.suppress(BackendUnavailableError):
                self.cache.add_many([f"{LEASE_PREFIX}{self.slot + 1}:{customer}"], self.owner, 3 * self.interval_s)

    def give_back(self, customer: str) -> None:
        """Return `customer`'s leases (its fetch failed or was never sent)."""
        try:
            for key in self._keys(customer):
                self.cache.delete(key)
        except BackendUnavailableError:
            pass  # they lapse after three intervals; meanwhile this slot counts the customer as taken


class ResultBacklog:
    """Fetch results stored `size` at a time; what the store refuses waits (up to MAX_BACKLOG) for the next try,
    which comes after a backoff (RETRY_S, doubling) so that a store that is down never holds the workers up.

    backlog = ResultBacklog(store, size=16)
    backlog.add(result)            # stores a batch once `size` are waiting
    backlog.flush(force=True)      # store what waits now; False if the store still does not answer
    """

    RETRY_S = (1.0, 30.0)
    """First and longest wait before the store is tried again after it failed."""

    def __init__(
        self,
        store: CustomerStore,
        size: int = CLAIM_BATCH,
        limit: int = MAX_BACKLOG,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._size = max(1, size)
        self._limit = limit
        self._clock = clock
        self._pending: deque[FetchResult] = deque()
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._retry_at = 0.0
        self._delay = 0.0
        self.lost = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)

    def add(self, result: FetchResult) -> None:
        """Queue `result`; store the queue when it holds `size` results."""
        with self._lock:
            self._pending.append(result)
            while len(self._pending) > self._limit:
                self._pending.popleft()
                self.lost += 1
            due = len(self._pending) >= self._size
        if due:
            self.flush(full_only=True)

    def flush(self, *, force: bool = False, full_only: bool = False) -> bool:
        """Store what is queued, `size` per call (`full_only`: full batches only, a short one waits for more);
        False (keeping the rest) when the store does not answer, or (unless `force`) is still in its backoff
        after failing."""
        # One flush at a time, and it drains the whole queue: another caller need not wait for it (unless forced).
        if not self._flushing.acquire(blocking=force):
            return False
        try:
            if not force and self._clock() < self._retry_at:
                return False
            while True:
                with self._lock:
                    count = len(self._pending)
                    if full_only and count < self._size:
                        count = 0  # for the next add, or the cycle's end
                    batch = [self._pending.popleft() for _ in range(min(self._size, count))]
                if not batch:
                    if self._delay:
                        self._delay = 0.0
                        log.warning("the store answers again; every waiting result is stored")
                    return True
                try:
                    self._store.save_results(batch)
                except MotionMetaError as exc:
                    metrics.backend_errors.labels("store").inc()
                    with self._lock:
                        self._pending.extendleft(reversed(batch))
                        waiting = len(self._pending)
                    if not self._delay:
                        log.warning("%s; keeping %d result(s) in memory until the store answers", exc, waiting)
                    self._delay = min(max(self._delay * 2, self.RETRY_S[0]), self.RETRY_S[1])
                    self._retry_at = self._clock() + self._delay
                    return False
        finally:
            self._flushing.release()


class MetaUserService:
    """Runs fetches for many customers; one failure never stops the others."""

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
        """Fetch and store one customer; failures come back in the result (and are stored in history)."""
        try:
            user = self._agent.fetch_me(customer, fields or self._fields)
            result = FetchResult(customer=customer, fetched_at=self._now(), user=user)
        except CredentialsRejectedError as exc:
            if self._credentials is not None and self._credentials.mark_rejected(customer):
                log.warning("%s; skipping %s until its credentials change", exc, customer, extra={"customer": customer})
            result = FetchResult(customer=customer, fetched_at=self._now(), error=exc)
        except MotionMetaError as exc:
            log.info("fetching %s failed: %s", customer, exc, extra={"customer": customer})
            result = FetchResult(customer=customer, fetched_at=self._now(), error=exc)
        except Exception as exc:  # a bug must cost one customer, not the whole run
            log.exception("fetching %s failed unexpectedly", customer, extra={"customer": customer})
            failure = MotionMetaError(f"internal error while fetching {customer!r}: {type(exc).__name__}")
            result = FetchResult(customer=customer, fetched_at=self._now(), error=failure)
        if not isinstance(result.error, StoppedError):  # never sent: nothing happened worth recording
            (save or self._store.save_result)(result)
        return result

    def run_cycle(
        self,
        customers: Sequence[str],
        *,
        leases: SlotLeases | None = None,
        stop: threading.Event | None = None,
        backlog: ResultBacklog | None = None,
        report: CycleReport | None = None,
        prefer: Collection[str] = (),
    ) -> CycleReport:
        """Fetch every customer of `customers` this instance is responsible for (all of them without `leases`),
        skipping those whose rejected credentials have not changed, and store the results in `backlog`
        (a fresh one when None: flushed before returning).

        The customers of `prefer` (those this instance took last cycle, whose tokens it holds) are claimed
        first, so that instances sharing the work keep to their own customers from cycle to cycle and a warm
        cycle reads few secrets; what is left after them is shared out as it comes."""
        stop = stop or threading.Event()
        report = report or CycleReport()
        store = backlog if backlog is not None else ResultBacklog(self._store)
        lost_before = store.lost
        names = _ordered(customers, prefer)
        work = _Claims(iter(names), lambda chunk: self._claim(chunk, leases, report), self._prepare, stop)

        def worker() -> None:
            while not stop.is_set() and (customer := work.next()) is not None:
                result = self.fetch_one(customer, save=store.add)
                with report._lock:
                    report.results.append(result)
                    if result.error is None:
                        report.fetched.append(customer)
                    elif isinstance(result.error, StoppedError):
                        report.not_started += 1
                    else:
                        report.failed[customer] = result.error.kind
                        report.errors[customer] = result.error.message
                        report.last_error = f"{customer}: {result.error.message}"
                if leases is not None:
                    leases.give_back(customer) if result.error is not None else leases.fetched(customer)

        workers = max(1, min(self._max_workers, len(names)))
        try:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch") as pool:
                # Each worker runs in a copy of this context, so that a deadline set by the caller holds there too.
                for future in [pool.submit(contextvars.copy_context().run, worker) for _ in range(workers)]:
                    future.result()
        finally:
            claimed, unclaimed = work.abandon()  # stopped (or failed): claimed or not, these were never sent
            report.not_started += len(claimed) + unclaimed
            for customer in claimed:
                if leases is not None:
                    leases.give_back(customer)
        store.flush(force=backlog is None)
        report.unsaved, report.lost = len(store), store.lost - lost_before
        if backlog is None:
            report.lost += report.unsaved  # nobody keeps them for a later cycle
        return report

    def _claim(self, chunk: Sequence[str], leases: SlotLeases | None, report: CycleReport) -> list[str]:
        """The customers of `chunk` to fetch now: not rejected, and their lease won."""
        rejected = self._credentials.rejected_among(chunk) if self._credentials is not None else set()
        wanted = [customer for customer in chunk if customer not in rejected]
        won = wanted if leases is None else [c for c, ok in zip(wanted, leases.take(wanted), strict=True) if ok]
        with report._lock:
            report.skipped_rejected.extend(customer for customer in chunk if customer in rejected)
            report.taken_elsewhere += len(wanted) - len(won)
        return won

    def _prepare(self, customers: Sequence[str]) -> None:
        """Make the credentials of `customers` ready in bulk (a speed-up only: on failure each request gets
        its own token)."""
        if self._credentials is None or not customers:
            return
        try:
            self._credentials.prepare(customers)
        except Exception as exc:
            log.warning("could not prepare %d customers (%s); each is fetched on its own", len(customers), exc)


def _ordered(customers: Sequence[str], prefer: Collection[str]) -> list[str]:
    """`customers` shuffled, those in `prefer` first: instances start on different customers, so that
    leases rarely collide."""
    preferred = set(prefer)
    mine = [customer for customer in customers if customer in preferred]
    rest = [customer for customer in customers if customer not in preferred]
    random.shuffle(mine)
    random.shuffle(rest)
    return mine + rest


class _Claims:
    """A cycle's work, shared by its workers: customers are claimed CLAIM_BATCH at a time, until at least
    CLAIM_BATCH are won (or none are left, or the cycle is stopped), their credentials made ready together,
    and handed out one by one to whichever worker is free, so a batch never ties a worker down while others
    idle. Late in a cycle shared with other instances most claims are lost, so a batch takes several chunks:
    the secrets store is still read in full batches."""

    def __init__(
        self,
        names: Iterator[str],
        claim: Callable[[Sequence[str]], list[str]],
        prepare: Callable[[Sequence[str]], None],
        stop: threading.Event,
    ) -> None:
        self._names = names
        self._claim = claim
        self._prepare = prepare
        self._stop = stop
        self._ready: deque[str] = deque()
        self._lock = threading.Lock()

    def next(self) -> str | None:
        """The next customer to fetch, or None when the cycle's work is all handed out."""
        with self._lock:
            if self._stop.is_set():
                return None  # what was claimed is for `abandon` to give back
            if not self._ready:
                while (
                    len(self._ready) < CLAIM_BATCH
                    and not self._stop.is_set()
                    and (chunk := list(itertools.islice(self._names, CLAIM_BATCH)))
                ):
                    self._ready.extend(self._claim(chunk))  # there at once: should a later claim fail, `abandon` has it
                if self._stop.is_set():
                    return None  # what was claimed is for `abandon` to give back
                self._prepare(list(self._ready))
            return self._ready.popleft() if self._ready else None

    def abandon(self) -> tuple[list[str], int]:
        """Drop what is left: the customers claimed but never started, and how many were never claimed."""
        with self._lock:
            claimed, self._ready = list(self._ready), deque()
            return claimed, sum(1 for _ in self._names)
