"""SQLite plumbing shared by the embedded cache and store: per-thread connections, WAL, migrations, and
the one place where SQLite's errors become motion-meta's."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from motion_meta_cli.errors import BackendUnavailableError, ConfigError, MotionMetaError

BUSY_TIMEOUT_S = 10.0
"""How long a write waits for another process's write transaction before giving up."""
WAL_STEP_S = 0.01
"""Turning a new file to WAL needs it to itself, and SQLite's busy handler does not wait for that: retry this often."""


def private_file(path: Path) -> bool:
    """Make `path`'s folder (0700 when created) and the file itself, empty and 0600, unless it exists (the files
    under MOTION_META_HOME hold customers' names and profiles; SQLite gives its -wal and -shm files the mode of
    the database). True when the file already existed but was empty, and not because another process has just
    made it (one that is creating the database writes its first page within BUSY_TIMEOUT_S)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        stat = path.stat()
        return stat.st_size == 0 and time.time() - stat.st_mtime > BUSY_TIMEOUT_S
    return False


class SQLiteDatabase:
    """One SQLite file used by many threads and processes: each thread gets its own connection.

    WAL lets readers run beside one writer; the busy timeout makes writers of other processes wait
    instead of failing; `migrations` are applied once, in order, and recorded in `schema_migrations`.

    Every statement runs through `transaction()` or `query()`, which turn SQLite's errors into the error
    tree: a file that is locked too long, unreadable, full or read-only is BackendUnavailableError (exit 8),
    a file that is not a database (or is damaged) is ConfigError (exit 3) with `corrupt_hint`, which says
    what the file holds and how to recover. `busy_timeout_s` (None: BUSY_TIMEOUT_S) bounds a write's wait.
    """

    def __init__(
        self, path: Path, migrations: Sequence[str], *, corrupt_hint: str, busy_timeout_s: float | None = None
    ) -> None:
        self.path = path
        self._migrations = migrations
        self._corrupt_hint = corrupt_hint
        self.busy_timeout_s = BUSY_TIMEOUT_S if busy_timeout_s is None else busy_timeout_s
        self._local = threading.local()
        self._all: dict[int, sqlite3.Connection] = {}
        self._guard = threading.Lock()
        self._writer = threading.Lock()
        self._write_conn: sqlite3.Connection | None = None
        self.created = False
        """True when this instance applied the first migration, i.e. created the database."""
        try:
            self.was_empty = private_file(path)
            """The file existed with nothing in it: whatever it held is gone (a store says so)."""
        except OSError as exc:
            raise self._unwritable_folder(exc) from None
        self._migrate()

    def connection(self) -> sqlite3.Connection:
        """This thread's connection; its errors are SQLite's own, so read through `query` instead."""
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
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        try:
            conn.execute(f"PRAGMA busy_timeout = {round(self.busy_timeout_s * 1000)}")
            self._use_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error:
            conn.close()
            raise
        return conn

    def _use_wal(self, conn: sqlite3.Connection) -> None:
        # WAL is a property of the file: once set, reading the mode is enough (and the first statement to read
        # the file, which may find it corrupt). Setting it on a new file while other processes open it too
        # fails at once with SQLITE_BUSY, whatever the busy timeout: retry within that timeout.
        if conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
            return
        deadline = time.monotonic() + self.busy_timeout_s
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if getattr(exc, "sqlite_errorcode", 0) & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                    raise
                time.sleep(WAL_STEP_S)

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
        with self._errors(), self._writer:
            conn = self._writer_connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # also when COMMIT itself failed: this connection serves every write
                    conn.execute("ROLLBACK")
                raise

    def query(self, sql: str, params: Sequence[object] = ()) -> list[sqlite3.Row]:
        """Every row of one read statement, on this thread's connection."""
        with self._errors():
            return self.connection().execute(sql, params).fetchall()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """SQLite's errors as the error tree's, in one line naming the file; others (bugs) pass unchanged."""
        try:
            yield
        except sqlite3.Error as exc:
            error = self._translate(exc)
            if error is None:
                raise
            raise error from exc

    def _translate(self, exc: sqlite3.Error) -> MotionMetaError | None:
        code = getattr(exc, "sqlite_errorcode", None)
        primary = None if code is None else code & 0xFF  # an extended code carries its primary code in the low byte
        where = f"the SQLite file {self.path}"
        if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            return BackendUnavailableError(
                f"{where} is locked by another process (waited {self.busy_timeout_s:g} s); "
                "try again once that process is done"
            )
        if primary == sqlite3.SQLITE_IOERR:
            return BackendUnavailableError(
                f"{where} could not be read or written ({exc}); check the disk, then try again"
            )
        if primary == sqlite3.SQLITE_FULL:
            return BackendUnavailableError(
                f"{where} cannot grow: the disk is full (or the file reached its size limit); "
                "free some space, then try again"
            )
        if primary in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM):
            return BackendUnavailableError(f"{where} cannot be written ({exc}); make it writable for this user")
        if primary == sqlite3.SQLITE_CANTOPEN:
            if not os.access(self.path.parent, os.W_OK):
                return self._unwritable_folder(exc)
            return BackendUnavailableError(
                f"{where} cannot be opened ({exc}); check that it is a file this user can read and write"
            )
        if primary in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
            return ConfigError(f"{where} is not a usable database ({exc}); {self._corrupt_hint}")
        return None

    def _unwritable_folder(self, exc: BaseException) -> ConfigError:
        return ConfigError(
            f"cannot use the database {self.path}: {exc}; check MOTION_META_HOME points at a writable folder"
        )

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
        if self._migrated():
            return  # nothing to write: a file another process holds locked is still usable for reading
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

    def _migrated(self) -> bool:
        with self._errors():
            conn = self.connection()
            if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'schema_migrations'").fetchall():
                return False
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        return done >= set(range(1, len(self._migrations) + 1))


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
