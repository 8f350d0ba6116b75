"""Every moderation rule, once: pure functions over one scope's record. No I/O, no clock of their own.

The moderator reads records from the state, asks these functions what to do, and hands the same
functions to `ModerationState.update`, which applies them atomically to the stored record.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from motion_meta_cli.config import ThrottleHandling

APP = "app"
UNMETERED = 0
"""A budget meaning "answers carry no usage header": nothing to pace by."""
LIMITED_WINDOWS = 10
"""A learned budget, a throttle's "limited" mark and a named scope each last this many windows."""
PRECISE_FROM_PCT = 50.0
"""From this usage on, a whole-percent reading pins the budget within 2 %."""
MARGIN_PCT = 2.0
"""Answers this close (in % of the window) to its start are not counted towards a reading: Meta may have let
them age out already."""
GROWTH_STEP_PCT = 2.0
"""A learned budget is raised only by steps this large (or when it becomes precise); the error is on the safe side."""
PROBE_MARGIN_S = 1.0
"""A probe's lease outlives its one attempt (connect timeout + the answer's deadline) by this much."""


@dataclass(frozen=True, slots=True)
class Scope:
    """What every instance knows of one scope (`app`, `user:acme`, `buc:42:ads_management`, ...)."""

    cooldown_until_ms: int = 0
    cooldown_started_ms: int = -1
    """When the current run of strikes began; a throttle of a request sent before it is no new strike."""
    strikes: int = 0
    recovering: bool = False
    """A cooldown without an ETA ended or runs: one probe goes first, the others wait for its answer."""
    probe: str = ""
    probe_until_ms: int = 0
    budget: int | None = None
    """Calls per window, learned from usage headers (UNMETERED: none came); None: not learned yet."""
    budget_until_ms: int = 0
    precise: bool = False
    """The budget came from a reading of PRECISE_FROM_PCT or more; a coarse one is approached with spacing."""
    limited_until_ms: int = 0
    """Throttled lately: the budget binds even with pacing off."""

    @classmethod
    def load(cls, record: dict[str, Any] | None) -> Scope:
        """A scope from its stored record (a missing record is a scope nobody has heard of)."""
        if not record:
            return cls()
        fields = {name: record[name] for name in cls.__dataclass_fields__ if name in record}
        return cls(**fields)

    def dump(self) -> dict[str, Any]:
        """The stored record; `expires_ms` tells the backend when nothing in it matters any more."""
        record = asdict(self)
        record["expires_ms"] = max(
            self.cooldown_until_ms, self.probe_until_ms, self.budget_until_ms, self.limited_until_ms
        )
        return record


@dataclass(frozen=True, slots=True)
class Wait:
    """Not yet: `scope` holds the request for `ms` (`why`: cooldown, probe or budget)."""

    scope: str
    ms: int
    why: str


@dataclass(frozen=True, slots=True)
class Probe:
    """The request may go only as the one probe of `scope`."""

    scope: str


@dataclass(frozen=True, slots=True)
class Pause:
    """What a throttle did to its scope."""

    duration_s: float
    strikes: int
    new: bool
    """The throttled request left after the current cooldown began: new information, worth a log line."""
    from_eta: bool
    clamped_from_s: float | None = None
    """Meta's ETA when it was longer than `pause_max_s` and so cut down."""


def blocker(
    scopes: dict[str, Scope], now: int, handling: ThrottleHandling, probes: set[str], share: Share | None = None
) -> Wait | Probe | None:
    """What keeps a request on `scopes` from the send log: the longest cooldown (or, cut off from the
    others, the wait until they see it away), then a recovering scope (or, when pacing, an app budget not
    learned yet) it does not probe. None: nothing."""
    waits = [
        Wait(name, s.cooldown_until_ms - now, "cooldown") for name, s in scopes.items() if s.cooldown_until_ms > now
    ]
    if share is not None and share.wait_ms > 0:
        waits.append(Wait(APP, share.wait_ms, "partition"))
    if waits:
        return max(waits, key=lambda wait: wait.ms)
    for name, scope in scopes.items():
        cold = name == APP and handling.pacing and scope.budget is None
        if (scope.recovering or cold) and name not in probes:
            if scope.probe and scope.probe_until_ms > now:
                return Wait(name, scope.probe_until_ms - now, "probe")
            return Probe(name)
    return None


def take_probe(scope: Scope, now: int, holder: str, ttl_ms: int) -> Scope:
    """`holder` becomes the probe unless a live one exists."""
    if scope.probe and scope.probe_until_ms > now:
        return scope
    return replace(scope, probe=holder, probe_until_ms=now + ttl_ms)


def end_probe(scope: Scope, holder: str) -> Scope:
    """The probe goes back if `holder` still has it."""
    return replace(scope, probe="", probe_until_ms=0) if scope.probe == holder else scope


def probe_ttl_ms(attempt_s: float) -> int:
    """A probe lives as long as the one attempt it stands for (`RetryConfig.attempt_s`), and a margin."""
    return int((attempt_s + PROBE_MARGIN_S) * 1000)


@dataclass(frozen=True, slots=True)
class Limit:
    """How a send log admits: at most `limit` sends per window (None: no ceiling), and from `spacing_from`
    sends on, one per `spacing_ms`; `record`: log this send in it (else it is only counted)."""

    log: str
    limit: int | None = None
    spacing_from: int = 0
    spacing_ms: int = 0
    record: bool = True


def answered_log(name: str) -> str:
    """The log of a metered scope's answers, by when they came back: those back before a request left were
    surely counted by Meta before it, so they are what a reading of that request can be divided by."""
    return f"{name}:answered"


INSTANCES = "instances"
"""The record of every instance seen lately: id -> when it was last seen (its heartbeat), and the sends it
made alone (in-process, so in no shared log) that are still in the window."""
QUIET_BEATS = 3
"""An instance whose heartbeat is this many periods old is away: partitioned, stopped or dead."""
COUNTED_WINDOWS = 2
"""An instance counts this many windows after its last heartbeat. One would not do: an instance cut off
spends little until its sends from before the cut leave the window, a window later, and its share must
still be left out for it then."""


def heartbeat_s(handling: ThrottleHandling) -> float:
    """How often an instance announces itself: every 5 s, more often for a short window."""
    return min(5.0, handling.window_s / 40)


@dataclass(frozen=True, slots=True)
class Share:
    """What of each budget an instance may fill: `fraction` of it, less the sends made `alone` (outside the
    shared logs) that are still in the window; `wait_ms`: not before the others can have noticed it is away."""

    fraction: float = 1.0
    alone: dict[str, int] = field(default_factory=dict)
    wait_ms: int = 0


def beat(record: dict[str, Any] | None, now: int, me: str, window_ms: int, alone: dict[str, int]) -> dict[str, Any]:
    """`me` seen now, with what it sent alone; entries that no longer count are dropped."""
    entries = {i: e for i, e in (record or {}).get("instances", {}).items() if e["until_ms"] > now and i != me}
    entries[me] = {"seen_ms": now, "until_ms": now + COUNTED_WINDOWS * window_ms}
    sent = {log: n for log, n in alone.items() if n > 0 and is_metered(log) and not log.endswith(":answered")}
    if sent:
        entries[me]["alone"] = sent
    return {"instances": entries, "expires_ms": max(e["until_ms"] for e in entries.values())}


def leave(record: dict[str, Any] | None, now: int, me: str) -> dict[str, Any] | None:
    """`me` stopped: it no longer counts, nor holds a share."""
    entries = {i: e for i, e in (record or {}).get("instances", {}).items() if e["until_ms"] > now and i != me}
    return {"instances": entries, "expires_ms": max(e["until_ms"] for e in entries.values())} if entries else None


def share(record: dict[str, Any] | None, now: int, me: str, *, partitioned: bool, handling: ThrottleHandling) -> Share:
    """The share of every budget `me` may fill, from the instances seen lately (`record`, as last read from
    the shared state).

    Cut off from the others, an instance fills 1/n of the budgets it knew, n counting itself and the others
    as its last heartbeat saw them, and only once they can have seen its heartbeat stop. Connected, it
    leaves out the shares of the away instances (they may fill theirs alone), and every send made alone
    that is still in the window: those are in no shared log. So the instances together stay within each
    budget, cut off or not, for as long as the others count the one cut off (COUNTED_WINDOWS), except for
    what the others took beyond their share in the heartbeats before they saw it away."""
    entries = (record or {}).get("instances", {})
    quiet_ms = int(QUIET_BEATS * heartbeat_s(handling) * 1000)
    if partitioned:
        mine = entries.get(me)
        last_seen = mine["seen_ms"] if mine else now
        n = len({i for i, e in entries.items() if e["until_ms"] > last_seen} | {me})
        return Share(1 / n, {}, max(0, last_seen + quiet_ms - now) if n > 1 else 0)
    live = {i: e for i, e in entries.items() if e["until_ms"] > now}
    away = sum(1 for i, e in live.items() if i != me and e["seen_ms"] <= now - quiet_ms)
    sent: Counter[str] = Counter()
    for entry in live.values():
        sent.update(entry.get("alone", {}))
    n = len(live.keys() | {me})
    return Share((n - away) / n, dict(sent))


def limit(name: str, scope: Scope, now: int, handling: ThrottleHandling, share: Share | None = None) -> Limit:
    """The send-log rule of a metered scope: its learned budget binds while pacing, once throttled, and
    whenever the instances share it out (see `share`). While the budget is only a coarse lower bound, sends
    above the threshold are spaced at window / budget, so each new reading can refine it before the top is
    reached."""
    share = share or Share()
    budget = scope.budget if scope.budget_until_ms > now else None
    shared = share.fraction < 1 or share.alone.get(name, 0) > 0
    binding = budget is not None and budget != UNMETERED and (handling.pacing or scope.limited_until_ms > now or shared)
    if not binding or budget is None:
        return Limit(name)
    budget = max(1, math.floor(budget * share.fraction) - share.alone.get(name, 0))
    if scope.precise:
        return Limit(name, budget, 0, 0)
    spacing_from = max(1, math.floor(budget * handling.usage_threshold_pct / 100))
    return Limit(name, budget, spacing_from, int(handling.counted_window_s * 1000) // budget)


def is_metered(name: str) -> bool:
    """Scopes whose usage headers give a percentage, so that a budget can be learned: the app and business use cases."""
    return name == APP or name.startswith("buc:")


def one_at_a_time(scopes: dict[str, Scope], now: int, handling: ThrottleHandling) -> bool:
    """Whether a process admits its requests on `scopes` one after the other, each seeing what the answers
    before it taught: while reacting only (pacing off: a throttle is the only stop, so it must be seen
    before the next send), and while a metered scope has no budget learned yet (nor known to be
    unmetered). Otherwise the send logs pace them and they go through side by side."""
    return not handling.pacing or any(
        is_metered(name) and scope.budget_until_ms <= now for name, scope in scopes.items()
    )


def estimate_budget(sends: int, usage_pct: float) -> int | None:
    """Calls per window, from `sends` of ours that a reading counted and the percentage it reported.

    Meta reports whole percent. Below PRECISE_FROM_PCT the bound 100·n/(u+1) is used (it only grows as
    readings come back: the ramp-up); from there on 100·n/u, exact when the percentage is truncated.
    Other traffic on the same scope raises u and so lowers the estimate: the error is on the safe side.
    """
    if sends <= 0 or usage_pct < 0:
        return None
    if usage_pct >= PRECISE_FROM_PCT:
        return max(1, math.floor(100 * sends / usage_pct))
    return max(1, math.floor(100 * sends / (usage_pct + 1)))


def after_success(scope: Scope, holder: str) -> Scope:
    """An answer that was no throttle: strikes and recovery end, and the probe goes back."""
    scope = end_probe(scope, holder)
    if scope.strikes or scope.recovering:
        scope = replace(scope, strikes=0, recovering=False, cooldown_started_ms=-1)
    return scope


def learn(scope: Scope, now: int, *, usage_pct: float | None, counted: int, handling: ThrottleHandling) -> Scope:
    """A usage reading of a metered scope teaches its budget (`counted`: our sends the reading surely
    includes). A budget only grows while valid, and is refreshed once a window; an answer without a
    reading makes an unknown budget UNMETERED, which never replaces a learned one."""
    ttl_ms = int(handling.window_s * LIMITED_WINDOWS * 1000)
    current = scope.budget if scope.budget_until_ms > now else None
    if usage_pct is None:
        return replace(scope, budget=UNMETERED, budget_until_ms=now + ttl_ms) if current is None else scope
    estimate = estimate_budget(counted, usage_pct)
    if estimate is None:
        return scope
    precise = usage_pct >= PRECISE_FROM_PCT
    # Only a step of GROWTH_STEP_PCT or more is worth a shared write: during a ramp every answer raises the
    # estimate a little, and many instances writing one record at once mostly collide.
    step = current * (1 + GROWTH_STEP_PCT / 100) if current else 0
    grows = current is None or current == UNMETERED or estimate >= step or (precise and not scope.precise)
    if not grows and scope.budget_until_ms - now > ttl_ms - handling.window_s * 1000:
        return scope
    merged = estimate if current is None or current == UNMETERED else max(current, estimate)
    return replace(scope, budget=merged, budget_until_ms=now + ttl_ms, precise=precise or scope.precise)


def pause_s(strikes: int, eta_s: float | None, handling: ThrottleHandling, jitter: float) -> tuple[float, float | None]:
    """How long a throttle pauses its scope, and Meta's ETA when it was clamped to `pause_max_s`.

    With an ETA exactly that long (probing early lengthens Meta's block), at most `pause_max_s`. Without one
    from the floor, doubling per strike up to the cap, with a little upward `jitter` (0–1): a pause shorter
    than the floor invites another throttle.
    """
    if eta_s is not None and eta_s > 0:
        if eta_s > handling.max_s:
            return handling.max_s, eta_s
        return eta_s, None
    base = min(handling.cap_s, handling.floor_s * 2 ** max(strikes - 1, 0))
    return min(handling.cap_s, base * (1 + jitter / 4)), None


def after_throttle(
    scope: Scope, now: int, *, sent_ms: int, holder: str, eta_s: float | None, handling: ThrottleHandling, jitter: float
) -> tuple[Scope, Pause]:
    """Meta throttled a request on this scope that left at `sent_ms`: a strike if it left after the current
    cooldown began, a cooldown only ever extended, recovery when there is no ETA, and the scope limited."""
    new = sent_ms > scope.cooldown_started_ms
    strikes = scope.strikes + 1 if new else max(scope.strikes, 1)
    duration_s, clamped = pause_s(strikes, eta_s, handling, jitter)
    from_eta = eta_s is not None and eta_s > 0
    scope = replace(
        end_probe(scope, holder),
        strikes=strikes,
        cooldown_started_ms=now if new else scope.cooldown_started_ms,
        cooldown_until_ms=max(scope.cooldown_until_ms, now + int(duration_s * 1000)),
        recovering=scope.recovering or not from_eta,
        limited_until_ms=max(scope.limited_until_ms, now + int(handling.window_s * LIMITED_WINDOWS * 1000)),
    )
    return scope, Pause(duration_s, strikes, new, from_eta, clamped)


def with_names(record: dict[str, Any] | None, now: int, names: set[str], ttl_ms: int) -> dict[str, Any]:
    """A customer's named scopes (`names:<customer>`: scope -> until) with `names` added or refreshed."""
    until = {n: t for n, t in (record or {}).get("scopes", {}).items() if t > now}
    until.update(dict.fromkeys(names, now + ttl_ms))
    return {"scopes": until, "expires_ms": max(until.values(), default=now)}


def live_names(record: dict[str, Any] | None, now: int, *, for_ms: int = 0) -> set[str]:
    """The named scopes of a `names:<customer>` record that will not expire within `for_ms`."""
    return {name for name, until in (record or {}).get("scopes", {}).items() if until > now + for_ms}
