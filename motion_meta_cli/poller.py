"""Polling: every interval, fetch every active customer once across all instances sharing the cache.

    poller = Poller(app, interval_s=60)             # fetches MOTION_META_CONCURRENCY at a time
    for report in poller.run(cycles=None, stop=stop_event):     # until stop is set
        ...

Cycles are fixed-rate, on wall-clock slots (slot = floor(time / interval)), so every instance agrees
on which cycle it is; the work of a cycle is `MetaUserService.run_cycle` with per-slot leases. A cycle
that starts late in its slot (the first one of an instance, or one after an overrun) also leases the
next slot for the customers it fetches, so no customer is fetched twice within one interval. A cycle
that takes longer than the interval is reported as overrun; whenever a cycle ends past its slot, the
next starts at once for the current slot, never on top. Each instance claims first the customers it took
in its last cycle, so instances keep to their own customers (and the tokens they hold) from cycle to
cycle, and share out the rest as it comes. The poller keeps the results the store could not take
(`ResultBacklog`) from cycle to cycle, and the last customer list it could read.
"""

from __future__ import annotations

import contextlib
import logging
import math
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from http.server import ThreadingHTTPServer

from motion_meta_cli import metrics
from motion_meta_cli.app import AppHandler
from motion_meta_cli.errors import MotionMetaError, StoppedError
from motion_meta_cli.service import CycleReport, ResultBacklog, SlotLeases
from motion_meta_cli.storage.base import Cache

log = logging.getLogger(__name__)

LATE_SHARE = 0.1
"""A cycle that starts more than this share of the interval into its slot is late (see the module docstring)."""


ONCE_GUARD = "poll:once"
ONCE_GUARD_TTL_S = 30.0
"""The overlap guard of `poll --once` lives this long unless renewed (every third of it while the run lasts),
so a run killed with SIGKILL holds the next cron run up for half a minute at most."""


@contextmanager
def once_guard(cache: Cache) -> Iterator[bool]:
    """Hold the overlap guard of `poll --once` while the block runs; yields False when another run holds it."""
    guard = cache.lock(ONCE_GUARD, ttl_s=ONCE_GUARD_TTL_S)
    if not guard.acquire(blocking=False):
        yield False
        return
    done = threading.Event()

    def renew() -> None:
        while not done.wait(ONCE_GUARD_TTL_S / 3):
            with contextlib.suppress(MotionMetaError):  # the cache away: the guard may lapse; the run goes on
                guard.renew()

    renewer = threading.Thread(target=renew, name="once-guard", daemon=True)
    renewer.start()
    try:
        yield True
    finally:
        done.set()
        renewer.join()
        with contextlib.suppress(MotionMetaError):
            guard.release()


def stoppable_sleep(stop: threading.Event) -> Callable[[float], None]:
    """A sleep for moderation waits that ends early, by raising StoppedError, once `stop` is set."""

    def sleep(seconds: float) -> None:
        if stop.wait(seconds):
            raise StoppedError("stopping: request abandoned before it was sent")

    return sleep


class Poller:
    """Runs `MetaUserService` cycles on an interval, sharing the work with other instances."""

    def __init__(
        self,
        app: AppHandler,
        *,
        interval_s: float,
        customers: Sequence[str] | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._app = app
        self.interval_s = interval_s
        self._customers = list(customers) if customers is not None else None
        self._wall = wall
        self.instance = secrets.token_hex(4)
        self.backlog = ResultBacklog(app.store)
        self._known: list[str] | None = None
        self._taken_last: frozenset[str] = frozenset()
        """The customers this instance took last cycle: it claims them first in the next one (their tokens are held)."""
        self._covering: frozenset[str] = frozenset()
        """What the last cycle took if it started late: it leased them for the next slot as well."""
        self.current: CycleReport | None = None
        """The cycle running now (None between cycles)."""
        self.recent: deque[CycleReport] = deque(maxlen=5)
        """The last cycles that ended, newest last (live view)."""
        self.next_start: float | None = None
        """When the next cycle starts (wall clock), while waiting for it."""
        self.last_cycle_started: float | None = None
        """When (wall clock) the last cycle began: `/livez` says the loop is alive while it is recent."""
        self.totals: Counter[str] = Counter()
        """Cycles, fetched, failed, skipped and lost since the start (the summary when polling stops)."""

    def run(self, *, stop: threading.Event, cycles: int | None = None) -> Iterator[CycleReport]:
        """Yield a report per cycle until `stop` is set or `cycles` have run."""
        done = 0
        while not stop.is_set() and (cycles is None or done < cycles):
            slot = math.floor(self._wall() / self.interval_s)
            report = self.run_cycle(slot, done + 1, stop)
            done += 1
            next_start = (slot + 1) * self.interval_s
            report.overrun = report.duration_s > self.interval_s
            self.current = None
            self.recent.append(report)
            metrics.cycles.observe(report.duration_s)
            for result, count in (
                ("fetched", len(report.fetched)),
                ("failed", len(report.failed)),
                ("skipped", len(report.skipped_rejected)),
                ("taken_elsewhere", report.taken_elsewhere),
            ):
                metrics.cycle_customers.labels(result).inc(count)
            if report.overrun:
                metrics.overruns.inc()
            self.last_cycle_started = report.started_at
            self.totals.update(
                cycles=1,
                fetched=len(report.fetched),
                failed=len(report.failed),
                skipped=len(report.skipped_rejected),
                lost=report.lost,
            )
            yield report
            if cycles is not None and done >= cycles:
                break
            delay = next_start - self._wall()
            if delay > 0:
                self.next_start = next_start
                stop.wait(delay)
                self.next_start = None

    def run_cycle(self, slot: int, number: int, stop: threading.Event) -> CycleReport:
        """Fetch every customer this instance wins the lease of, in this slot."""
        started = self._wall()
        report = CycleReport(cycle=number, slot=slot, started_at=started)
        self.current = report
        late = started - slot * self.interval_s > LATE_SHARE * self.interval_s
        leases = SlotLeases(self._app.cache, slot, self.interval_s, owner=self.instance, covers_next=late)
        try:
            names = self._names()
        except MotionMetaError as exc:  # the store away, or its table gone until `store init`
            if self._known is None:
                raise
            log.warning(
                "%s; polling the %d customers known from the last cycle",
                exc,
                len(self._known),
                extra={"cycle": number, "slot": slot},
            )
            names = self._known
        self._app.service.run_cycle(
            names, leases=leases, stop=stop, backlog=self.backlog, report=report, prefer=self._taken_last
        )
        taken = frozenset(report.fetched).union(report.failed)
        # A late cycle leases the next slot too for what it takes, so the next cycle finds those taken (by this
        # instance): they stay its customers for the cycle after.
        self._taken_last, self._covering = taken | self._covering, taken if late else frozenset()
        report.duration_s = self._wall() - report.started_at
        return report

    def _names(self) -> list[str]:
        if self._customers is None:
            names = [c.name for c in self._app.customers()]
        else:
            names = [self._app.store.get_customer(name).name for name in self._customers]
        self._known = names
        return names


def serve_health(port: int, poller: Poller, app: AppHandler, interval_s: float) -> ThreadingHTTPServer:
    """`/metrics`, and the probes: `/livez` while the loop runs (its last cycle began within two intervals),
    `/readyz` while the cache, the store and the secrets store answer and moderation is shared."""
    from motion_meta_cli.backends import ping_backends

    started = time.time()

    def live() -> tuple[bool, dict[str, object]]:
        last = poller.last_cycle_started if poller.current is None else poller.current.started_at
        since = time.time() - (last if last is not None else started)
        return since <= 2 * interval_s, {"last_cycle_started_s_ago": round(since, 3)}

    def ready() -> tuple[bool, dict[str, object]]:
        backends = {name: problem or "ok" for name, _, problem, _ in ping_backends(app)}
        in_process = bool(getattr(app.moderator.state, "degraded", False))
        ok = all(state == "ok" for state in backends.values()) and not in_process
        return ok, {"backends": backends, "moderation_in_process": in_process}

    return metrics.serve(port, live=live, ready=ready)
