"""Shared moderation state: what every instance must agree on, per scope (`app`, `user:acme`, ...).

- a **cooldown**: no requests on the scope until it ends; only ever extended, never shortened;
- **strikes**: consecutive throttles without an ETA, which grow the next pause; a throttle counts as a
  new strike only if its request left after the current cooldown began (a burst already in flight
  when Meta said stop is one strike, not a hundred);
- **recovery**: set when a cooldown without an ETA starts, cleared by the first success; while set,
  one probe goes first and the others wait for its answer;
- a **send log**: when each of our requests on the scope left, for a sliding-window budget;
- a **capacity**: calls per window the scope allows, learned from usage headers, and a *limited*
  flag (the scope was throttled recently), which turns the budget on even when pacing is off;
- **slots**: leases that cap one customer's requests in flight across instances.

Every time is in milliseconds on the state's own clock (Redis's server clock, the wall clock for
SQLite, an injected clock in memory), so instances never compare their own clocks.
`LocalState` is the in-process implementation: the fallback when the cache is unreachable, and the
reference the shared implementations are tested against.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class AdmitRule:
    """How the send log admits a request on a scope."""

    window_ms: int
    """How long a send stays counted (the usage window plus the guard)."""
    pacing: bool
    """Enforce the learned budget before any throttle (off: only once the scope has been throttled)."""
    threshold_pct: float
    """Above this share of a budget not yet pinned by a reading, sends are spaced at window / capacity."""


@dataclass(frozen=True, slots=True)
class Hold:
    """Why a request must wait: the longest cooldown among its scopes, and scopes in recovery."""

    wait_ms: int
    scope: str | None
    recovering: tuple[str, ...] = ()
    budget_known: bool = True
    """False while the first scope (the app) has no learned capacity: one request goes first to learn it."""
    epoch: int | None = None
    """Which version of the state this hold was read from, where the backend serves holds from a cache
    (SQLite); pass it to `admit(since=...)`, which then refuses if the state moved on since."""


class ModerationState(Protocol):
    """The operations moderation needs; each is atomic across every instance sharing the state."""

    def now_ms(self) -> int:
        """The state's clock."""
        ...

    def hold(self, scopes: Sequence[str]) -> Hold:
        """The longest cooldown remaining among `scopes`, which are recovering, and whether the first
        scope's budget is known."""
        ...

    def admit(self, scope: str, rule: AdmitRule, *, record: bool = True, since: int | None = None) -> tuple[int, int]:
        """(wait_ms, now_ms): 0 means admitted (and logged when `record`); else how long until a slot frees.
        With `since` (a hold's epoch), a backend whose holds may be cached admits nothing if the state
        changed after that hold was read: it asks for a 1 ms wait, after which the caller holds again."""
        ...

    def observe_success(self, scope: str, sent_ms: int, window_ms: int, margin_ms: int, *, count: bool = True) -> int:
        """Log a success that left at `sent_ms`, clear strikes and recovery, and (when `count`) return how many earlier
        successes had come back by `sent_ms` and left after sent_ms - window + margin: calls Meta surely
        counted, within its window, before this one (the margin absorbs the time a request takes to
        reach Meta)."""
        ...

    def raise_capacity(self, scope: str, capacity: int, ttl_ms: int, *, precise: bool) -> int:
        """Merge a capacity (`merged_capacity`), valid for `ttl_ms`; `precise` when a reading pinned it.
        Returns the stored value."""
        ...

    def strike(self, scope: str, sent_ms: int) -> tuple[int, bool]:
        """Count a throttle: a new strike if the request left after the current cooldown began.
        Returns (strikes, whether this one was new)."""
        ...

    def pause(self, scope: str, duration_ms: int, *, recovering: bool, limited_ms: int, relearn_window_ms: int) -> bool:
        """Extend the cooldown to now + duration (never shorten), mark recovery and the scope limited for
        `limited_ms`. With `relearn_window_ms`, and a budget learned from readings, set the capacity to the
        successes that left within that window: Meta just proved the budget is no larger. True if the
        cooldown was extended."""
        ...

    def try_probe(self, scope: str, ttl_ms: int) -> str | None:
        """Become the one request that probes a recovering scope; returns a holder id or None."""
        ...

    def end_probe(self, scope: str, holder: str) -> None:
        """Give the probe up (its answer has been recorded)."""
        ...

    def acquire_slots(
        self, names: Sequence[str], limit: int, lease_ms: int, *, releasing: Sequence[tuple[str, str]] = ()
    ) -> list[str | None]:
        """Return the `releasing` (name, holder) leases, then take one of `limit` leases on each of `names`
        (each on its own, in order), in one atomic step where the backend allows: a holder id for each
        lease taken, None where all were taken."""
        ...

    def active_cooldowns(self) -> dict[str, float]:
        """Every scope in a cooldown, with its remaining seconds (for display)."""
        ...


def new_holder() -> str:
    """A unique id for a probe or slot holder."""
    return secrets.token_hex(8)


UNMETERED = 0
"""A capacity meaning "answers came back without usage headers": nothing to pace by."""


def merged_capacity(current: int | None, new: int) -> int:
    """Learned capacities only grow within their TTL; UNMETERED never replaces a learned one."""
    if new == UNMETERED:
        return UNMETERED if current is None else current
    return new if current is None or current == UNMETERED else max(current, new)


def admission_wait(
    log: Sequence[int], now: int, rule: AdmitRule, capacity: int | None, limited: bool, precise: bool
) -> int:
    """The pure admission rule every implementation follows. `log` is the sorted sends still in the window.

    No ceiling while pacing is off and the scope has not been throttled, or while no budget has been
    learned (unknown, or answers carry no usage headers); else at most the learned capacity within the
    window. While the budget is only a coarse lower bound, sends above the threshold are spaced at
    window / capacity, so each new reading can refine it before the top is reached.
    """
    if capacity is None or capacity == UNMETERED or (not rule.pacing and not limited):
        return 0
    if len(log) >= capacity:
        # The entry whose ageing out brings the count below the ceiling.
        return max(1, log[len(log) - capacity] + rule.window_ms - now)
    if not precise and log and len(log) >= math.floor(capacity * rule.threshold_pct / 100):
        return max(0, log[-1] + rule.window_ms // capacity - now)
    return 0


@dataclass
class _Scope:
    cooldown_until: int = 0
    cooldown_started: int = -1
    strikes: int = 0
    recovering: bool = False
    limited_until: int = 0
    capacity: int | None = None
    capacity_until: int = 0
    precise: bool = False
    probe: tuple[str, int] | None = None
    sends: deque[int] = field(default_factory=deque)
    successes: deque[tuple[int, int]] = field(default_factory=deque)  # (came back, left), by came back


class LocalState:
    """`ModerationState` in this process's memory."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._scopes: dict[str, _Scope] = {}
        self._slots: dict[str, dict[str, int]] = {}
        self._lock = threading.Lock()

    def now_ms(self) -> int:
        """Milliseconds on the injected clock."""
        return int(self._clock() * 1000)

    def _scope(self, name: str) -> _Scope:
        return self._scopes.setdefault(name, _Scope())

    def hold(self, scopes: Sequence[str]) -> Hold:
        """The longest cooldown remaining among `scopes`, and which are recovering."""
        now = self.now_ms()
        wait, which, recovering = 0, None, []
        with self._lock:
            for name in scopes:
                scope = self._scopes.get(name)
                if scope is None:
                    continue
                if scope.cooldown_until - now > wait:
                    wait, which = scope.cooldown_until - now, name
                if scope.recovering:
                    recovering.append(name)
            first = self._scopes.get(scopes[0]) if scopes else None
            known = first is not None and first.capacity is not None and first.capacity_until > now
        return Hold(wait, which, tuple(recovering), known)

    def admit(self, scope: str, rule: AdmitRule, *, record: bool = True, since: int | None = None) -> tuple[int, int]:
        """Admit against the sliding-window log (see `admission_wait`); holds are never cached here."""
        now = self.now_ms()
        with self._lock:
            state = self._scope(scope)
            while state.sends and state.sends[0] <= now - rule.window_ms:
                state.sends.popleft()
            capacity = state.capacity if state.capacity_until > now else None
            limited = state.limited_until > now
            wait = admission_wait(state.sends, now, rule, capacity, limited, state.precise)
            if wait == 0 and record:
                state.sends.append(now)
        return wait, now

    def observe_success(self, scope: str, sent_ms: int, window_ms: int, margin_ms: int, *, count: bool = True) -> int:
        """Log the success; clear strikes and recovery; count earlier successes that surely counted."""
        with self._lock:
            state = self._scope(scope)
            state.strikes, state.recovering, state.cooldown_started = 0, False, -1
            now = self.now_ms()
            while state.successes and state.successes[0][0] <= now - 2 * window_ms:
                state.successes.popleft()
            low = sent_ms - window_ms + margin_ms
            before = sum(1 for back, left in state.successes if back <= sent_ms and left > low) if count else 0
            state.successes.append((now, sent_ms))
            return before

    def raise_capacity(self, scope: str, capacity: int, ttl_ms: int, *, precise: bool) -> int:
        """Keep the larger capacity, valid for `ttl_ms` from now."""
        now = self.now_ms()
        with self._lock:
            state = self._scope(scope)
            current = state.capacity if state.capacity_until > now else None
            state.precise = (precise or (state.precise and current is not None)) and capacity != UNMETERED
            state.capacity = merged_capacity(current, capacity)
            state.capacity_until = max(state.capacity_until, now + ttl_ms)
            return state.capacity

    def strike(self, scope: str, sent_ms: int) -> tuple[int, bool]:
        """A new strike unless the request left before the current cooldown began."""
        now = self.now_ms()
        with self._lock:
            state = self._scope(scope)
            new = sent_ms > state.cooldown_started
            if new:
                state.strikes += 1
                state.cooldown_started = now
            return max(state.strikes, 1), new

    def pause(self, scope: str, duration_ms: int, *, recovering: bool, limited_ms: int, relearn_window_ms: int) -> bool:
        """Extend-only cooldown, recovery and limited flags, capacity relearned from successes."""
        now = self.now_ms()
        with self._lock:
            state = self._scope(scope)
            state.recovering = state.recovering or recovering
            state.limited_until = max(state.limited_until, now + limited_ms)
            learned = bool(state.capacity) and state.capacity_until > now
            if relearn_window_ms > 0 and learned:
                succeeded = sum(1 for _, left in state.successes if left > now - relearn_window_ms)
                if succeeded > 0:
                    state.capacity, state.precise = succeeded, True
                    state.capacity_until = max(state.capacity_until, now + limited_ms)
            if now + duration_ms <= state.cooldown_until:
                return False
            state.cooldown_until = now + duration_ms
            return True

    def try_probe(self, scope: str, ttl_ms: int) -> str | None:
        """Take the probe of `scope` if nobody holds a live one."""
        now = self.now_ms()
        with self._lock:
            state = self._scope(scope)
            if state.probe is not None and state.probe[1] > now:
                return None
            holder = new_holder()
            state.probe = (holder, now + ttl_ms)
            return holder

    def end_probe(self, scope: str, holder: str) -> None:
        """Release the probe if `holder` still has it."""
        with self._lock:
            state = self._scope(scope)
            if state.probe is not None and state.probe[0] == holder:
                state.probe = None

    def acquire_slots(
        self, names: Sequence[str], limit: int, lease_ms: int, *, releasing: Sequence[tuple[str, str]] = ()
    ) -> list[str | None]:
        """One of `limit` leases on each of `names`, after returning `releasing`."""
        now = self.now_ms()
        taken: list[str | None] = []
        with self._lock:
            for released, old in releasing:
                self._slots.get(released, {}).pop(old, None)
            for name in names:
                holders = {h: until for h, until in self._slots.get(name, {}).items() if until > now}
                holder = new_holder() if len(holders) < limit else None
                if holder is not None:
                    holders[holder] = now + lease_ms
                self._slots[name] = holders
                taken.append(holder)
        return taken

    def active_cooldowns(self) -> dict[str, float]:
        """Scopes in a cooldown and their remaining seconds."""
        now = self.now_ms()
        with self._lock:
            return {n: (s.cooldown_until - now) / 1000 for n, s in self._scopes.items() if s.cooldown_until > now}
