"""The moderator: before each request, wait out what applies; after it, record what Meta said.

    moderator = Moderator(state)                       # LocalState, SQLiteState or RedisState
    ticket = moderator.acquire(["app", "user:acme"], handling, budget_s=120)
    ...send...
    moderator.succeeded(ticket, usage, handling)       # or .throttled(ticket, scope, classification, ...)

Decisions are the policy's (`policy.RetryPolicy`) and the state's (atomic, shared); this module only
sequences them and sleeps. Scopes: `app` (X-App-Usage, code 4), `user:<customer>` (code 17),
`page:<id>` (32), `buc:<id>:<type>` (800xx, with ETA), `ad_account:<id>`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from motion_meta_cli.config import ThrottleHandling
from motion_meta_cli.errors import ThrottledError
from motion_meta_cli.meta import Classification, Usage
from motion_meta_cli.moderation.capacity import PRECISE_FROM_PCT, estimate_capacity
from motion_meta_cli.moderation.state import UNMETERED, AdmitRule, Hold, ModerationState
from motion_meta_cli.policy import PauseScope, RetryPolicy

log = logging.getLogger(__name__)

APP_SCOPE = "app"
BUDGET_PROBE = "app:budget"
"""The probe that learns the app's budget from the first usage reading, when pacing starts cold."""
ESTIMATE_MARGIN_PCT = 2.0
"""Share of the window, at its start, within which a success is not counted towards a reading."""
RESERVATION_FRESH_S = 5.0
"""A slot reserved for a poll batch serves a request that starts within this long; later, it goes back and
the request takes a fresh one (so no request leans on a lease that has mostly run)."""
RELEASE_WITHIN_S = 1.0
"""Inside a poll cycle, a finished request's slot goes back with the next slot call, or with the first
request to finish this long after it."""
COUNTS_PER_WINDOW = 100
"""While the usage reading stays the same, successes are counted towards the budget at most this many
times per window (each count walks the window's successes)."""
LIMITED_WINDOWS = 10
"""A learned budget stays valid this many windows (readings refresh it); after a throttle, the budget is
enforced, even with pacing off, for as long."""


@dataclass
class ModerationStats:
    """Counters for live views and summaries; thread-safe."""

    waiting: int = 0
    sent: int = 0
    paused_s: float = 0.0
    throttles: int = 0
    probes: int = 0
    first_throttle_at: float | None = None
    """When (on the moderator's clock) the first throttled answer was recorded."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **deltas: float) -> None:
        """Add to counters by name."""
        with self._lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)


@dataclass
class Ticket:
    """One admitted attempt: when it left (state clock) and which probes it carries."""

    sent_ms: int
    scopes: tuple[str, ...]
    probes: dict[str, str] = field(default_factory=dict)
    waited_s: float = 0.0


def admit_rule(handling: ThrottleHandling) -> AdmitRule:
    """The send-log rule for a platform config."""
    return AdmitRule(
        window_ms=int(handling.counted_window_s * 1000),
        pacing=handling.pacing,
        threshold_pct=handling.usage_threshold_pct,
    )


def _blocked(hold: Hold, rule: AdmitRule, probes: dict[str, str]) -> bool:
    """Whether `hold` keeps a request carrying `probes` from the send log: a pause, a recovering scope it
    does not probe, or (pacing) an unlearned budget it does not probe."""
    return (
        hold.wait_ms > 0
        or any(s not in probes for s in hold.recovering)
        or (rule.pacing and not hold.budget_known and BUDGET_PROBE not in probes)
    )


class Moderator:
    """Shared self-moderation: cooldowns, probes after a block, and a learned budget per scope."""

    def __init__(
        self,
        state: ModerationState,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state = state
        self.stats = ModerationStats()
        self._sleep = sleep
        self._clock = clock
        self._gate = threading.Lock()
        self._last_raise: tuple[int, bool, float] | None = None
        self._last_count: tuple[float, float] | None = None
        self._slot_lock = threading.Lock()
        self._batching = 0
        self._reserved: dict[str, tuple[str, float]] = {}
        """Slots reserved for customers about to be fetched: customer -> (holder, when reserved)."""
        self._released: list[tuple[str, str]] = []
        """Slots whose request ended, to go back with the next slot call (inside batched_slot_releases)."""
        self._released_since: float | None = None

    def acquire(self, scopes: Sequence[str], handling: ThrottleHandling, *, budget_s: float) -> Ticket:
        """Wait until a request on `scopes` (the app scope first) may leave, then log it.

        Raises ThrottledError when that would take longer than `budget_s`.
        """
        rule = admit_rule(handling)
        poll_s = min(max(handling.window_s / 40, 0.01), 0.1)
        probe_ttl_ms = int(max(handling.window_s, 60) * 1000)
        start = self._clock()
        probes: dict[str, str] = {}
        self.stats.add(waiting=1)
        hold: Hold | None = None  # None: straight to the gate; else what blocked us, checked outside it
        try:
            while True:
                if hold is None or not _blocked(hold, rule, probes):
                    admitted = self._admit(scopes, rule, probes, start, budget_s)
                    if isinstance(admitted, Ticket):
                        self.stats.add(sent=1)
                        if probes:
                            self.stats.add(probes=1)
                            log.info("probing %s after a pause", ", ".join(probes))
                        return admitted
                    hold = admitted
                if hold.wait_ms > 0:
                    self._wait(hold.wait_ms / 1000, hold.scope or APP_SCOPE, start, budget_s)
                else:
                    wanted = list(hold.recovering)
                    if rule.pacing and not hold.budget_known:
                        wanted.append(BUDGET_PROBE)  # the first request learns the budget; the rest wait for it
                    for scope in [s for s in wanted if s not in probes]:
                        holder = self.state.try_probe(scope, probe_ttl_ms)
                        if holder is None:
                            break
                        probes[scope] = holder
                    if all(s in probes for s in wanted):
                        hold = None
                        continue
                    # Someone else probes; sleep until their request could leave, at least a poll.
                    wait_ms, _ = self.state.admit(APP_SCOPE, rule, record=False)
                    self._wait(max(wait_ms / 1000, poll_s), wanted[0], start, budget_s)
                hold = self.state.hold(scopes)  # waiters re-check outside the gate, so they never crowd it
        except BaseException:
            self._end_probes(probes)
            raise
        finally:
            self.stats.add(waiting=-1)

    def _admit(
        self, scopes: Sequence[str], rule: AdmitRule, probes: dict[str, str], start: float, budget_s: float
    ) -> Ticket | Hold:
        # One thread per process polls the shared send log at a time; the others queue here instead of
        # all waking at the instant a slot frees. (A lock-free fast path was tried: under a binding
        # budget it let a herd through and cost pacing a whole window.) A Hold comes back when a pause,
        # a recovery without our probe, or an unlearned budget stands in the way: the caller deals with
        # it outside the gate.
        with self._gate:
            while True:
                hold = self.state.hold(scopes)
                if _blocked(hold, rule, probes):
                    return hold
                wait_ms, now_ms = self.state.admit(APP_SCOPE, rule, since=hold.epoch)
                if wait_ms == 0:
                    return Ticket(now_ms, tuple(scopes), probes, self._clock() - start)
                self._wait(wait_ms / 1000, APP_SCOPE, start, budget_s)

    def succeeded(self, ticket: Ticket, usage: Usage, handling: ThrottleHandling) -> None:
        """Record a success: clear strikes and recovery, learn the app budget from X-App-Usage."""
        window_ms = int(handling.window_s * 1000)
        margin_ms = int(window_ms * ESTIMATE_MARGIN_PCT / 100)
        # Successes that came back before this request left, and left well inside the window, were surely
        # counted before it: a lower bound on our share of the reading, so the budget errs on the safe side.
        reading = usage.app.max_pct if usage.app is not None else None
        unmetered = self._last_raise is not None and self._last_raise[0] == UNMETERED
        if reading is None and not ticket.probes and unmetered:
            # Nothing to learn and nothing to clear (strikes and recovery are cleared by the probe that
            # follows every pause): skip the write.
            return
        # Counting walks the window's successes, which can be many thousands: count when the reading
        # moved, or a hundredth of a window after the last count (so a bound still tightens within a
        # percentage step). Other successes are only logged, for the counts to come.
        now, last = self._clock(), self._last_count
        count = reading is not None and (
            last is None
            or reading != last[0]
            or now - last[1] >= handling.window_s / COUNTS_PER_WINDOW
            or BUDGET_PROBE in ticket.probes
        )
        if reading is not None and count:
            self._last_count = (reading, now)
        counted = 1 + self.state.observe_success(APP_SCOPE, ticket.sent_ms, window_ms, margin_ms, count=count)
        for scope in ticket.probes:
            if scope not in (APP_SCOPE, BUDGET_PROBE):
                self.state.observe_success(scope, ticket.sent_ms, window_ms, margin_ms, count=False)
        if reading is None:
            capacity: int | None = UNMETERED
        else:
            capacity = estimate_capacity(counted, reading) if count else None
        if capacity is not None:
            precise = reading is not None and reading >= PRECISE_FROM_PCT
            ttl_s = handling.window_s * LIMITED_WINDOWS
            # The stored budget only grows within its TTL (a throttle's relearning may lower it, which
            # must stand): raising what this process raised a moment ago again would change nothing.
            raised = self._last_raise
            if raised is None or capacity > raised[0] or precise != raised[1] or now - raised[2] > ttl_s / 10:
                self.state.raise_capacity(APP_SCOPE, capacity, int(ttl_s * 1000), precise=precise)
                self._last_raise = (capacity, precise, now)
        self._end_probes(ticket.probes)

    def throttled(
        self,
        ticket: Ticket,
        scope: str,
        classification: Classification,
        handling: ThrottleHandling,
        policy: RetryPolicy,
    ) -> float:
        """Record a throttle of `scope`: a strike, an extended cooldown; returns the pause chosen."""
        strikes, new = self.state.strike(scope, ticket.sent_ms)
        decision = policy.decide(classification, failures=0, throttles=strikes, scope=scope)
        if not isinstance(decision, PauseScope):
            raise ValueError(f"not a throttle: {classification.kind}")
        duration_s, with_eta = decision.duration_s, decision.from_eta
        extended = self.state.pause(
            scope,
            int(duration_s * 1000),
            recovering=not with_eta,
            limited_ms=int(handling.window_s * LIMITED_WINDOWS * 1000),
            relearn_window_ms=int(handling.window_s * 1000) if scope == APP_SCOPE and not with_eta else 0,
        )
        self.stats.add(throttles=1)
        if self.stats.first_throttle_at is None:
            self.stats.first_throttle_at = self._clock()
        if extended and new:
            log.warning(
                "Meta throttled %s (%s); pausing it for %.3g s%s",
                scope,
                classification.reason,
                duration_s,
                " (Meta's estimate)" if with_eta else f" (strike {strikes})",
            )
        self._end_probes(ticket.probes)
        return duration_s

    @contextmanager
    def customer_slot(self, customer: str, limit: int, *, lease_s: float, budget_s: float) -> Iterator[None]:
        """Hold one of `limit` slots for `customer` across every instance while the block runs.

        The slot is a lease: an instance killed mid-request frees it after `lease_s`. A slot reserved
        (`reserve_slots`) less than RESERVATION_FRESH_S ago is used instead of taking one. Inside
        `batched_slot_releases` the slot goes back with this process's next slot call, or with the first
        request to finish RELEASE_WITHIN_S or more after it; otherwise at once.
        """
        name = f"customer:{customer}"
        with self._slot_lock:
            reserved = self._reserved.pop(customer, None)
            if reserved is not None and self._clock() - reserved[1] > RESERVATION_FRESH_S:
                self._queue_release((name, reserved[0]))  # too old to lean on: give it back, take a new one
                reserved = None
        holder = reserved[0] if reserved is not None else None
        start, poll = self._clock(), 0.02
        while holder is None and (holder := self._slot_call([name], limit, int(lease_s * 1000))[0]) is None:
            if self._clock() - start + poll > budget_s:
                raise ThrottledError(
                    f"customer {customer!r} already has {limit} request(s) in flight "
                    "(SERVICES_META_USER_CONCURRENT_REQUESTS); try again later",
                    scope=f"user:{customer}",
                    retry_after_s=poll,
                )
            self._sleep(poll)
            poll = min(poll * 2, 0.5)
        try:
            yield
        finally:
            with self._slot_lock:
                self._queue_release((name, holder))
                due = not self._batching or self._clock() - (self._released_since or 0) >= RELEASE_WITHIN_S
            if due:
                self._slot_call([], limit, 0)

    def reserve_slots(self, customers: Sequence[str], limit: int, *, lease_s: float) -> int:
        """Take, where free, a slot for each of `customers` about to be fetched, in one state call that also
        returns the slots waiting to go back; `customer_slot` uses each (once) within RESERVATION_FRESH_S.
        Returns how many were taken."""
        with self._slot_lock:
            customers = [customer for customer in customers if customer not in self._reserved]
        lease_ms = int((lease_s + RESERVATION_FRESH_S) * 1000)  # a full lease left for the latest use
        holders = self._slot_call([f"customer:{customer}" for customer in customers], limit, lease_ms)
        now = self._clock()
        with self._slot_lock:
            for customer, holder in zip(customers, holders, strict=True):
                if holder is not None:
                    self._reserved[customer] = (holder, now)
        return sum(holder is not None for holder in holders)

    @contextmanager
    def batched_slot_releases(self) -> Iterator[None]:
        """While the block runs (a poll cycle), a finished request's slot goes back with this process's next
        slot call (reserving a batch, or taking a slot), or with the first request to finish
        RELEASE_WITHIN_S or more after it. When the block ends, those left and every reservation not used
        go back."""
        with self._slot_lock:
            self._batching += 1
        try:
            yield
        finally:
            with self._slot_lock:
                self._batching -= 1
                if self._batching == 0:
                    for customer, (holder, _) in self._reserved.items():
                        self._queue_release((f"customer:{customer}", holder))
                    self._reserved.clear()
            self._slot_call([], 1, 0)

    def _queue_release(self, slot: tuple[str, str]) -> None:
        # Called with the slot lock held.
        if not self._released:
            self._released_since = self._clock()
        self._released.append(slot)

    def _slot_call(self, names: Sequence[str], limit: int, lease_ms: int) -> list[str | None]:
        """`acquire_slots` for `names`, returning the queued slots in the same call (requeued if it fails)."""
        with self._slot_lock:
            releasing, self._released, self._released_since = self._released, [], None
        if not names and not releasing:
            return []
        try:
            return self.state.acquire_slots(names, limit, lease_ms, releasing=releasing)
        except BaseException:
            with self._slot_lock:
                for slot in releasing:
                    self._queue_release(slot)
            raise

    def release(self, ticket: Ticket) -> None:
        """The attempt ended without an answer about the scopes (a transport error): free its probes."""
        self._end_probes(ticket.probes)

    def _end_probes(self, probes: dict[str, str]) -> None:
        for scope, holder in probes.items():
            self.state.end_probe(scope, holder)
        probes.clear()

    def _wait(self, seconds: float, scope: str, start: float, budget_s: float) -> None:
        elapsed = self._clock() - start
        if elapsed + seconds > budget_s:
            raise ThrottledError(
                f"still rate limited by Meta on {scope}: {seconds:.0f} s to wait is more than this request "
                "may; try again later (the pause is kept, nothing was sent into it)",
                scope=scope,
                retry_after_s=seconds,
            )
        self._sleep(seconds)
        self.stats.add(paused_s=seconds)
