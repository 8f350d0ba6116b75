"""`ModerationState` in the SQLite cache: shared by every process on one machine, one transaction per
operation (BEGIN IMMEDIATE), timed by the wall clock they all share."""

from __future__ import annotations

import math
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from typing import cast

from motion_meta_cli.moderation.state import UNMETERED, AdmitRule, Hold, merged_capacity, new_holder
from motion_meta_cli.storage.sqlite_cache import SQLiteCache

PRUNE_SHARE = 1 / 64
"""While no budget binds the send log is not read; this share of admissions prunes it."""

_HoldRow = tuple[int, bool, int | None, int]
"""What a hold needs of a scope's row: until_ms, recovering, capacity, capacity_until."""
_COLUMNS = "until_ms, started, strikes, recovering, limited_until, capacity, capacity_until, precise, sends"
_ROW = f"SELECT {_COLUMNS}, (SELECT n FROM mod_epoch WHERE id = 0) AS epoch FROM mod_scopes"


class SQLiteState:
    """Moderation in `cache.db` (tables `mod_*`)."""

    def __init__(self, cache: SQLiteCache, clock: Callable[[], float] = time.time) -> None:
        self._db = cache.database
        self._clock = clock
        self._cache_lock = threading.Lock()
        self._epoch: int | None = None
        self._relevant: dict[str, _HoldRow] = {}
        """What holds need of every scope that could hold a request back, as of `_epoch` (any other scope
        is clear)."""

    def now_ms(self) -> int:
        """Wall-clock milliseconds."""
        return int(self._clock() * 1000)

    @staticmethod
    def _row(conn: sqlite3.Connection, scope: str) -> sqlite3.Row:
        row = conn.execute(_ROW + " WHERE scope = ?", (scope,)).fetchone()
        if row is None:  # first use of the scope: a row of defaults
            conn.execute("INSERT INTO mod_scopes (scope) VALUES (?)", (scope,))
            row = conn.execute(_ROW + " WHERE scope = ?", (scope,)).fetchone()
        return cast(sqlite3.Row, row)

    def hold(self, scopes: Sequence[str]) -> Hold:
        """Longest cooldown, recovering scopes, whether the first scope's budget is known.

        Served from memory while the state's epoch is the one it was read at: every scope that could
        hold a request back (in a cooldown, recovering, or with a capacity) is read at once, so any
        other scope is known to be clear. `admit` with the hold's epoch checks, in its own transaction,
        that the epoch has not moved before admitting anything. A hold with something in the way is
        always read fresh, since it decides how long to wait.
        """
        now = self.now_ms()
        with self._cache_lock:
            epoch, relevant = self._epoch, self._relevant
        if epoch is not None:
            hold = _hold(scopes, relevant, now, epoch)
            if not hold.wait_ms and not hold.recovering and hold.budget_known:
                return hold
        epoch, relevant = self._load(now)
        return _hold(scopes, relevant, now, epoch)

    def _load(self, now: int) -> tuple[int, dict[str, _HoldRow]]:
        # One statement, so the epoch and the rows come from the same snapshot. A cooldown that has ended
        # stays irrelevant: only an update (which moves the epoch) can start another.
        relevant: dict[str, _HoldRow] = {}
        epoch = 0
        query = (
            "SELECT 0, 0, NULL, 0, NULL, n FROM mod_epoch WHERE id = 0 UNION ALL "
            "SELECT until_ms, recovering, capacity, capacity_until, scope, NULL FROM mod_scopes "
            "WHERE until_ms > ? OR recovering = 1 OR capacity IS NOT NULL"
        )
        for row in self._db.connection().execute(query, (now,)):
            if row[4] is None:
                epoch = int(row[5])
            else:
                relevant[str(row[4])] = (int(row[0]), bool(row[1]), row[2], int(row[3]))
        with self._cache_lock:
            if self._epoch is None or epoch >= self._epoch:  # epochs only grow: never go back to an older one
                self._epoch, self._relevant = epoch, relevant
        return epoch, relevant

    def _forget(self) -> None:
        with self._cache_lock:
            self._epoch, self._relevant = None, {}

    def admit(self, scope: str, rule: AdmitRule, *, record: bool = True, since: int | None = None) -> tuple[int, int]:
        """Admit against the shared send log (the rule of `admission_wait`, in SQL); with `since`, only if
        the epoch is still that one (else a 1 ms wait and the cached holds are dropped)."""
        now = self.now_ms()
        with self._db.transaction() as conn:
            row = self._row(conn, scope)
            if since is not None and row["epoch"] != since:
                self._forget()
                return 1, now
            capacity = row["capacity"] if row["capacity_until"] > now else None
            limited = row["limited_until"] > now
            wait = 0
            if capacity and (rule.pacing or limited):
                # `sends` is kept by triggers on mod_sends: counting never walks the log.
                pruned = conn.execute(
                    "DELETE FROM mod_sends WHERE scope = ? AND sent <= ?", (scope, now - rule.window_ms)
                ).rowcount
                count = row["sends"] - pruned
                if count >= capacity:
                    (frees,) = conn.execute(
                        "SELECT sent FROM mod_sends WHERE scope = ? ORDER BY sent LIMIT 1 OFFSET ?",
                        (scope, count - capacity),
                    ).fetchone()
                    wait = max(1, frees + rule.window_ms - now)
                elif not row["precise"] and count and count >= math.floor(capacity * rule.threshold_pct / 100):
                    (last,) = conn.execute("SELECT MAX(sent) FROM mod_sends WHERE scope = ?", (scope,)).fetchone()
                    wait = max(0, last + rule.window_ms // capacity - now)
            elif record and random.random() < PRUNE_SHARE:
                # No budget binds: only prune now and then, the log is not read.
                conn.execute("DELETE FROM mod_sends WHERE scope = ? AND sent <= ?", (scope, now - rule.window_ms))
            if wait == 0 and record:
                conn.execute("INSERT INTO mod_sends (scope, sent) VALUES (?, ?)", (scope, now))
        return wait, now

    def observe_success(self, scope: str, sent_ms: int, window_ms: int, margin_ms: int, *, count: bool = True) -> int:
        """Log the success; clear strikes and recovery; count earlier successes that surely counted."""
        now = self.now_ms()
        low = sent_ms - window_ms + margin_ms
        self._forget()  # this very change moves the epoch: no use checking the cache against it
        with self._db.transaction() as conn:
            self._row(conn, scope)
            conn.execute("UPDATE mod_scopes SET strikes = 0, started = -1, recovering = 0 WHERE scope = ?", (scope,))
            conn.execute("DELETE FROM mod_ok WHERE scope = ? AND back <= ?", (scope, now - 2 * window_ms))
            (before,) = (
                conn.execute(
                    "SELECT COUNT(*) FROM mod_ok WHERE scope = ? AND back <= ? AND left_ms > ?", (scope, sent_ms, low)
                ).fetchone()
                if count
                else (0,)
            )
            conn.execute("INSERT INTO mod_ok (scope, back, left_ms) VALUES (?, ?, ?)", (scope, now, sent_ms))
        return int(before)

    def raise_capacity(self, scope: str, capacity: int, ttl_ms: int, *, precise: bool) -> int:
        """Merge a learned capacity."""
        now = self.now_ms()
        self._forget()  # this very change moves the epoch: no use checking the cache against it
        with self._db.transaction() as conn:
            row = self._row(conn, scope)
            current = row["capacity"] if row["capacity_until"] > now else None
            merged = merged_capacity(current, capacity)
            keep = (precise or (bool(row["precise"]) and current is not None)) and capacity != UNMETERED
            conn.execute(
                "UPDATE mod_scopes SET capacity = ?, capacity_until = ?, precise = ? WHERE scope = ?",
                (merged, max(row["capacity_until"], now + ttl_ms), int(keep), scope),
            )
        return merged

    def strike(self, scope: str, sent_ms: int) -> tuple[int, bool]:
        """Count a throttle (new only for requests that left after the cooldown began)."""
        now = self.now_ms()
        with self._db.transaction() as conn:
            row = self._row(conn, scope)
            new = sent_ms > row["started"]
            strikes = row["strikes"] + 1 if new else row["strikes"]
            if new:
                conn.execute("UPDATE mod_scopes SET strikes = ?, started = ? WHERE scope = ?", (strikes, now, scope))
        return max(strikes, 1), new

    def pause(self, scope: str, duration_ms: int, *, recovering: bool, limited_ms: int, relearn_window_ms: int) -> bool:
        """Extend-only cooldown, flags, and the capacity relearned from successes."""
        now = self.now_ms()
        self._forget()  # this very change moves the epoch: no use checking the cache against it
        with self._db.transaction() as conn:
            row = self._row(conn, scope)
            conn.execute(
                "UPDATE mod_scopes SET recovering = MAX(recovering, ?), limited_until = MAX(limited_until, ?) "
                "WHERE scope = ?",
                (int(recovering), now + limited_ms, scope),
            )
            learned = bool(row["capacity"]) and row["capacity_until"] > now
            if relearn_window_ms > 0 and learned:
                (succeeded,) = conn.execute(
                    "SELECT COUNT(*) FROM mod_ok WHERE scope = ? AND left_ms > ?", (scope, now - relearn_window_ms)
                ).fetchone()
                if succeeded:
                    conn.execute(
                        "UPDATE mod_scopes SET capacity = ?, precise = 1, capacity_until = MAX(capacity_until, ?) "
                        "WHERE scope = ?",
                        (succeeded, now + limited_ms, scope),
                    )
            if now + duration_ms <= row["until_ms"]:
                return False
            conn.execute("UPDATE mod_scopes SET until_ms = ? WHERE scope = ?", (now + duration_ms, scope))
            return True

    def try_probe(self, scope: str, ttl_ms: int) -> str | None:
        """Become the probe of `scope` unless a live one exists."""
        now, holder = self.now_ms(), new_holder()
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM mod_probes WHERE scope = ? AND expires <= ?", (scope, now))
            cur = conn.execute(
                "INSERT OR IGNORE INTO mod_probes (scope, holder, expires) VALUES (?, ?, ?)",
                (scope, holder, now + ttl_ms),
            )
            return holder if cur.rowcount == 1 else None

    def end_probe(self, scope: str, holder: str) -> None:
        """Release the probe if we still hold it."""
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM mod_probes WHERE scope = ? AND holder = ?", (scope, holder))

    def acquire_slots(
        self, names: Sequence[str], limit: int, lease_ms: int, *, releasing: Sequence[tuple[str, str]] = ()
    ) -> list[str | None]:
        """One of `limit` leases on each of `names`, after returning `releasing`, in one transaction."""
        now = self.now_ms()
        taken: list[str | None] = []
        with self._db.transaction() as conn:
            if releasing:
                conn.executemany("DELETE FROM mod_slots WHERE name = ? AND holder = ?", list(releasing))
            for name in names:
                holder = new_holder()
                # One statement: a lease only if fewer than `limit` live ones exist (lapsed ones don't count).
                inserted = conn.execute(
                    "INSERT INTO mod_slots (name, holder, expires) SELECT ?, ?, ? "
                    "WHERE (SELECT COUNT(*) FROM mod_slots WHERE name = ? AND expires > ?) < ?",
                    (name, holder, now + lease_ms, name, now, limit),
                ).rowcount
                if not inserted:
                    # Full: clear out lapsed leases (a killed holder's), so they never pile up.
                    conn.execute("DELETE FROM mod_slots WHERE name = ? AND expires <= ?", (name, now))
                taken.append(holder if inserted else None)
        return taken

    def active_cooldowns(self) -> dict[str, float]:
        """Scopes in a cooldown, with remaining seconds."""
        now = self.now_ms()
        rows = self._db.connection().execute("SELECT scope, until_ms FROM mod_scopes WHERE until_ms > ?", (now,))
        return {row["scope"]: (row["until_ms"] - now) / 1000 for row in rows}


def _hold(scopes: Sequence[str], relevant: dict[str, _HoldRow], now: int, epoch: int | None) -> Hold:
    """The hold of `scopes` from the rows that matter (a scope without one is clear)."""
    wait, which, recovering, budget_known = 0, None, [], False
    for index, scope in enumerate(scopes):
        row = relevant.get(scope)
        if row is None:
            continue
        until_ms, in_recovery, capacity, capacity_until = row
        if until_ms - now > wait:
            wait, which = until_ms - now, scope
        if in_recovery:
            recovering.append(scope)
        if index == 0:
            budget_known = capacity is not None and capacity_until > now
    return Hold(wait, which, tuple(recovering), budget_known, epoch)
