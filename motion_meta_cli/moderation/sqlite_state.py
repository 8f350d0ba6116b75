"""`ModerationState` in a SQLite file beside the cache: shared by every process on one machine, timed by
the wall clock they all share.

Each `update` and `admit` is applied inside a write transaction (BEGIN IMMEDIATE), so it is atomic across
processes. Writes of this process's threads that queue up while one transaction runs are applied one after
the other in the next transaction (group commit): under a poll's 64 threads one transaction per write, each
handed from thread to thread, cost more than the writes themselves. It changes nothing a caller sees.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from motion_meta_cli.moderation.rules import Limit
from motion_meta_cli.moderation.state import Admission, Change, Record
from motion_meta_cli.storage.sqlite import SQLiteDatabase

_MIGRATIONS = [
    """
    CREATE TABLE records (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires_ms INTEGER NOT NULL);
    CREATE INDEX records_by_expiry ON records (expires_ms);
    CREATE TABLE sends (log TEXT NOT NULL, sent_ms INTEGER NOT NULL);
    CREATE INDEX sends_by_log ON sends (log, sent_ms)
    """,
]


BUSY_TIMEOUT_S = 2.0
"""How long a write waits for another process's transaction: each takes milliseconds, so one that waits this
long finds the file held by something else, and moderation goes in-process (see `failsafe`) until it is free."""


def moderation_path(cache_path: Path) -> Path:
    """Where moderation lives for a SQLite cache at `cache_path`: `cache.db` -> `cache.moderation.db`."""
    return cache_path.with_name(f"{cache_path.stem}.moderation.db")


class SQLiteState:
    """Moderation records and send logs in their own SQLite file (tables `records` and `sends`)."""

    def __init__(
        self, path: Path, clock: Callable[[], float] = time.time, *, busy_timeout_s: float = BUSY_TIMEOUT_S
    ) -> None:
        hint = f"{path.name} only holds shared moderation (cooldowns, budgets): it is safe to delete it"
        self._db = SQLiteDatabase(path, _MIGRATIONS, corrupt_hint=hint, busy_timeout_s=busy_timeout_s)
        self._clock = clock
        self._queue: list[_Queued] = []
        self._queue_lock = threading.Lock()
        self._leader = threading.Lock()
        """Held by the thread running a transaction; the threads queued behind it wait here."""

    def _now(self) -> int:
        return int(self._clock() * 1000)

    def read(self, keys: Sequence[str] | None) -> tuple[int, dict[str, Record]]:
        """Now and the live records among `keys` (every one when None)."""
        now = self._now()
        if keys is None:
            rows = self._db.query("SELECT key, value FROM records WHERE expires_ms > ?", (now,))
        else:
            marks = ", ".join("?" * len(keys))
            query = f"SELECT key, value FROM records WHERE key IN ({marks}) AND expires_ms > ?"
            rows = self._db.query(query, (*keys, now)) if keys else []
        return now, {str(row[0]): json.loads(row[1]) for row in rows}

    def update(self, key: str, change: Change) -> Record | None:
        """Read, change and write the record atomically."""

        def work(conn: sqlite3.Connection, now: int) -> Record | None:
            row = conn.execute("SELECT value FROM records WHERE key = ?", (key,)).fetchone()
            new = change(json.loads(row[0]) if row else None, now)
            if new is None or new.get("expires_ms", 0) <= now:
                conn.execute("DELETE FROM records WHERE key = ?", (key,))
            else:
                conn.execute(
                    "INSERT INTO records (key, value, expires_ms) VALUES (?, ?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_ms = excluded.expires_ms",
                    (key, json.dumps(new), int(new["expires_ms"])),
                )
            return new

        return self._write(work)  # type: ignore[no-any-return]

    def admit(self, limits: Sequence[Limit], window_ms: int, margin_ms: int) -> Admission:
        """The rule of `state.admission`, in SQL, atomically."""

        def work(conn: sqlite3.Connection, now: int) -> Admission:
            wait, counted = 0, []
            for rule in limits:
                conn.execute("DELETE FROM sends WHERE log = ? AND sent_ms <= ?", (rule.log, now - window_ms))
                count, surely, last = conn.execute(
                    "SELECT COUNT(*), SUM(sent_ms > ?), MAX(sent_ms) FROM sends WHERE log = ?",
                    (now - window_ms + margin_ms, rule.log),
                ).fetchone()
                counted.append(int(surely or 0))
                if rule.limit is not None and count >= rule.limit:
                    (frees,) = conn.execute(
                        "SELECT sent_ms FROM sends WHERE log = ? ORDER BY sent_ms LIMIT 1 OFFSET ?",
                        (rule.log, count - rule.limit),
                    ).fetchone()
                    wait = max(wait, frees + window_ms - now, 1)
                elif rule.spacing_ms and count and count >= rule.spacing_from:
                    wait = max(wait, last + rule.spacing_ms - now)
            if wait <= 0:
                logged = [(rule.log, now) for rule in limits if rule.record]
                conn.executemany("INSERT INTO sends (log, sent_ms) VALUES (?, ?)", logged)
            return Admission(wait, now, tuple(counted))

        return self._write(work)  # type: ignore[no-any-return]

    def _write(self, work: Callable[[sqlite3.Connection, int], Any]) -> Any:
        """Run `work(conn, now)` in a write transaction, with whatever other threads queued meanwhile."""
        mine = _Queued(work)
        with self._queue_lock:
            self._queue.append(mine)
        try:
            with self._leader:
                if not mine.done:  # nobody took it along: run it and everything queued behind it
                    with self._queue_lock:
                        batch, self._queue = self._queue, []
                    self._run(batch, mine)
        except BaseException:
            with self._queue_lock:  # interrupted while queued: nobody may write it later
                self._queue = [item for item in self._queue if item is not mine]
            raise
        if mine.error is not None:
            raise mine.error
        return mine.result

    def _run(self, batch: list[_Queued], mine: _Queued) -> None:
        try:
            with self._db.transaction() as conn:
                now = self._now()
                conn.execute("DELETE FROM records WHERE expires_ms <= ?", (now,))
                for item in batch:
                    try:
                        item.result = item.work(conn, now)
                    except sqlite3.Error:
                        raise  # the transaction is lost: every item in it fails below
                    except Exception as exc:  # a bug in one change: nothing of it was written
                        item.error = exc
        except Exception as exc:
            for item in batch:
                item.result, item.error = None, exc
        except BaseException:  # interrupted: the others run theirs again, in a transaction of their own
            others = [item for item in batch if item is not mine]
            for item in others:
                item.result, item.error = None, None
            with self._queue_lock:
                self._queue[:0] = others
            raise
        for item in batch:
            item.done = True

    def close(self) -> None:
        """Close the database's connections."""
        self._db.close()


class _Queued:
    """One write waiting for a transaction: what to run, and (once `done`) its result or error."""

    __slots__ = ("done", "error", "result", "work")

    def __init__(self, work: Callable[[sqlite3.Connection, int], Any]) -> None:
        self.work = work
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = False
