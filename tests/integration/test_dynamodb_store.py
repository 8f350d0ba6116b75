"""DynamoCustomerStore over real HTTP against moto: what only DynamoDB has (table setup, pages, AWS failures).

The behaviour it shares with the SQLite store is pinned in test_store_contract.py.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from motion_meta_cli.errors import BackendUnavailableError, ConfigError, UpstreamError
from motion_meta_cli.models import FetchResult, MetaUser
from motion_meta_cli.storage.aws import aws_client
from motion_meta_cli.storage.dynamodb_store import DynamoCustomerStore
from tests.integration.conftest import MotoServer, free_port

pytestmark = pytest.mark.integration

TABLE = "motion-meta-test"
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def _ok(at: datetime, name: str = "Ada") -> FetchResult:
    return FetchResult(customer="acme", fetched_at=at, user=MetaUser(id="1", name=name))


@pytest.fixture
def store(moto_server: MotoServer) -> DynamoCustomerStore:
    store = DynamoCustomerStore(TABLE)
    store.create_table()
    return store


def test_create_table_is_safe_to_run_twice_and_adds_no_customer(moto_server: MotoServer) -> None:
    store = DynamoCustomerStore(TABLE)
    assert store.create_table() is True
    store.add_customer("acme")
    assert store.create_table() is False
    assert [c.name for c in store.list_customers()] == ["acme"], "no demo customer: only META_ACCESS_TOKEN seeds it"
    table = aws_client("dynamodb").describe_table(TableName=TABLE)["Table"]
    assert table["TableStatus"] == "ACTIVE"
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"


def test_customers_are_added_listed_and_removed(store: DynamoCustomerStore) -> None:
    added = store.add_customer("acme")
    assert added.active is True
    assert store.get_customer("acme") == added
    assert [c.name for c in store.list_customers()] == ["acme"]
    store.set_note("demo_seed", "x")
    store.remove_customer("acme")
    assert store.list_customers() == [], "a note is no customer"


def test_inactive_customers_are_listed_only_on_request(store: DynamoCustomerStore) -> None:
    store.add_customer("acme")
    aws_client("dynamodb").update_item(
        TableName=TABLE,
        Key={"pk": {"S": "CUSTOMERS"}, "sk": {"S": "acme"}},
        UpdateExpression="SET active = :false",
        ExpressionAttributeValues={":false": {"BOOL": False}},
    )
    assert store.list_customers() == []
    assert [(c.name, c.active) for c in store.list_customers(active_only=False)] == [("acme", False)]
    first_added = store.get_customer("acme").added_at
    assert store.add_customer("acme").active is True, "adding again re-activates"
    assert store.get_customer("acme").added_at == first_added


def test_listing_follows_pages_in_name_order(moto_server: MotoServer) -> None:
    client = aws_client("dynamodb")
    store = DynamoCustomerStore(TABLE, client=client, page_size=50)
    store.create_table()
    names = [f"c{i:03d}" for i in range(120)]
    for start in range(0, len(names), 25):
        client.batch_write_item(
            RequestItems={
                TABLE: [
                    {
                        "PutRequest": {
                            "Item": {
                                "pk": {"S": "CUSTOMERS"},
                                "sk": {"S": name},
                                "active": {"BOOL": True},
                                "added_at": {"S": "2026-11-28T12:00:00.000Z"},
                            }
                        }
                    }
                    for name in names[start : start + 25]
                ]
            }
        )
    queries: list[str] = []
    client.meta.events.register("after-call.dynamodb.Query", lambda **_: queries.append("Query"))
    assert [c.name for c in store.list_customers()] == names
    assert len(queries) >= 3, "120 customers in pages of 50 take three Query calls"


def test_an_older_fetch_finishing_late_keeps_the_newer_snapshot(store: DynamoCustomerStore) -> None:
    store.save_result(_ok(NOW, "Newer"))
    store.save_result(_ok(NOW - timedelta(seconds=5), "Older"))
    latest = store.latest("acme")
    assert latest is not None
    assert (latest.user["name"], latest.fetched_at) == ("Newer", NOW)
    assert [h["user"]["name"] for h in store.history("acme")] == ["Newer", "Older"]


def test_a_retried_write_lands_once(store: DynamoCustomerStore) -> None:
    result = _ok(NOW)
    store.save_result(result)
    store.save_result(result)
    assert len(store.history("acme")) == 1
    latest = store.latest("acme")
    assert latest is not None and latest.fetched_at == NOW


def test_history_is_newest_first_and_limited(store: DynamoCustomerStore) -> None:
    for seconds in (3, 1, 4, 0, 2):
        store.save_result(_ok(NOW + timedelta(seconds=seconds), f"v{seconds}"))
    assert [h["user"]["name"] for h in store.history("acme", limit=3)] == ["v4", "v3", "v2"]
    assert len(store.history("acme")) == 5
    assert store.history("acme", limit=0) == []


def test_history_limit_spans_pages(moto_server: MotoServer) -> None:
    store = DynamoCustomerStore(TABLE, page_size=2)
    store.create_table()
    for seconds in range(5):
        store.save_result(_ok(NOW + timedelta(seconds=seconds), f"v{seconds}"))
    assert [h["user"]["name"] for h in store.history("acme", limit=3)] == ["v4", "v3", "v2"]


def test_a_failure_keeps_the_last_good_snapshot(store: DynamoCustomerStore) -> None:
    store.save_result(_ok(NOW))
    failure = FetchResult(customer="acme", fetched_at=NOW + timedelta(seconds=1), error=UpstreamError("Meta 500"))
    store.save_result(failure)
    latest = store.latest("acme")
    assert latest is not None and latest.fetched_at == NOW
    assert store.history("acme")[0] == {
        "fetched_at": "2026-11-28T12:00:01.000Z",
        "ok": False,
        "error_kind": "upstream",
        "error_message": "Meta 500",
        "user": None,
    }


def test_a_missing_table_says_how_to_create_it(moto_server: MotoServer) -> None:
    store = DynamoCustomerStore("nope")
    with pytest.raises(ConfigError) as caught:
        store.list_customers()
    message = str(caught.value)
    assert message == "DynamoDB table 'nope' does not exist; run `motion-meta store init`"
    for call in (lambda: store.save_result(_ok(NOW)), lambda: store.get_customer("acme"), lambda: store.latest("a")):
        with pytest.raises(ConfigError, match="store init"):
            call()


def test_missing_aws_credentials_are_a_config_error(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        monkeypatch.delenv(name, raising=False)
    for name in ("AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(ConfigError, match="no AWS credentials for DynamoDB"):
        DynamoCustomerStore(TABLE).list_customers()


def test_an_unreachable_endpoint_is_reported_quickly(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in MotoServer(f"http://127.0.0.1:{free_port()}").env().items():
        monkeypatch.setenv(name, value)
    store = DynamoCustomerStore(TABLE, client=aws_client("dynamodb", max_attempts=1))
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError, match="cannot reach DynamoDB"):
        store.list_customers()
    assert time.monotonic() - started < 5


def _for(customer: str, at: datetime, name: str = "Ada") -> FetchResult:
    return FetchResult(customer=customer, fetched_at=at, user=MetaUser(id="1", name=name))


def test_a_batch_is_stored_in_batch_writes_and_snapshot_transactions(store: DynamoCustomerStore) -> None:
    store.save_result(_for("c00", NOW + timedelta(minutes=5), "Newer"))  # c00's stored snapshot is newer
    calls: list[str] = []
    store._client.meta.events.register("before-call.dynamodb", lambda model, **_: calls.append(model.name))
    batch = [_for(f"c{n:02d}", NOW, f"User {n}") for n in range(40)]

    store.save_results(batch)

    assert calls.count("BatchWriteItem") == 2, "40 history items: 25 + 15"
    # 2 transactions of snapshots, and once more the first without c00's: its stored snapshot is newer.
    assert calls.count("TransactWriteItems") == 3
    assert set(calls) == {"BatchWriteItem", "TransactWriteItems"}
    snapshot = store.latest("c00")
    assert snapshot is not None and snapshot.user["name"] == "Newer", "an older fetch never replaces a newer one"
    for n in (1, 24, 25, 39):
        latest = store.latest(f"c{n:02d}")
        assert latest is not None and latest.user["name"] == f"User {n}"
        assert [h["user"]["name"] for h in store.history(f"c{n:02d}")] == [f"User {n}"]
    assert [h["user"]["name"] for h in store.history("c00")] == ["Newer", "User 0"], "history keeps both"


def test_large_profiles_are_stored_in_transactions_dynamodb_accepts(store: DynamoCustomerStore) -> None:
    # Sixteen profiles near the 256 KiB cap, in emoji (4 UTF-8 bytes, 12 when escaped as JSON): one batch of
    # them is more than DynamoDB takes in one TransactWriteItems (4 MB), and escaped, more than one item.
    big = {f"f{n}": "\N{GRINNING FACE}" * 16_000 for n in range(4)}  # 4 × 64 kB
    batch = [
        FetchResult(customer=f"c{n:02d}", fetched_at=NOW, user=MetaUser(id=str(n), name=f"User {n}", **big))
        for n in range(16)
    ]
    sizes: list[int] = []

    def record(params: dict[str, Any], **_: object) -> None:
        sizes.append(sum(len(entry["Put"]["Item"]["user"]["S"].encode()) for entry in params["TransactItems"]))

    store._client.meta.events.register("provide-client-params.dynamodb.TransactWriteItems", record)
    store.save_results(batch)

    assert len(sizes) > 1 and all(size <= 4_000_000 for size in sizes), f"each transaction under 4 MB: {sizes}"
    for n in (0, 15):
        latest = store.latest(f"c{n:02d}")
        assert latest is not None and latest.user == batch[n].user.fields()  # type: ignore[union-attr]
        assert len(json.dumps(latest.user, ensure_ascii=False).encode()) < 400_000, "it fits one item"
