"""The state moderation shares between instances: three atomic primitives, and the in-process backend.

A *record* is a small JSON object under a key (`app`, `user:acme`, `names:acme`, `slots:acme`); its
`expires_ms` says when the backend may forget it. A *send log* is a sliding window of times, one per
request that left. Every time is in milliseconds on the state's own clock (Redis's, the wall clock for
SQLite, an injected clock in memory), so instances never compare their own clocks. The rules that
decide what to write live in `rules.py`; a backend only stores.
"""

from __future__ import annotations

import bisect
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from motion_meta_cli.moderation.rules import Limit

Record = dict[str, Any]
Change = Callable[[Record | None, int], Record | None]
"""Given the stored record (None: none) and the state's now, the record to store (None: delete it)."""


@dataclass(frozen=True, slots=True)
class Admission:
    """What the send logs said: `wait_ms` 0 means admitted (and logged where the limit says `record`); else
    how long until it could be. `counted[i]`: entries of log i from `margin_ms` after the window's start on."""

    wait_ms: int
    now_ms: int
    counted: tuple[int, ...]


def holder_id() -> str:
    """A unique id for whoever takes a probe or slot, naming its host and process (`moderation show`, tests)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class ModerationState(Protocol):
    """Atomic primitives, each safe across every instance sharing the state."""

    def read(self, keys: Sequence[str] | None) -> tuple[int, dict[str, Record]]:
        """Now, and the live records among `keys` (every live record when None)."""
        ...

    def update(self, key: str, change: Change) -> Record | None:
        """Store `change(current, now)` under `key` atomically (None deletes it); returns what was stored."""
        ...

    def admit(self, limits: Sequence[Limit], window_ms: int, margin_ms: int) -> Admission:
        """Log one send in every log of `limits` that records, if each admits it (fewer than `limit` sends in
        the window, and at least `spacing_ms` after the last one once `spacing_from` are in it); else none."""
        ...


def admission(
    logs: Sequence[list[int]], limits: Sequence[Limit], now: int, window_ms: int, margin_ms: int
) -> Admission:
    """The send-log arithmetic for backends that hold logs as sorted lists (in memory; SQLite and Lua
    do the same in their own terms). `logs` must already be pruned to the window."""
    wait = 0
    for log, rule in zip(logs, limits, strict=True):
        if rule.limit is not None and len(log) >= rule.limit:
            wait = max(wait, log[len(log) - rule.limit] + window_ms - now, 1)
        elif rule.spacing_ms and log and len(log) >= rule.spacing_from:
            wait = max(wait, log[-1] + rule.spacing_ms - now)
    counted = tuple(len(log) - bisect.bisect_right(log, now - window_ms + margin_ms) for log in logs)
    return Admission(wait, now, counted)


class LocalState:
    """`ModerationState` in this process's memory: the fallback while the shared one is away, and a
    test double with an injected clock."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._records: dict[str, Record] = {}
        self._logs: dict[str, list[int]] = {}
        self._lock = threading.Lock()

    def _now(self) -> int:
        return int(self._clock() * 1000)

    def read(self, keys: Sequence[str] | None) -> tuple[int, dict[str, Record]]:
        """Now and the live records among `keys`."""
        now = self._now()
        with self._lock:
            wanted = list(self._records) if keys is None else keys
            found = {key: self._records[key] for key in wanted if key in self._records}
        return now, {key: record for key, record in found.items() if record.get("expires_ms", 0) > now}

    def update(self, key: str, change: Change) -> Record | None:
        """Apply `change` under the lock."""
        now = self._now()
        with self._lock:
            current = self._records.get(key)
            new = change(current if current and current.get("expires_ms", 0) > now else None, now)
            if new is None or new.get("expires_ms", 0) <= now:
                self._records.pop(key, None)
            else:
                self._records[key] = new
            return new

    def load(self, records: dict[str, Record], logs: dict[str, list[int]]) -> None:
        """Start again from `records` and `logs` (sorted send times): the fallback, from what the shared state
        last said and what this instance sent."""
        with self._lock:
            self._records, self._logs = dict(records), {log: list(times) for log, times in logs.items()}

    def admit(self, limits: Sequence[Limit], window_ms: int, margin_ms: int) -> Admission:
        """Admit against the in-memory logs."""
        now = self._now()
        with self._lock:
            logs = [self._logs.setdefault(rule.log, []) for rule in limits]
            for log in logs:
                del log[: bisect.bisect_right(log, now - window_ms)]
            result = admission(logs, limits, now, window_ms, margin_ms)
            if result.wait_ms <= 0:
                for log, rule in zip(logs, limits, strict=True):
                    if rule.record:
                        log.append(now)
        return result
