"""The embedded cache: a SQLite file shared by every process on this machine."""

from __future__ import annotations

import secrets
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

from motion_meta_cli.storage.sqlite import SQLiteDatabase

_MIGRATIONS = [
    """
    CREATE TABLE cache (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires_at REAL);
    CREATE TABLE locks (name TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at REAL NOT NULL)
    """,
    # 2-5 held shared moderation until it moved to its own file (motion_meta_cli.moderation.sqlite_state); they
    # stay as no-ops so that every file counts its migrations the same way, and 6 drops what they created.
    "SELECT 1",
    "SELECT 1",
    "SELECT 1",
    "SELECT 1",
    """
    DROP TRIGGER IF EXISTS mod_scopes_hold_changed;
    DROP TRIGGER IF EXISTS mod_sends_logged;
    DROP TRIGGER IF EXISTS mod_sends_pruned;
    DROP TABLE IF EXISTS mod_epoch;
    DROP TABLE IF EXISTS mod_scopes;
    DROP TABLE IF EXISTS mod_sends;
    DROP TABLE IF EXISTS mod_ok;
    DROP TABLE IF EXISTS mod_probes;
    DROP TABLE IF EXISTS mod_slots
    """,
    # Expired rows are purged as the cache writes (SQLiteCache._purge_expired); this finds them.
    "CREATE INDEX cache_by_expiry ON cache (expires_at) WHERE expires_at IS NOT NULL",
]

LOCK_POLL_S = 0.02
MAX_PARAMS = 500
"""Keys per `IN (...)` query: well under SQLite's limit on bound parameters (999 before 3.32)."""
PURGE_EVERY_S = 5.0
"""How often (at most, per process) a write also deletes expired rows."""
PURGE_BATCH = 10_000
"""Expired rows one purge deletes at most, so a large backlog never stalls a write; the rest go next write."""


class SQLiteCache:
    """`Cache` on a SQLite file; expiry uses the wall clock, which every local process shares. Expired rows
    are deleted as the cache writes, at most every PURGE_EVERY_S, so short-lived keys do not pile up.

    cache = SQLiteCache(home / "cache.db")
    cache.set("credentials:marker:acme", "v2", ttl_s=3600)
    with cache.lock("refresh:acme", ttl_s=10):
        ...
    """

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        busy_timeout_s: float | None = None,
    ) -> None:
        hint = f"{path.name} is only a cache: it is safe to delete it"
        self._db = SQLiteDatabase(path, _MIGRATIONS, corrupt_hint=hint, busy_timeout_s=busy_timeout_s)
        self._clock = clock
        self._sleep = sleep
        self._purged_at: float | None = None

    def get(self, key: str) -> str | None:
        """The value, or None when missing or expired."""
        rows = self._db.query(
            "SELECT value FROM cache WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)", (key, self._clock())
        )
        return str(rows[0][0]) if rows else None

    def set(self, key: str, value: str, ttl_s: float | None = None) -> None:
        """Store `value`, expiring after `ttl_s` seconds when given."""
        self._set({key: value}, ttl_s)

    def set_many(self, items: Mapping[str, str]) -> None:
        """`set` for each key, without expiry, in one transaction."""
        self._set(items, None)

    def _set(self, items: Mapping[str, str], ttl_s: float | None) -> None:
        now = self._clock()
        expires_at = None if ttl_s is None else now + ttl_s
        with self._db.transaction() as conn:
            self._purge_expired(conn, now)
            conn.executemany(
                "INSERT INTO cache (key, value, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
                [(key, value, expires_at) for key, value in items.items()],
            )

    def delete(self, key: str) -> bool:
        """Remove the key; True when a live value existed."""
        now = self._clock()
        with self._db.transaction() as conn:
            self._purge_expired(conn, now)
            cur = conn.execute("DELETE FROM cache WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)", (key, now))
            return cur.rowcount > 0

    def add_many(self, keys: Sequence[str], value: str, ttl_s: float) -> list[bool]:
        """Store `value` under each key that is absent or expired, in one transaction; True where stored."""
        now = self._clock()
        with self._db.transaction() as conn:
            self._purge_expired(conn, now)
            stored = []
            for key in keys:
                # Inserted, or replaced only when the live value has expired; else nothing changes.
                cur = conn.execute(
                    "INSERT INTO cache (key, value, expires_at) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE "
                    "SET value = excluded.value, expires_at = excluded.expires_at "
                    "WHERE cache.expires_at IS NOT NULL AND cache.expires_at <= ?",
                    (key, value, now + ttl_s, now),
                )
                stored.append(cur.rowcount == 1)
            return stored

    def get_many(self, keys: Sequence[str]) -> list[str | None]:
        """`get` for each key, in one query per MAX_PARAMS keys."""
        found: dict[str, str] = {}
        for start in range(0, len(keys), MAX_PARAMS):
            chunk = list(keys[start : start + MAX_PARAMS])
            rows = self._db.query(
                f"SELECT key, value FROM cache WHERE key IN ({', '.join('?' * len(chunk))}) "
                "AND (expires_at IS NULL OR expires_at > ?)",
                (*chunk, self._clock()),
            )
            found.update((str(row[0]), str(row[1])) for row in rows)
        return [found.get(key) for key in keys]

    def lock(self, name: str, ttl_s: float) -> SQLiteLock:
        """A lease on `name` that lapses after `ttl_s` seconds."""
        return SQLiteLock(self, name, ttl_s)

    @property
    def database(self) -> SQLiteDatabase:
        """The underlying database (for tests that need to reach under the cache)."""
        return self._db

    def close(self) -> None:
        """Close the database connections."""
        self._db.close()

    def _try_acquire(self, name: str, owner: str, ttl_s: float) -> bool:
        now = self._clock()
        with self._db.transaction() as conn:
            self._purge_expired(conn, now)
            conn.execute("DELETE FROM locks WHERE name = ? AND expires_at <= ?", (name, now))
            cur = conn.execute(
                "INSERT OR IGNORE INTO locks (name, owner, expires_at) VALUES (?, ?, ?)",
                (name, owner, now + ttl_s),
            )
            return cur.rowcount == 1

    def _renew(self, name: str, owner: str, ttl_s: float) -> bool:
        now = self._clock()
        with self._db.transaction() as conn:
            cur = conn.execute(
                "UPDATE locks SET expires_at = ? WHERE name = ? AND owner = ? AND expires_at > ?",
                (now + ttl_s, name, owner, now),
            )
            return cur.rowcount == 1

    def _release(self, name: str, owner: str) -> None:
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM locks WHERE name = ? AND owner = ?", (name, owner))

    def _purge_expired(self, conn: sqlite3.Connection, now: float) -> None:
        """Delete expired cache and lock rows, in the caller's write transaction, if PURGE_EVERY_S has passed."""
        if self._purged_at is not None and 0 <= now - self._purged_at < PURGE_EVERY_S:
            return
        purged = conn.execute(
            "DELETE FROM cache WHERE rowid IN (SELECT rowid FROM cache WHERE expires_at IS NOT NULL "
            "AND expires_at <= ? LIMIT ?)",
            (now, PURGE_BATCH),
        ).rowcount
        conn.execute("DELETE FROM locks WHERE expires_at <= ?", (now,))
        if purged < PURGE_BATCH:  # else more are due: purge again on the next write
            self._purged_at = now


class SQLiteLock:
    """A lease in the `locks` table; only its owner can release it, and it lapses at its TTL."""

    def __init__(self, cache: SQLiteCache, name: str, ttl_s: float) -> None:
        if ttl_s <= 0:
            raise ValueError("a lock needs a positive TTL")
        self._cache = cache
        self.name = name
        self.ttl_s = ttl_s
        self._owner = secrets.token_hex(8)

    def acquire(self, blocking: bool = True, timeout_s: float | None = None) -> bool:
        """Take the lock, waiting up to `timeout_s` (forever when None) if blocking."""
        deadline = None if timeout_s is None else self._cache._clock() + timeout_s
        while True:
            if self._cache._try_acquire(self.name, self._owner, self.ttl_s):
                return True
            if not blocking or (deadline is not None and self._cache._clock() >= deadline):
                return False
            self._cache._sleep(LOCK_POLL_S)

    def release(self) -> None:
        """Give the lock back if we still hold it."""
        self._cache._release(self.name, self._owner)

    def renew(self) -> bool:
        """Reset the lease to its full TTL; False when it lapsed and someone else may hold it."""
        return self._cache._renew(self.name, self._owner, self.ttl_s)

    def __enter__(self) -> SQLiteLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
