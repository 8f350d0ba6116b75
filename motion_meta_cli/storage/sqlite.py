"""SQLite plumbing shared by the embedded cache and store: per-thread connections, WAL, migrations."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from motion_meta_cli.errors import ConfigError

BUSY_TIMEOUT_MS = 10_000


class SQLiteDatabase:
    """One SQLite file used by many threads and processes: each thread gets its own connection.

    WAL lets readers run beside one writer; the busy timeout makes writers of other processes wait
    instead of failing; `migrations` are applied once, in order, and recorded in `schema_migrations`.
    """

    def __init__(self, path: Path, migrations: Sequence[str]) -> None:
        self.path = path
        self._migrations = migrations
        self._local = threading.local()
        self._all: dict[int, sqlite3.Connection] = {}
        self._guard = threading.Lock()
        self._writer = threading.Lock()
        self._write_conn: sqlite3.Connection | None = None
        self.created = False
        """True when this instance applied the first migration, i.e. created the database."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._migrate()
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"cannot use the database {path}: {exc}; check MOTION_META_HOME points at a writable folder"
            ) from None

    def connection(self) -> sqlite3.Connection:
        """This thread's connection."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._open()
            self._local.conn = conn
            with self._guard:
                self._prune_dead_threads()
                stale = self._all.pop(threading.get_ident(), None)  # a dead thread's id, reused
                if stale is not None:
                    stale.close()
                self._all[threading.get_ident()] = conn
        return conn

    def _open(self) -> sqlite3.Connection:
        # check_same_thread=False so close() and the pruning below may close another thread's connection,
        # and the writer connection may serve every thread (one at a time, under the writer lock).
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    def _writer_connection(self) -> sqlite3.Connection:
        # One connection for every write of this process (taken under the writer lock): its page cache
        # stays warm, where a connection per thread would re-read what the others just wrote.
        if self._write_conn is None:
            self._write_conn = self._open()
        return self._write_conn

    def _prune_dead_threads(self) -> None:
        # Worker threads come and go (a pool per run); their connections must not pile up.
        alive = {thread.ident for thread in threading.enumerate()}
        for ident in [ident for ident in self._all if ident not in alive]:
            self._all.pop(ident).close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction taken up front (BEGIN IMMEDIATE), so read-then-write is atomic.

        Threads of this process queue on a Python lock first: SQLite's own busy handler sleeps in
        growing steps of milliseconds, which under many threads costs far more than the writes.
        """
        with self._writer:
            conn = self._writer_connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # also when COMMIT itself failed: this connection serves every write
                    conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        """Close every thread's connection."""
        with self._guard:
            for conn in self._all.values():
                conn.close()
            self._all.clear()
        with self._writer:
            if self._write_conn is not None:
                self._write_conn.close()
                self._write_conn = None
        self._local = threading.local()

    def _migrate(self) -> None:
        with self.transaction() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
            )
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for version, script in enumerate(self._migrations, start=1):
                if version in done:
                    continue
                for statement in _statements(script):
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_migrations VALUES (?, ?)", (version, time.time()))
                self.created = self.created or version == 1


def _statements(script: str) -> Iterator[str]:
    """The statements of a migration script, split on the semicolons that end one (not those inside a
    trigger's BEGIN ... END)."""
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                yield pending.strip()
            pending = ""
    if pending.strip(" \n;"):
        yield pending.strip()
