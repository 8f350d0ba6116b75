"""The embedded customer store: customers, latest snapshots and fetch history in one SQLite file."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from motion_meta_cli.errors import UnknownCustomerError
from motion_meta_cli.models import Customer, FetchResult, iso_utc, utc_now, validate_customer_name
from motion_meta_cli.storage.base import Snapshot
from motion_meta_cli.storage.sqlite import SQLiteDatabase

log = logging.getLogger(__name__)

_MIGRATIONS = [
    """
    CREATE TABLE customers (name TEXT PRIMARY KEY, active INTEGER NOT NULL DEFAULT 1, added_at TEXT NOT NULL);
    CREATE TABLE snapshots (
        customer TEXT PRIMARY KEY, fetched_at TEXT NOT NULL, fetched_at_us INTEGER NOT NULL, user_json TEXT NOT NULL
    );
    CREATE TABLE history (
        id INTEGER PRIMARY KEY AUTOINCREMENT, customer TEXT NOT NULL, fetched_at TEXT NOT NULL,
        fetched_at_us INTEGER NOT NULL, ok INTEGER NOT NULL, error_kind TEXT, error_message TEXT, user_json TEXT,
        UNIQUE (customer, fetched_at_us)
    );
    CREATE INDEX history_by_customer ON history (customer, fetched_at_us)
    """,
    "CREATE TABLE notes (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
]
"""Applied once each, in order (recorded in `schema_migrations`). Homes created before the demo customer
became opt-in have it from the first migration; later ones only where META_ACCESS_TOKEN seeds it."""


def _micros(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


class SQLiteCustomerStore:
    """`CustomerStore` on a SQLite file; the demo customer exists from the first run.

    store = SQLiteCustomerStore(home / "store.db")
    store.save_result(result)            # history row, and the snapshot unless a newer one is stored
    store.latest("motion_test_user")
    """

    def __init__(self, path: Path, *, busy_timeout_s: float | None = None) -> None:
        hint = (
            f"{path.name} holds your customers and history: restore it from a backup, "
            "or move it aside and run `motion-meta store init`"
        )
        self._db = SQLiteDatabase(path, _MIGRATIONS, corrupt_hint=hint, busy_timeout_s=busy_timeout_s)
        if self._db.was_empty:
            log.warning(
                "%s was an empty file (0 bytes), so it is a new store with no customers; if it held customers, "
                "restore it from a backup",
                path,
            )

    def initialize(self) -> bool:
        """The database is created on open; True when this process created it."""
        return self._db.created

    def add_customer(self, name: str) -> Customer:
        """Add (or re-activate) a customer; safe to repeat."""
        validate_customer_name(name)
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO customers (name, active, added_at) VALUES (?, 1, ?) "
                "ON CONFLICT (name) DO UPDATE SET active = 1",
                (name, iso_utc(utc_now())),
            )
        return self.get_customer(name)

    def get_note(self, key: str) -> str | None:
        """A small value the app keeps beside the customers (e.g. what the environment last seeded)."""
        rows = self._db.query("SELECT value FROM notes WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def set_note(self, key: str, value: str) -> None:
        """Store a note, replacing any under `key`."""
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO notes (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def remove_customer(self, name: str) -> None:
        """Remove a customer; its snapshot and history stay."""
        with self._db.transaction() as conn:
            removed = conn.execute("DELETE FROM customers WHERE name = ?", (name,)).rowcount
        if removed == 0:
            raise self._unknown(name)

    def get_customer(self, name: str) -> Customer:
        """The customer; raises UnknownCustomerError."""
        rows = self._db.query("SELECT name, active, added_at FROM customers WHERE name = ?", (name,))
        if not rows:
            raise self._unknown(name)
        return _customer(rows[0])

    def list_customers(self, active_only: bool = True) -> list[Customer]:
        """Customers in name order."""
        sql = "SELECT name, active, added_at FROM customers"
        sql += " WHERE active = 1 ORDER BY name" if active_only else " ORDER BY name"
        return [_customer(row) for row in self._db.query(sql)]

    def save_result(self, result: FetchResult) -> None:
        """Append to history (one row per customer and instant: a retry writes it again); on success update the
        snapshot unless a newer fetch is stored. Within one instant the last write wins, as on DynamoDB."""
        self.save_results([result])

    def save_results(self, results: Sequence[FetchResult]) -> None:
        """`save_result` for each, all in one transaction."""
        rows = [_result_row(result) for result in results]
        with self._db.transaction() as conn:
            for customer, fetched_at, when_us, ok, error_kind, error_message, user_json in rows:
                conn.execute(
                    "INSERT OR REPLACE INTO history "
                    "(customer, fetched_at, fetched_at_us, ok, error_kind, error_message, user_json) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (customer, fetched_at, when_us, ok, error_kind, error_message, user_json),
                )
                if user_json is not None:
                    # An older fetch finishing late must never overwrite a newer snapshot.
                    conn.execute(
                        "INSERT INTO snapshots (customer, fetched_at, fetched_at_us, user_json) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT (customer) DO UPDATE SET fetched_at = excluded.fetched_at, "
                        "fetched_at_us = excluded.fetched_at_us, user_json = excluded.user_json "
                        "WHERE excluded.fetched_at_us >= snapshots.fetched_at_us",
                        (customer, fetched_at, when_us, user_json),
                    )

    def latest(self, customer: str) -> Snapshot | None:
        """The newest stored user of `customer`."""
        rows = self._db.query("SELECT fetched_at_us, user_json FROM snapshots WHERE customer = ?", (customer,))
        if not rows:
            return None
        row = rows[0]
        return Snapshot(
            customer=customer,
            fetched_at=datetime.fromtimestamp(row[0] / 1_000_000, UTC),
            user=json.loads(row[1]),
        )

    def history(self, customer: str, limit: int = 20) -> list[dict[str, Any]]:
        """The most recent fetches of `customer`, newest first."""
        rows = self._db.query(
            "SELECT fetched_at, ok, error_kind, error_message, user_json FROM history "
            "WHERE customer = ? ORDER BY fetched_at_us DESC LIMIT ?",
            (customer, limit),
        )
        return [
            {
                "fetched_at": row["fetched_at"],
                "ok": bool(row["ok"]),
                "error_kind": row["error_kind"],
                "error_message": row["error_message"],
                "user": json.loads(row["user_json"]) if row["user_json"] else None,
            }
            for row in rows
        ]

    def close(self) -> None:
        """Close the database connections."""
        self._db.close()

    def _unknown(self, name: str) -> UnknownCustomerError:
        names = [row[0] for row in self._db.query("SELECT name FROM customers ORDER BY name LIMIT 6")]
        known = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "") if names else "none"
        return UnknownCustomerError(f"unknown customer {name!r} (known: {known})")


def _customer(row: sqlite3.Row) -> Customer:
    return Customer(name=row["name"], active=bool(row["active"]), added_at=datetime.fromisoformat(row["added_at"]))


def _result_row(result: FetchResult) -> tuple[str, str, int, int, str | None, str | None, str | None]:
    """A result as the history row's values: customer, instant (ISO and µs), ok, error, the user's JSON."""
    error = result.error
    user_json = json.dumps(result.user.fields(), sort_keys=True) if result.user is not None else None
    return (
        result.customer,
        iso_utc(result.fetched_at),
        _micros(result.fetched_at),
        int(result.ok),
        error.kind if error else None,
        error.message if error else None,
        user_json,
    )
