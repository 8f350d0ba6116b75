"""Polling: every interval, fetch every active customer once across all instances sharing the cache.

    poller = Poller(app, interval_s=60, concurrency=8)
    for report in poller.run(cycles=None, stop=stop_event):     # until stop is set
        ...

Cycles are fixed-rate, on wall-clock slots (slot = floor(time / interval)), so every instance agrees
on which cycle it is. For each customer an instance takes a lease for that slot (an atomic add in
the cache) before fetching; whoever gets it fetches, the others skip it. Leases are per slot, so the
customers of an instance that dies are fetched by the others from the next slot on. A cycle that runs
past its slot is reported as overrun and the next starts at once for the current slot, never on top.
"""

from __future__ import annotations

import logging
import math
import random
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from motion_meta_cli.app import AppHandler
from motion_meta_cli.errors import BackendUnavailableError, StoppedError
from motion_meta_cli.models import iso_utc

log = logging.getLogger(__name__)

LEASE_PREFIX = "poll:lease:"


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
            report.overrun = self._wall() > next_start
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

        def one(customer: str) -> None:
            if stop.is_set():
                with report._lock:
                    report.not_started += 1
                return
            self._poll_customer(customer, slot, report)

        workers = max(1, min(self._concurrency, len(names)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="poll") as pool:
            list(pool.map(one, names))
        report.duration_s = self._wall() - report.started_at
        return report

    def _names(self) -> list[str]:
        store = self._app.store
        if self._customers is None:
            return [c.name for c in store.list_customers()]
        return [store.get_customer(name).name for name in self._customers]

    def _poll_customer(self, customer: str, slot: int, report: CycleReport) -> None:
        credentials = self._app.credentials
        if credentials.is_rejected(customer):
            with report._lock:
                report.skipped_rejected.append(customer)
            return
        if not self._lease(customer, slot):
            with report._lock:
                report.taken_elsewhere += 1
            return
        result = self._app.service.fetch_one(customer)
        with report._lock:
            if result.error is None:
                report.fetched.append(customer)
            elif isinstance(result.error, StoppedError):
                report.not_started += 1
            else:
                report.failed[customer] = result.error.kind
                report.last_error = f"{customer}: {result.error.message}"

    def _lease(self, customer: str, slot: int) -> bool:
        try:
            return self._app.cache.add(f"{LEASE_PREFIX}{slot}:{customer}", self.instance, 2 * self.interval_s)
        except BackendUnavailableError as exc:
            # Without the cache nobody can coordinate: fetching twice beats not fetching at all.
            if not self._lease_warned:
                self._lease_warned = True
                log.warning("%s; fetching without per-cycle leases until it answers", exc)
            return True
