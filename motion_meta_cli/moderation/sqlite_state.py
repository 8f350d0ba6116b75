"""`ModerationState` in a SQLite file beside the cache: shared by every process on one machine, each
primitive one transaction (BEGIN IMMEDIATE), timed by the wall clock they all share."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

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


def moderation_path(cache_path: Path) -> Path:
    """Where moderation lives for a SQLite cache at `cache_path`: `cache.db` -> `cache.moderation.db`."""
    return cache_path.with_name(f"{cache_path.stem}.moderation.db")


class SQLiteState:
    """Moderation records and send logs in their own SQLite file (tables `records` and `sends`)."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        hint = f"{path.name} only holds shared moderation (cooldowns, budgets): it is safe to delete it"
        self._db = SQLiteDatabase(path, _MIGRATIONS, corrupt_hint=hint)
        self._clock = clock

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
        """Read, change and write the record in one transaction; expired records are purged on the way."""
        now = self._now()
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM records WHERE expires_ms <= ?", (now,))
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

    def admit(self, limits: Sequence[Limit], window_ms: int, margin_ms: int) -> Admission:
        """The rule of `state.admission`, in SQL, in one transaction."""
        now = self._now()
        wait, counted = 0, []
        with self._db.transaction() as conn:
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

    def close(self) -> None:
        """Close the database's connections."""
        self._db.close()
