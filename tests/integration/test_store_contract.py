"""One set of behaviour tests run against every CustomerStore, so the backends can never drift apart.

SQLite runs on a file under tmp_path; DynamoDB runs on moto over real HTTP, after `create_table`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from motion_meta_cli.errors import MotionMetaError, ThrottledError, UnknownCustomerError, UsageError
from motion_meta_cli.models import FetchResult, MetaUser
from motion_meta_cli.storage.base import CustomerStore
from motion_meta_cli.storage.sqlite_store import SQLiteCustomerStore

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


OpenStore = Callable[[], CustomerStore]


@pytest.fixture(params=["sqlite", "dynamodb"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenStore]:
    """Opens another instance of one backend, all on the same SQLite file or DynamoDB table."""
    opened: list[CustomerStore] = []

    def open_one() -> CustomerStore:
        store: CustomerStore
        if request.param == "sqlite":
            store = SQLiteCustomerStore(tmp_path / "store.db")
        else:
            from motion_meta_cli.storage.dynamodb_store import DynamoCustomerStore

            store = DynamoCustomerStore("motion-meta-contract")
        opened.append(store)
        return store

    if request.param == "dynamodb":
        request.getfixturevalue("moto_server")
    yield open_one
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: OpenStore) -> CustomerStore:
    """A store as `motion-meta store init` leaves it."""
    store = open_store()
    store.initialize()
    return store


def test_initialize_creates_once_and_is_safe_to_repeat(open_store: OpenStore) -> None:
    assert open_store().initialize() is True
    again = open_store()
    assert again.initialize() is False
    assert again.list_customers() == [], "no demo customer: only META_ACCESS_TOKEN seeds it"


def _result(at: datetime, name: str = "Ada", error: MotionMetaError | None = None) -> FetchResult:
    user = None if error else MetaUser(id="1", name=name, link="https://example.com/ada")
    return FetchResult(customer="acme", fetched_at=at, user=user, error=error)


def test_notes_are_kept_and_replaced(store: CustomerStore) -> None:
    assert store.get_note("demo_seed") is None
    store.set_note("demo_seed", '{"fingerprint": "ab"}')
    store.set_note("demo_seed", '{"fingerprint": "cd"}')
    assert store.get_note("demo_seed") == '{"fingerprint": "cd"}'
    assert store.list_customers() == [], "a note is no customer"


def test_adding_a_customer_is_idempotent(store: CustomerStore) -> None:
    first = store.add_customer("acme")
    again = store.add_customer("acme")
    assert first == again == store.get_customer("acme")
    assert first.active is True
    assert first.added_at.tzinfo is not None
    assert [c.name for c in store.list_customers()] == ["acme"]


def test_customer_names_are_validated(store: CustomerStore) -> None:
    with pytest.raises(UsageError, match="invalid customer name"):
        store.add_customer("a b;drop")


def test_a_removed_customer_is_unknown_with_the_same_message(store: CustomerStore) -> None:
    store.add_customer("globex")
    store.add_customer("acme")
    store.remove_customer("acme")
    with pytest.raises(UnknownCustomerError) as caught:
        store.get_customer("acme")
    assert str(caught.value) == "unknown customer 'acme' (known: globex)"
    with pytest.raises(UnknownCustomerError, match=r"^unknown customer 'acme' \(known: globex\)$"):
        store.remove_customer("acme")


def test_the_unknown_customer_message_names_at_most_five(store: CustomerStore) -> None:
    for name in ("f", "e", "d", "c", "b", "a"):
        store.add_customer(name)
    with pytest.raises(UnknownCustomerError) as caught:
        store.get_customer("zz")
    assert str(caught.value) == "unknown customer 'zz' (known: a, b, c, d, e, ...)"
    store.remove_customer("f")
    with pytest.raises(UnknownCustomerError) as caught:
        store.get_customer("zz")
    assert str(caught.value) == "unknown customer 'zz' (known: a, b, c, d, e)"


def test_customers_are_listed_in_name_order(store: CustomerStore) -> None:
    for name in ("zeta", "alpha", "Mid", "a.b@c-d_e"):
        store.add_customer(name)
    expected = ["Mid", "a.b@c-d_e", "alpha", "zeta"]  # byte order: upper case first
    assert [c.name for c in store.list_customers()] == expected
    assert [c.name for c in store.list_customers(active_only=True)] == expected
    assert [c.name for c in store.list_customers(active_only=False)] == expected


def test_the_newer_snapshot_wins(store: CustomerStore) -> None:
    assert store.latest("acme") is None
    store.save_result(_result(NOW, "Newer"))
    store.save_result(_result(NOW - timedelta(seconds=5), "Older"))
    latest = store.latest("acme")
    assert latest is not None
    assert (latest.customer, latest.fetched_at) == ("acme", NOW)
    assert latest.user == {"id": "1", "name": "Newer", "link": "https://example.com/ada"}
    store.save_result(_result(NOW + timedelta(microseconds=1), "Newest"))
    latest = store.latest("acme")
    assert latest is not None and latest.user["name"] == "Newest"


def test_of_two_fetches_in_one_instant_the_last_written_wins_in_snapshot_and_history_alike(
    store: CustomerStore,
) -> None:
    store.save_result(_result(NOW, "First"))
    store.save_result(_result(NOW, "Second"))  # a retry writes the same again; two fetches in one µs, the last
    latest = store.latest("acme")
    assert latest is not None and latest.user["name"] == "Second"
    assert [h["user"]["name"] for h in store.history("acme")] == ["Second"]
    store.save_results([_result(NOW, "Third"), _result(NOW, "Fourth")])  # and within one batch
    latest = store.latest("acme")
    assert latest is not None and latest.user["name"] == "Fourth"
    assert [h["user"]["name"] for h in store.history("acme")] == ["Fourth"]


def test_history_is_idempotent_and_a_failure_keeps_the_snapshot(store: CustomerStore) -> None:
    store.save_result(_result(NOW))
    store.save_result(_result(NOW))  # a retried write of the same fetch
    store.save_result(_result(NOW + timedelta(seconds=1), error=ThrottledError("rate limited")))
    store.save_result(_result(NOW + timedelta(seconds=1), error=ThrottledError("rate limited")))
    assert [h["ok"] for h in store.history("acme")] == [False, True]
    latest = store.latest("acme")
    assert latest is not None and latest.fetched_at == NOW


def test_history_has_one_shape(store: CustomerStore) -> None:
    store.save_result(_result(NOW + timedelta(milliseconds=1500), error=ThrottledError("rate limited")))
    store.save_result(_result(NOW))
    store.save_result(_result(NOW + timedelta(seconds=3), "Later"))
    assert list(store.history("acme")) == [
        {
            "fetched_at": "2026-11-28T12:00:03.000Z",
            "ok": True,
            "error_kind": None,
            "error_message": None,
            "user": {"id": "1", "name": "Later", "link": "https://example.com/ada"},
        },
        {
            "fetched_at": "2026-11-28T12:00:01.500Z",
            "ok": False,
            "error_kind": "throttled",
            "error_message": "rate limited",
            "user": None,
        },
        {
            "fetched_at": "2026-11-28T12:00:00.000Z",
            "ok": True,
            "error_kind": None,
            "error_message": None,
            "user": {"id": "1", "name": "Ada", "link": "https://example.com/ada"},
        },
    ]
    assert [h["fetched_at"] for h in store.history("acme", limit=2)] == [
        "2026-11-28T12:00:03.000Z",
        "2026-11-28T12:00:01.500Z",
    ]
    assert list(store.history("nobody")) == []
