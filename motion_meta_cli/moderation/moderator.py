"""The moderator: before each attempt, wait out what applies; after it, record what Meta said.

    moderator = Moderator(state)                      # LocalState, SQLiteState, RedisState, FailSafeState
    ticket = moderator.acquire("acme", handling, budget_s=120, probe_ttl_ms=34_000)
    try:
        ...send...
        moderator.succeeded(ticket, usage, handling)  # or .throttled(ticket, scope, classification, handling)
    finally:
        moderator.finish(ticket)                      # gives back a probe the answer did not settle

The rules are `rules.py`'s; this module only sequences them, reads and writes the state, and sleeps.
"""

from __future__ import annotations

import contextlib
import logging
import random as _random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from motion_meta_cli import metrics
from motion_meta_cli.config import ThrottleHandling
from motion_meta_cli.errors import ThrottledError
from motion_meta_cli.meta import Classification, Usage
from motion_meta_cli.moderation import rules
from motion_meta_cli.moderation.presence import Presence
from motion_meta_cli.moderation.rules import APP, Limit, Pause, Scope, Wait
from motion_meta_cli.moderation.state import ModerationState, Record, holder_id

log = logging.getLogger(__name__)

KEEP_ALIVE_S = 1.0
"""While a request that holds a slot waits, it wakes this often to renew the slot."""
PROBE_STEP_S = 0.01
"""A request waiting on a probe checks this often whether a probe of its own process ended."""


@dataclass
class ModerationStats:
    """Counters for live views and summaries; thread-safe."""

    waiting: int = 0
    in_flight: int = 0
    """Attempts admitted and not yet finished (sent, or about to be)."""
    sent: int = 0
    paused_s: float = 0.0
    """Seconds requests spent between asking to leave and being admitted (or giving up), summed over attempts:
    cooldowns, probes, budgets and the gate's queue alike."""
    throttles: int = 0
    probes: int = 0
    first_throttle_at: float | None = None
    """When (on the moderator's clock) the first throttled answer was recorded."""
    waits: Counter[tuple[str, str]] = field(default_factory=Counter)
    """Requests waiting right now, by why (cooldown, probe, budget) and scope."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def waiting_on(self, why: str, scope: str, delta: int) -> None:
        """Count a request starting (1) or ending (-1) a wait."""
        with self._lock:
            self.waits[(why, scope)] += delta
            if self.waits[(why, scope)] <= 0:
                del self.waits[(why, scope)]

    def waits_now(self) -> list[tuple[str, str, int]]:
        """(why, scope, requests) for every wait going on, most requests first."""
        with self._lock:
            return sorted(((why, scope, n) for (why, scope), n in self.waits.items()), key=lambda w: -w[2])

    def add(self, **deltas: float) -> None:
        """Add to counters by name."""
        with self._lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)


@dataclass
class Ticket:
    """One admitted attempt: when it left (state clock), its scopes as read then, and the probes it carries."""

    customer: str
    sent_ms: int
    holder: str
    scopes: dict[str, Scope]
    counted: dict[str, int]
    named: set[str]
    probes: set[str] = field(default_factory=set)


def customer_scopes(customer: str) -> list[str]:
    """The scopes every request of `customer` falls under before Meta names more: the app and the token."""
    return [APP, f"user:{customer}"]


class Moderator:
    """Shared self-moderation: cooldowns, one probe after a block, and learned budgets per scope."""

    def __init__(
        self,
        state: ModerationState,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = _random.random,
    ) -> None:
        self.state = state
        self.presence = Presence(state)
        self.stats = ModerationStats()
        self._sleep = sleep
        self._clock = clock
        self._random = random
        self._gate = threading.Lock()
        """Where requests queue to admit one at a time per process (see `acquire`)."""
        self._queued = 0
        """Requests in or queued at the gate: while there are any, newcomers queue too."""
        self._gate_count = threading.Lock()
        self._probes_ended = 0
        """Counts the probes of this process that ended: a request waiting on a probe looks again at once."""

    def acquire(
        self,
        customer: str,
        handling: ThrottleHandling,
        *,
        budget_s: float,
        probe_ttl_ms: int,
        keep_alive: Callable[[], None] | None = None,
    ) -> Ticket:
        """Wait until an attempt for `customer` may leave, then log it; ThrottledError when that would take
        longer than `budget_s` (the pause stays, nothing is sent)."""
        start, holder, probes = self._clock(), holder_id(), set[str]()
        window_ms = int(handling.counted_window_s * 1000)
        # Answers count from MARGIN_PCT inside Meta's window: the send logs' window is the longer, guarded one.
        margin_ms = window_ms - int(handling.window_s * 1000 * (1 - rules.MARGIN_PCT / 100))
        self.stats.add(waiting=1)
        gated = False
        try:
            while True:
                # Requests queue at the gate, one thread per process admitting at a time, when the rules say so
                # (`one_at_a_time`), once a budget has held them (instead of all polling the send log), and while
                # others queue there; the rest pass straight through.
                with self._gate if gated else contextlib.nullcontext():
                    now, scopes, named = self._scopes(customer, handling)
                    if not gated and (self._queued or rules.one_at_a_time(scopes, now, handling)):
                        gated = self._queue_at_gate()
                        continue
                    share = self.presence.share(now, handling)
                    block = rules.blocker(scopes, now, handling, probes, share)
                    if block is None:
                        metered = [name for name in scopes if rules.is_metered(name)]
                        limits = [rules.limit(name, scopes[name], now, handling, share) for name in metered]
                        limits += [Limit(rules.answered_log(name), record=False) for name in metered]
                        admitted = self.state.admit(limits, window_ms, margin_ms)
                        if admitted.wait_ms <= 0:
                            break
                        self._end_probes(probes, holder)  # a probe lives no longer than the attempt it stands for
                        if not gated:
                            gated = self._queue_at_gate()
                            continue
                        binding = ", ".join(rule.log for rule in limits if rule.limit is not None) or APP
                        self._wait(Wait(binding, admitted.wait_ms, "budget"), handling, start, budget_s, keep_alive)
                        continue
                if isinstance(block, Wait):
                    self._wait(block, handling, start, budget_s, keep_alive)
                else:
                    taken = self._change(block.scope, lambda s, now: rules.take_probe(s, now, holder, probe_ttl_ms))
                    if taken.probe == holder:
                        probes.add(block.scope)
            counted = dict(zip(metered, admitted.counted[len(metered) :], strict=True))
            self.stats.add(sent=1, probes=1 if probes else 0, in_flight=1)
            if probes:
                log.info("probing %s", ", ".join(sorted(probes)), extra={"customer": customer})
            return Ticket(customer, admitted.now_ms, holder, scopes, counted, named, probes)
        except BaseException:
            self._end_probes(probes, holder)
            raise
        finally:
            self.stats.add(waiting=-1, paused_s=self._clock() - start)
            if gated:
                with self._gate_count:
                    self._queued -= 1

    def _queue_at_gate(self) -> bool:
        with self._gate_count:
            self._queued += 1
        return True

    def answered(self, ticket: Ticket, usage: Usage, handling: ThrottleHandling) -> None:
        """An answer that was no throttle (a success or another error): end strikes, recovery and probes,
        learn budgets from its readings, and remember the scopes it named."""
        self.name_scopes(ticket, usage, handling)
        metrics.record_usage(usage)
        readings: dict[str, float | None] = {APP: usage.app.max_pct if usage.app is not None else None}
        for entry in usage.business_use_cases:
            if entry.type is not None and entry.max_pct is not None:
                readings[f"buc:{entry.business_id}:{entry.type}"] = entry.max_pct

        window_ms = int(handling.counted_window_s * 1000)
        answered = [Limit(rules.answered_log(name)) for name in ticket.counted if readings.get(name) is not None]
        if answered:
            self.state.admit(answered, window_ms, 0)
        for name, seen in ticket.scopes.items():

            def change(scope: Scope, now: int, name: str = name) -> Scope:
                scope = rules.after_success(scope, ticket.holder)
                if name in ticket.counted and name in readings:
                    counted = ticket.counted[name] + 1  # this very request is in the reading
                    scope = rules.learn(scope, now, usage_pct=readings[name], counted=counted, handling=handling)
                return scope

            # Most answers change nothing: judge from the scope as read at admission, write only if it moves.
            if change(seen, ticket.sent_ms) != seen:
                self._change(name, change)
        if ticket.probes:
            self._probes_ended += 1
        ticket.probes.clear()

    def throttled(
        self, ticket: Ticket, scope: str, classification: Classification, handling: ThrottleHandling
    ) -> float:
        """Meta throttled `scope`: a strike and an extended cooldown for every instance; returns the pause."""
        pauses: list[Pause] = []
        jitter = self._random()

        def change(record: Scope, now: int) -> Scope:
            updated, pause = rules.after_throttle(
                record,
                now,
                sent_ms=ticket.sent_ms,
                holder=ticket.holder,
                eta_s=classification.eta_s,
                handling=handling,
                jitter=jitter,
            )
            pauses.append(pause)
            return updated

        self._change(scope, change)
        if scope in ticket.probes:
            self._probes_ended += 1
        ticket.probes.discard(scope)
        pause = pauses[-1]
        if not scope.startswith(("app", "user:")):
            self._name(ticket, {scope}, handling)
        self.stats.add(throttles=1)
        metrics.throttles.labels(metrics.scope_kind(scope)).inc()
        if self.stats.first_throttle_at is None:
            self.stats.first_throttle_at = self._clock()
        if pause.clamped_from_s is not None:
            log.warning(
                "Meta asked %s to wait %.6g s; pausing it for %.6g s (PAUSE_MAX_S) instead",
                scope,
                pause.clamped_from_s,
                pause.duration_s,
                extra={"scope": scope, "customer": ticket.customer, "wait_s": round(pause.duration_s, 3)},
            )
        if pause.new:
            log.warning(
                "Meta throttled %s (%s); pausing it for %.3g s%s",
                scope,
                classification.reason,
                pause.duration_s,
                " (Meta's estimate)" if pause.from_eta else f" (strike {pause.strikes})",
                extra={"scope": scope, "customer": ticket.customer, "wait_s": round(pause.duration_s, 3)},
            )
        return pause.duration_s

    def finish(self, ticket: Ticket) -> None:
        """The attempt is over, however it ended: give back the probes its answer did not settle."""
        self.stats.add(in_flight=-1)
        self._end_probes(ticket.probes, ticket.holder)

    def name_scopes(self, ticket: Ticket, usage: Usage, handling: ThrottleHandling) -> None:
        """Remember the business use cases a response named, so the customer's next requests carry them."""
        named = {f"buc:{e.business_id}:{e.type}" for e in usage.business_use_cases if e.type is not None}
        if named - ticket.named:
            self._name(ticket, named, handling)

    def cooldowns(self) -> dict[str, float]:
        """Every scope in a cooldown, with its remaining seconds (for display)."""
        now, records = self.state.read(None)
        return {
            key: (record["cooldown_until_ms"] - now) / 1000
            for key, record in records.items()
            if record.get("cooldown_until_ms", 0) > now
        }

    def describe(self) -> dict[str, Any]:
        """What every instance shares right now, for `moderation show`: each scope's cooldown, probe, budget
        and limited mark (seconds left), each customer's named scopes, and the slots held."""
        now, records = self.state.read(None)
        scopes, named, slots, instances = [], {}, {}, {}
        for key, record in sorted(records.items()):
            kind, _, customer = key.partition(":")
            if key == rules.INSTANCES:
                instances = {
                    holder: {"seen_s_ago": round((now - entry["seen_ms"]) / 1000, 3), "alone": entry.get("alone", {})}
                    for holder, entry in sorted(record.get("instances", {}).items())
                    if entry["until_ms"] > now
                }
            elif kind == "names":
                named[customer] = sorted(rules.live_names(record, now))
            elif kind == "slots":
                slots[customer] = sum(until > now for until in record.get("holders", {}).values())
            else:
                scope = Scope.load(record)
                budget = scope.budget if scope.budget_until_ms > now else None

                def left(until_ms: int) -> float | None:
                    return round((until_ms - now) / 1000, 3) if until_ms > now else None

                scopes.append(
                    {
                        "scope": key,
                        "cooldown_s": left(scope.cooldown_until_ms),
                        "strikes": scope.strikes,
                        "recovering": scope.recovering,
                        "probe_s": left(scope.probe_until_ms) if scope.probe else None,
                        "budget": "unmetered" if budget == rules.UNMETERED else budget,
                        "budget_precise": scope.precise if budget else None,
                        "limited_s": left(scope.limited_until_ms),
                    }
                )
        return {"scopes": scopes, "named_scopes": named, "slots": slots, "instances": instances}

    def clear(self, keys: Sequence[str] | None) -> list[str]:
        """End the records of `keys` for every instance (every scope and named scope when None; slots and
        the instances record stay, they are held by requests and instances running); returns the keys that
        had something to clear."""
        present = set(self.state.read(None if keys is None else list(keys))[1])
        if keys is None:
            keys = sorted(key for key in present if not key.startswith("slots:") and key != rules.INSTANCES)
        cleared = [key for key in keys if key in present]
        for key in cleared:
            self.state.update(key, lambda record, now: None)
        if cleared:
            log.warning("moderation cleared by hand for every instance: %s", ", ".join(cleared))
        return cleared

    def close(self) -> None:
        """This instance stops: out of the instances record, and the state's connections closed."""
        self.presence.leave()
        close = getattr(self.state, "close", None)
        if close is not None:
            close()

    def _scopes(self, customer: str, handling: ThrottleHandling) -> tuple[int, dict[str, Scope], set[str]]:
        """Now, the scopes a request of `customer` carries, and those of its named scopes that need no refresh
        yet (an answer naming one that lives less than half its time more writes it again)."""
        base = customer_scopes(customer)
        names_key = f"names:{customer}"
        now, records = self.state.read([*base, names_key])
        named = rules.live_names(records.get(names_key), now)
        fresh = rules.live_names(
            records.get(names_key), now, for_ms=int(handling.window_s * 500 * rules.LIMITED_WINDOWS)
        )
        if named:
            now, more = self.state.read(sorted(named))
            records.update(more)
        return now, {name: Scope.load(records.get(name)) for name in [*base, *sorted(named)]}, fresh

    def _change(self, name: str, change: Callable[[Scope, int], Scope]) -> Scope:
        stored = self.state.update(name, lambda record, now: change(Scope.load(record), now).dump())
        return Scope.load(stored)

    def _name(self, ticket: Ticket, names: set[str], handling: ThrottleHandling) -> None:
        ttl_ms = int(handling.window_s * 1000 * rules.LIMITED_WINDOWS)

        def change(record: Record | None, now: int) -> Record:
            return rules.with_names(record, now, names, ttl_ms)

        self.state.update(f"names:{ticket.customer}", change)
        ticket.named |= names

    def _end_probes(self, probes: set[str], holder: str) -> None:
        for scope in list(probes):
            self._change(scope, lambda s, now: rules.end_probe(s, holder))
        if probes:
            self._probes_ended += 1
        probes.clear()

    def _wait(
        self,
        wait: Wait,
        handling: ThrottleHandling,
        start: float,
        budget_s: float,
        keep_alive: Callable[[], None] | None,
    ) -> None:
        seconds = wait.ms / 1000
        if wait.why == "probe":  # the probe may answer any moment: look again soon, at once if it was ours
            seconds = min(seconds, max(min(handling.window_s / 40, 0.1), 0.01))
        if self._clock() - start + seconds > budget_s:
            raise ThrottledError(_gave_up(wait), scope=wait.scope, retry_after_s=wait.ms / 1000)
        step = PROBE_STEP_S if wait.why == "probe" else KEEP_ALIVE_S if keep_alive is not None else seconds
        ended, napped = self._probes_ended, 0.0
        self.stats.waiting_on(wait.why, wait.scope, 1)
        try:
            while seconds > 0 and (wait.why != "probe" or self._probes_ended == ended):
                if keep_alive is not None:
                    keep_alive()
                nap = min(step, seconds)
                self._sleep(nap)
                seconds -= nap
                napped += nap
        finally:
            self.stats.waiting_on(wait.why, wait.scope, -1)
            metrics.waits.labels(wait.why).observe(napped)


def _gave_up(wait: Wait) -> str:
    left = f"{wait.ms / 1000:.1f} s" if wait.ms < 10_000 else f"{wait.ms / 1000:.0f} s"
    why = {
        "cooldown": f"still rate limited by Meta on {wait.scope}: {left} left of its pause",
        "probe": f"still rate limited by Meta on {wait.scope}: another request probes it (for at most {left})",
        "budget": f"the budget learned for {wait.scope} allows the next call in {left}",
        "partition": f"the moderation state is away: {left} left until the other instances see this one away",
    }[wait.why]
    return f"{why}, longer than this request may wait; try again later (the pause is kept, nothing was sent)"
