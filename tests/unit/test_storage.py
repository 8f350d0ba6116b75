from __future__ import annotations

import sqlite3
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from motion_meta_cli.errors import (
    ConfigError,
    MissingCredentialsError,
    MotionMetaError,
    UnknownCustomerError,
    UsageError,
)
from motion_meta_cli.models import FetchResult, MetaUser
from motion_meta_cli.storage import sqlite_cache
from motion_meta_cli.storage.local_secrets import LocalSecretsStore
from motion_meta_cli.storage.sqlite_cache import _MIGRATIONS, PURGE_EVERY_S, SQLiteCache
from motion_meta_cli.storage.sqlite_store import SQLiteCustomerStore


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


# --- cache ---------------------------------------------------------------------------------------


def test_cache_values_expire_after_their_ttl(tmp_path: Path) -> None:
    clock = FakeClock()
    cache = SQLiteCache(tmp_path / "cache.db", clock=clock)
    cache.set("a", "1", ttl_s=10)
    cache.set("b", "2")
    assert cache.get("a") == "1"
    clock.now += 10.5
    assert cache.get("a") is None
    assert cache.get("b") == "2"


def test_cache_set_overwrites_and_delete_reports_existence(tmp_path: Path) -> None:
    cache = SQLiteCache(tmp_path / "cache.db")
    cache.set("k", "old", ttl_s=1)
    cache.set("k", "new")
    assert cache.get("k") == "new"
    assert cache.delete("k") is True
    assert cache.delete("k") is False
    assert cache.get("k") is None


def test_cache_is_shared_between_instances_on_one_file(tmp_path: Path) -> None:
    SQLiteCache(tmp_path / "cache.db").set("marker", "v1")
    assert SQLiteCache(tmp_path / "cache.db").get("marker") == "v1"


def _rows(path: Path, table: str = "cache") -> int:
    """Rows in `table`, counted on a connection of its own (expired rows included)."""
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


def test_expired_keys_are_purged_as_the_cache_writes(tmp_path: Path) -> None:
    clock = FakeClock()
    cache = SQLiteCache(tmp_path / "cache.db", clock=clock)
    cache.set("credentials:marker:acme", "v1")  # no TTL: never purged
    cache.set("credentials:marker:globex", "v1", ttl_s=3600)  # not expired yet
    for slot in range(50):  # as poll's per-cycle leases: new keys every cycle, a TTL of two cycles
        keys = [f"poll:lease:{slot}:customer{i}" for i in range(100)]
        assert cache.add_many(keys, "instance-a", ttl_s=2) == [True] * 100
        assert _rows(tmp_path / "cache.db") <= 200
        assert cache.get(keys[-1]) == "instance-a", "live keys are kept"
        clock.now += PURGE_EVERY_S  # past the TTL: the next write purges this round's keys
    assert cache.get_many(["credentials:marker:acme", "credentials:marker:globex"]) == ["v1", "v1"]


def test_expired_locks_of_holders_that_died_are_purged(tmp_path: Path) -> None:
    clock = FakeClock()
    cache = SQLiteCache(tmp_path / "cache.db", clock=clock)
    for name in ("refresh:acme", "refresh:globex"):
        assert cache.lock(name, ttl_s=10).acquire(blocking=False)  # never released
    clock.now += 60
    cache.set("k", "v")
    assert _rows(tmp_path / "cache.db", "locks") == 0


def test_a_large_backlog_is_purged_over_several_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_cache, "PURGE_BATCH", 50)
    clock = FakeClock()
    cache = SQLiteCache(tmp_path / "cache.db", clock=clock)
    cache.add_many([f"old{i}" for i in range(120)], "x", ttl_s=1)
    clock.now += 10
    counts = []
    for i in range(4):
        cache.set(f"new{i}", "y")
        counts.append(_rows(tmp_path / "cache.db"))
    assert counts == [71, 22, 3, 4], "at most PURGE_BATCH expired rows per write, until none are left"


def test_lock_is_exclusive_until_released(tmp_path: Path) -> None:
    cache = SQLiteCache(tmp_path / "cache.db")
    first, second = cache.lock("refresh:acme", ttl_s=30), cache.lock("refresh:acme", ttl_s=30)
    assert first.acquire(blocking=False)
    assert not second.acquire(blocking=False)
    second.release()  # not the owner: must not free the lock
    assert not cache.lock("refresh:acme", ttl_s=30).acquire(blocking=False)
    first.release()
    assert second.acquire(blocking=False)


def test_lock_lapses_at_its_ttl(tmp_path: Path) -> None:
    clock = FakeClock()
    cache = SQLiteCache(tmp_path / "cache.db", clock=clock, sleep=clock.sleep)
    holder = cache.lock("l", ttl_s=5)
    assert holder.acquire(blocking=False)
    waiter = cache.lock("l", ttl_s=5)
    assert not waiter.acquire(timeout_s=2), "the lease still runs for 3 more seconds"
    assert waiter.acquire(timeout_s=10), "a blocking acquire gets the lock once the lease lapses"


def test_lock_needs_a_ttl(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="TTL"):
        SQLiteCache(tmp_path / "cache.db").lock("l", ttl_s=0)


def test_databases_use_wal_and_record_migrations(tmp_path: Path) -> None:
    SQLiteCache(tmp_path / "cache.db")
    SQLiteCache(tmp_path / "cache.db")  # second open must not re-run migrations
    conn = sqlite3.connect(tmp_path / "cache.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT COUNT(*) FROM schema_migrations").fetchone()[0] == len(_MIGRATIONS), "each once"


def test_unwritable_home_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="MOTION_META_HOME"):
        SQLiteCache(blocker / "cache.db")


# --- customer store ------------------------------------------------------------------------------


def _result(customer: str, at: datetime, name: str = "Ada", error: MotionMetaError | None = None) -> FetchResult:
    user = None if error else MetaUser(id="1", name=name)
    return FetchResult(customer=customer, fetched_at=at, user=user, error=error)


def test_a_new_store_has_no_customers_and_keeps_notes(tmp_path: Path) -> None:
    store = SQLiteCustomerStore(tmp_path / "store.db")
    assert store.list_customers() == [], "the demo customer is seeded only by META_ACCESS_TOKEN"
    assert store.get_note("demo_seed") is None
    store.set_note("demo_seed", "one")
    store.set_note("demo_seed", "two")
    assert store.get_note("demo_seed") == "two"


def test_customers_can_be_added_listed_and_removed(tmp_path: Path) -> None:
    store = SQLiteCustomerStore(tmp_path / "store.db")
    store.add_customer("acme")
    store.add_customer("acme")
    store.add_customer("globex")
    assert [c.name for c in store.list_customers()] == ["acme", "globex"]
    store.remove_customer("acme")
    with pytest.raises(UnknownCustomerError, match=r"unknown customer 'acme' \(known: globex\)"):
        store.get_customer("acme")
    with pytest.raises(UnknownCustomerError):
        store.remove_customer("acme")


def test_customer_names_are_validated(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="invalid customer name"):
        SQLiteCustomerStore(tmp_path / "store.db").add_customer("a b;drop")


def test_an_older_fetch_never_overwrites_a_newer_snapshot(tmp_path: Path) -> None:
    store = SQLiteCustomerStore(tmp_path / "store.db")
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    store.save_result(_result("acme", now, "Newer"))
    store.save_result(_result("acme", now - timedelta(seconds=5), "Older"))
    latest = store.latest("acme")
    assert latest is not None
    assert latest.user["name"] == "Newer"
    assert latest.fetched_at == now
    assert [h["user"]["name"] for h in store.history("acme")] == ["Newer", "Older"]


def test_history_is_idempotent_and_keeps_failures(tmp_path: Path) -> None:
    store = SQLiteCustomerStore(tmp_path / "store.db")
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    store.save_result(_result("acme", now))
    store.save_result(_result("acme", now))  # a retried write of the same fetch
    store.save_result(_result("acme", now + timedelta(seconds=1), error=UnknownCustomerError("gone")))
    history = store.history("acme")
    assert len(history) == 2
    assert history[0]["ok"] is False
    assert history[0]["error_kind"] == "unknown_customer"
    latest = store.latest("acme")
    assert latest is not None and latest.fetched_at == now, "a failure keeps the last good snapshot"


# --- local secrets -------------------------------------------------------------------------------


def test_secrets_file_is_created_owner_only(tmp_path: Path) -> None:
    secrets = LocalSecretsStore(tmp_path / "home" / "secrets.json")
    secrets.put_secret("acme", "EAAsecret")
    mode = stat.S_IMODE((tmp_path / "home" / "secrets.json").stat().st_mode)
    assert mode == 0o600


def test_each_put_makes_a_new_version(tmp_path: Path) -> None:
    secrets = LocalSecretsStore(tmp_path / "secrets.json")
    v1 = secrets.put_secret("acme", "EAAone")
    v2 = secrets.put_secret("acme", "EAAtwo")
    record = secrets.get_secret("acme")
    assert v1 != v2
    assert record.version == v2
    assert record.token.get_secret_value() == "EAAtwo"
    assert "EAAtwo" not in repr(record)


def test_missing_secret_says_how_to_add_one(tmp_path: Path) -> None:
    secrets = LocalSecretsStore(tmp_path / "secrets.json")
    assert not secrets.has_secret("acme")
    with pytest.raises(MissingCredentialsError, match="no access token stored for customer 'acme'"):
        secrets.get_secret("acme")


def test_corrupt_secrets_file_is_reported_without_its_content(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    path.write_text('{"acme": {"token": "EAAleak"')
    with pytest.raises(ConfigError) as caught:
        LocalSecretsStore(path).get_secret("acme")
    assert "EAAleak" not in str(caught.value)
    assert "not valid JSON" in str(caught.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[]", 'must be a JSON object of customer -> {"token": "..."}'),
        ('{"alpha": {"token": 5}}', "for customer 'alpha'; store the token again"),
        ('{"alpha": "EAAplainStringInsteadOfAnObject"}', "for customer 'alpha'; store the token again"),
        ('{"alpha": {"version": "v1"}}', "for customer 'alpha'; store the token again"),
        ("{not json", "is not valid JSON"),
    ],
)
def test_a_secrets_file_of_another_shape_is_an_error_naming_the_customer(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "secrets.json"
    path.write_text(content)
    store = LocalSecretsStore(path)
    with pytest.raises(ConfigError) as caught:
        store.get_secret("alpha")
    assert message in str(caught.value)
    assert "EAAplain" not in str(caught.value)
    assert path.read_text() == content, "nothing was rewritten"


def test_the_one_valid_shape_of_the_secrets_file(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    path.write_text('{"alpha": {"token": "EAAalphaToken000000000", "version": "v1"}, "beta": {"token": ""}}')
    store = LocalSecretsStore(path)
    assert store.get_secret("alpha").token.get_secret_value() == "EAAalphaToken000000000"
    assert store.has_secret("alpha") and not store.has_secret("beta") and not store.has_secret("gamma")
    with pytest.raises(MissingCredentialsError):
        store.get_secret("beta")
