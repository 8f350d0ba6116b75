"""SQLite's failures reach the user as the error tree's: one line naming the file, the documented exit code."""

from __future__ import annotations

import os
import resource
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import pytest

from motion_meta_cli.errors import BackendUnavailableError, ConfigError, MotionMetaError
from motion_meta_cli.storage.sqlite_cache import SQLiteCache
from motion_meta_cli.storage.sqlite_store import SQLiteCustomerStore

QUICK_S = 0.05


class Closable(Protocol):
    def close(self) -> None: ...


@contextmanager
def write_lock_held(path: Path) -> Iterator[None]:
    """Another process's write transaction on `path`, as a second connection holding BEGIN IMMEDIATE."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


def _one_line(error: MotionMetaError) -> str:
    text = str(error)
    assert "\n" not in text and "Traceback" not in text
    assert "INSERT" not in text and "SELECT" not in text, "no SQL in a user's error"
    return text


def test_a_write_blocked_past_the_busy_timeout_is_a_backend_error_and_reads_go_on(tmp_path: Path) -> None:
    path = tmp_path / "cache.db"
    cache = SQLiteCache(path, busy_timeout_s=QUICK_S)
    cache.set("marker", "v1")
    with write_lock_held(path):
        with pytest.raises(BackendUnavailableError) as caught:
            cache.set("marker", "v2")
        assert cache.get("marker") == "v1", "WAL: readers are not blocked by another process's write"
    assert _one_line(caught.value) == (
        f"the SQLite file {path} is locked by another process (waited {QUICK_S:g} s); "
        "try again once that process is done"
    )
    assert caught.value.exit_code == 8
    cache.set("marker", "v3")  # the failed BEGIN left no transaction open on the shared writer connection
    assert cache.get("marker") == "v3"


def test_a_store_locked_by_another_process_opens_and_reads_and_a_write_is_a_backend_error(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    seeded = SQLiteCustomerStore(path)
    seeded.add_customer("acme")
    seeded.close()
    with write_lock_held(path):
        store = SQLiteCustomerStore(path, busy_timeout_s=QUICK_S)  # migrated already: opening writes nothing
        assert "acme" in [c.name for c in store.list_customers()]
        with pytest.raises(BackendUnavailableError, match=r"store\.db is locked by another"):
            store.add_customer("globex")
        store.close()


def test_creating_a_store_another_process_holds_locked_is_a_backend_error(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    sqlite3.connect(path).close()  # an empty file, not yet migrated
    with write_lock_held(path), pytest.raises(BackendUnavailableError, match=r"store\.db is locked by another"):
        SQLiteCustomerStore(path, busy_timeout_s=QUICK_S)


def test_a_new_file_that_another_process_is_writing_turns_to_wal_once_it_is_free(tmp_path: Path) -> None:
    # Processes started together on a fresh home all open the new file; turning it to WAL needs it to
    # itself, and SQLite fails that at once (no busy wait) while another connection is writing it.
    path = tmp_path / "store.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE sibling (x)")
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO sibling VALUES (1)")  # a write under way, as a sibling creating the file
    release = threading.Timer(0.2, lambda: other.execute("COMMIT"))
    release.start()
    try:
        store = SQLiteCustomerStore(path)
        store.add_customer("acme")
        assert store._db.query("PRAGMA journal_mode")[0][0] == "wal"
        store.close()
    finally:
        release.join()
        other.close()


def test_a_zero_byte_file_another_process_has_just_made_is_not_called_empty(tmp_path: Path) -> None:
    fresh, old = tmp_path / "fresh.db", tmp_path / "old.db"
    fresh.write_bytes(b"")
    old.write_bytes(b"")
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    assert not SQLiteCustomerStore(fresh)._db.was_empty
    assert SQLiteCustomerStore(old)._db.was_empty


def test_a_write_the_file_has_no_room_for_is_a_backend_error(tmp_path: Path) -> None:
    cache = SQLiteCache(tmp_path / "cache.db")
    with cache.database.transaction() as conn:  # the file may not grow by a page: as when the disk is full
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(BackendUnavailableError) as caught:
        cache.set("big", "x" * 100_000)
    assert "cache.db cannot grow: the disk is full" in _one_line(caught.value)
    assert cache.get("big") is None


def test_a_file_that_cannot_be_written_is_a_backend_error(tmp_path: Path) -> None:
    store = SQLiteCustomerStore(tmp_path / "store.db")
    with store._db.transaction() as conn:  # root ignores file modes: the connection is made read-only instead
        conn.execute("PRAGMA query_only = ON")
    with pytest.raises(BackendUnavailableError) as caught:
        store.add_customer("acme")
    assert "store.db cannot be written (attempt to write a readonly database)" in _one_line(caught.value)


def test_a_disk_that_fails_a_write_is_a_backend_error(tmp_path: Path) -> None:
    path = tmp_path / "cache.db"
    cache = SQLiteCache(path)
    cache.set("warm", "up")
    room = max(p.stat().st_size for p in tmp_path.glob("cache.db*")) + 64 * 1024
    ignored = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (room, hard))
    try:
        with pytest.raises(BackendUnavailableError) as caught:
            cache.set("big", "x" * 1_000_000)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, ignored)
    assert _one_line(caught.value) == (
        f"the SQLite file {path} could not be read or written (disk I/O error); check the disk, then try again"
    )


def test_a_path_that_cannot_be_opened_is_a_backend_error(tmp_path: Path) -> None:
    (tmp_path / "cache.db").mkdir()
    with pytest.raises(BackendUnavailableError) as caught:
        SQLiteCache(tmp_path / "cache.db")
    assert "cache.db cannot be opened (unable to open database file)" in _one_line(caught.value)


def test_a_folder_that_cannot_be_made_points_at_motion_meta_home(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file where the home's parent folder should be")  # fails for root too
    with pytest.raises(ConfigError, match="check MOTION_META_HOME points at a writable folder"):
        SQLiteCache(tmp_path / "taken" / "home" / "cache.db")


def _not_a_database(path: Path, open_: Callable[[Path], Closable]) -> None:
    path.write_bytes(b"these are someone's notes, not a database\n" * 200)


def _damaged(path: Path, open_: Callable[[Path], Closable]) -> None:
    open_(path).close()  # the last connection to close folds the WAL into the file
    page = sqlite3.connect(path).execute("PRAGMA page_size").fetchone()[0]
    data = path.read_bytes()
    path.write_bytes(data[:page] + b"\xff" * (len(data) - page))  # every page after the schema


@pytest.mark.parametrize(
    ("spoil", "what"),
    [(_not_a_database, "file is not a database"), (_damaged, "database disk image is malformed")],
)
@pytest.mark.parametrize(
    ("name", "open_", "hint"),
    [
        ("cache.db", SQLiteCache, "cache.db is only a cache: it is safe to delete it"),
        (
            "store.db",
            SQLiteCustomerStore,
            "store.db holds your customers and history: restore it from a backup, "
            "or move it aside and run `motion-meta store init`",
        ),
    ],
)
def test_a_file_that_is_not_a_usable_database_is_a_config_error_saying_how_to_recover(
    tmp_path: Path,
    spoil: Callable[[Path, Callable[[Path], Closable]], None],
    what: str,
    name: str,
    open_: Callable[[Path], Closable],
    hint: str,
) -> None:
    path = tmp_path / name
    spoil(path, open_)
    with pytest.raises(ConfigError) as caught:
        open_(path)
    assert type(caught.value) is ConfigError and caught.value.exit_code == 3
    assert _one_line(caught.value) == f"the SQLite file {path} is not a usable database ({what}); {hint}"
