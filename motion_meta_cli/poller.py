"""Polling: every interval, fetch every active customer once across all instances sharing the cache.

    poller = Poller(app, interval_s=60, concurrency=8)
    for report in poller.run(cycles=None, stop=stop_event):     # until stop is set
        ...

Cycles are fixed-rate, on wall-clock slots (slot = floor(time / interval)), so every instance agrees
on which cycle it is. For each customer an instance takes a lease for that slot (an atomic add in
the cache) before fetching; whoever gets it fetches, the others skip it. Leases are per slot, so the
customers of an instance that dies are fetched by the others from the next slot on. A cycle that takes
longer than the interval is reported as overrun; whenever a cycle ends past its slot, the next starts at
once for the current slot, never on top.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from motion_meta_cli.app import AppHandler
from motion_meta_cli.errors import BackendUnavailableError, StoppedError
from motion_meta_cli.models import iso_utc
from motion_meta_cli.service import BatchedResults

log = logging.getLogger(__name__)

LEASE_PREFIX = "poll:lease:"
CLAIM_BATCH = 16
"""Customers claimed per cache round trip (leases, rejected marks, credential markers, slots), and results
stored per transaction. An instance killed mid-cycle leaves at most this many claimed customers unfetched, and
this many fetched results unstored, for the next slot to fetch again."""


@dataclass
class CycleReport:
    """What one instance did in one cycle."""

    cycle: int
    slot: int
    started_at: float
    fetched: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped_rejected: list[str] = field(default_factory=list)
    taken_elsewhere: int = 0
    not_started: int = 0
    duration_s: float = 0.0
    overrun: bool = False
    last_error: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

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
            "duration_s": round(self.duration_s, 3),
            "overrun": self.overrun,
            "last_error": self.last_error,
            "customers": sorted(self.fetched),
            "failures": dict(sorted(self.failed.items())),
        }


def stoppable_sleep(stop: threading.Event) -> Callable[[float], None]:
    """A sleep for moderation waits that ends early, by raising StoppedError, once `stop` is set."""

    def sleep(seconds: float) -> None:
        if stop.wait(seconds):
            raise StoppedError("stopping: request abandoned before it was sent")

    return sleep


class Poller:
    """Runs `MetaUserService` on an interval, sharing the work with other instances."""

    def __init__(
        self,
        app: AppHandler,
        *,
        interval_s: float,
        customers: Sequence[str] | None = None,
        concurrency: int = 8,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._app = app
        self.interval_s = interval_s
        self._customers = list(customers) if customers is not None else None
        self._concurrency = concurrency
        self._wall = wall
        self.instance = secrets.token_hex(4)
        self._lease_warned = False
        self.current: CycleReport | None = None

    def run(self, *, stop: threading.Event, cycles: int | None = None) -> Iterator[CycleReport]:
        """Yield a report per cycle until `stop` is set or `cycles` have run."""
        done = 0
        while not stop.is_set() and (cycles is None or done < cycles):
            slot = math.floor(self._wall() / self.interval_s)
            report = self.run_cycle(slot, done + 1, stop)
            done += 1
            next_start = (slot + 1) * self.interval_s
            # Longer than an interval: the work no longer fits. (A first cycle that merely started late in
            # its slot and ends in the next one is not an overrun; the next cycle still starts at once.)
            report.overrun = report.duration_s > self.interval_s
            yield report
            if cycles is not None and done >= cycles:
                break
            delay = next_start - self._wall()
            if delay > 0:
                stop.wait(delay)

    def run_cycle(self, slot: int, number: int, stop: threading.Event) -> CycleReport:
        """Fetch every customer this instance wins the lease of, in this slot."""
        report = CycleReport(cycle=number, slot=slot, started_at=self._wall())
        self.current = report
        names = self._names()
        random.shuffle(names)  # instances start on different customers, so leases rarely collide
        work = _Claims(iter(names), lambda chunk: self._claim(chunk, slot, report))
        results = BatchedResults(self._app.store, CLAIM_BATCH)

        def worker() -> None:
            while not stop.is_set() and (customer := work.next()) is not None:
                self._fetch(customer, report, results)

        workers = max(1, min(self._concurrency, len(names)))
        try:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="poll") as pool:
                for future in [pool.submit(worker) for _ in range(workers)]:
                    future.result()
        finally:
            results.flush()  # what was fetched is stored, however the cycle ends
        report.not_started += work.abandon()  # stopped: claimed or not, these were never sent
        report.duration_s = self._wall() - report.started_at
        return report

    def _names(self) -> list[str]:
        store = self._app.store
        if self._customers is None:
            return [c.name for c in store.list_customers()]
        return [store.get_customer(name).name for name in self._customers]

    def _claim(self, chunk: Sequence[str], slot: int, report: CycleReport) -> list[str]:
        """The customers of `chunk` this instance fetches in `slot`: not rejected, and their lease won
        (their credentials made ready in bulk)."""
        rejected = self._app.credentials.rejected_among(chunk)
        wanted = [customer for customer in chunk if customer not in rejected]
        won = [customer for customer, ok in zip(wanted, self._leases(wanted, slot), strict=True) if ok]
        try:  # a speed-up only: on failure each request gets its own token
            self._app.credentials.prepare(won)
        except Exception as exc:
            log.warning("could not prepare %d customers (%s); each is fetched on its own", len(won), exc)
        with report._lock:
            report.skipped_rejected.extend(customer for customer in chunk if customer in rejected)
            report.taken_elsewhere += len(wanted) - len(won)
        return won

    def _fetch(self, customer: str, report: CycleReport, results: BatchedResults) -> None:
        result = self._app.service.fetch_one(customer, save=results.add)
        with report._lock:
            if result.error is None:
                report.fetched.append(customer)
            elif isinstance(result.error, StoppedError):
                report.not_started += 1
            else:
                report.failed[customer] = result.error.kind
                report.last_error = f"{customer}: {result.error.message}"

    def _leases(self, customers: Sequence[str], slot: int) -> list[bool]:
        keys = [f"{LEASE_PREFIX}{slot}:{customer}" for customer in customers]
        try:
            return self._app.cache.add_many(keys, self.instance, 2 * self.interval_s) if keys else []
        except BackendUnavailableError as exc:
            # Without the cache nobody can coordinate: fetching twice beats not fetching at all.
            if not self._lease_warned:
                self._lease_warned = True
                log.warning("%s; fetching without per-cycle leases until it answers", exc)
            return [True] * len(keys)


class _Claims:
    """A cycle's work, shared by its workers: customers are claimed CLAIM_BATCH at a time (`Poller._claim`:
    a round trip each for their rejected marks, leases and credential markers, one state call for their
    slots) and handed out one by one to whichever worker is free, so a batch never ties a worker down
    while others idle."""

    def __init__(self, names: Iterator[str], claim: Callable[[Sequence[str]], list[str]]) -> None:
        self._names = names
        self._claim = claim
        self._ready: deque[str] = deque()
        self._lock = threading.Lock()

    def next(self) -> str | None:
        """The next customer to fetch, or None when the cycle's work is all handed out."""
        with self._lock:
            while not self._ready:
                chunk = list(itertools.islice(self._names, CLAIM_BATCH))
                if not chunk:
                    return None
                self._ready.extend(self._claim(chunk))
            return self._ready.popleft()

    def abandon(self) -> int:
        """Drop what is left (claimed or not); returns how many customers that was."""
        with self._lock:
            left = len(self._ready) + sum(1 for _ in self._names)
            self._ready.clear()
            return left
