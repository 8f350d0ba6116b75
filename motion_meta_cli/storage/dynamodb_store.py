"""The production customer store: customers, latest snapshots and fetch history in one DynamoDB table.

Single-table layout (every key attribute is a string):

    pk                  sk                          attributes
    CUSTOMERS           <name>                      active BOOL, added_at S (ISO 8601)
    CUSTOMER#<name>     SNAPSHOT                    fetched_at S, fetched_at_us N, user S (JSON)
    CUSTOMER#<name>     HISTORY#<fetched_at_us>     fetched_at S, ok BOOL, error_kind S, error_message S, user S
    NOTES               <key>                       value S

All customers share one partition, so listing them is one paginated Query in name order, never a Scan.
History sort keys carry the fetch instant in microseconds, zero-padded to 20 digits so that string order
is time order; `error_kind`, `error_message` and `user` are absent when they do not apply. Writes are
batched and idempotent: a history item is keyed by its fetch instant (a retry puts the same item again), and
the snapshot is only replaced by a fetch at least as new (a conditional put in a transaction), so retries and
fetches that finish out of order behave exactly as in `SQLiteCustomerStore`; within one instant the last
write wins in both. Reads are strongly consistent, as SQLite's are. Only imported when DynamoDB is configured.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import botocore.exceptions

from motion_meta_cli.errors import BackendUnavailableError, ConfigError, UnknownCustomerError
from motion_meta_cli.models import Customer, FetchResult, iso_utc, utc_now, validate_customer_name
from motion_meta_cli.storage.aws import aws_client, aws_errors, error_code
from motion_meta_cli.storage.base import Snapshot

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, QueryInputTypeDef

    Item = dict[str, AttributeValueTypeDef]

_CUSTOMERS_PK = "CUSTOMERS"
_NOTES_PK = "NOTES"
_SNAPSHOT_SK = "SNAPSHOT"
_HISTORY_PREFIX = "HISTORY#"
WRITE_BATCH = 25
"""Items per BatchWriteItem call (DynamoDB's limit) and per snapshot transaction."""
TRANSACTION_BYTES = 4_000_000
"""The most item bytes per snapshot transaction: DynamoDB refuses a TransactWriteItems over 4 MB in all, which
16 profiles near MAX_PROFILE_BYTES would exceed (a BatchWriteItem may hold 16 MB: 25 items always fit)."""
WRITE_ATTEMPTS = 6
"""Tries of a batch's unprocessed or conflicting writes before the store counts as not answering."""


def _backoff_s(attempt: int) -> float:
    """Before retry `attempt` (1-based) of unprocessed writes: 50 ms doubling, at most 1 s, with full jitter."""
    return random.uniform(0, min(1.0, 0.05 * 2 ** (attempt - 1)))


def _when(item: Item) -> int:
    return int(item["fetched_at_us"]["N"])


def _micros(moment: datetime) -> int:
    # Same arithmetic as SQLiteCustomerStore, so both stores key a fetch by the same instant.
    return int(moment.timestamp() * 1_000_000)


def _customer_pk(name: str) -> str:
    return f"CUSTOMER#{name}"


class DynamoCustomerStore:
    """`CustomerStore` on one DynamoDB table, which `create_table` makes.

    store = DynamoCustomerStore("motion-meta")
    store.create_table()                  # once, from `motion-meta store init`; safe to repeat
    store.save_result(result)             # history item, and the snapshot unless a newer one is stored
    store.latest("motion_test_user")

    `page_size` caps the items per Query page (DynamoDB's own 1 MB pages when None); tests lower it.
    """

    def __init__(
        self,
        table_name: str,
        *,
        client: Any | None = None,
        page_size: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.table_name = table_name
        self._sleep = sleep
        self._owns_client = client is None
        self._client: DynamoDBClient = aws_client("dynamodb") if client is None else client
        self._page_size = page_size

    def create_table(self) -> bool:
        """Create the table if needed and wait until it is ACTIVE; True if this call created it."""
        with self._errors():
            try:
                self._client.create_table(
                    TableName=self.table_name,
                    AttributeDefinitions=[
                        {"AttributeName": "pk", "AttributeType": "S"},
                        {"AttributeName": "sk", "AttributeType": "S"},
                    ],
                    KeySchema=[
                        {"AttributeName": "pk", "KeyType": "HASH"},
                        {"AttributeName": "sk", "KeyType": "RANGE"},
                    ],
                    BillingMode="PAY_PER_REQUEST",
                )
                created = True
            except botocore.exceptions.ClientError as exc:
                if error_code(exc) != "ResourceInUseException":
                    raise
                created = False  # it exists, or another process is creating it: the waiter covers both
            try:
                self._client.get_waiter("table_exists").wait(
                    TableName=self.table_name, WaiterConfig={"Delay": 2, "MaxAttempts": 60}
                )
            except botocore.exceptions.WaiterError as exc:
                if "Error" in exc.last_response:  # DescribeTable itself failed: translate it like any other call
                    raise botocore.exceptions.ClientError(exc.last_response, "DescribeTable") from None
                raise BackendUnavailableError(
                    f"DynamoDB table {self.table_name!r} is not ACTIVE after 2 minutes; run `motion-meta store init` "
                    "again later"
                ) from None
        return created

    def initialize(self) -> bool:
        """`CustomerStore.initialize`: the same as `create_table`."""
        return self.create_table()

    def add_customer(self, name: str) -> Customer:
        """Add (or re-activate) a customer; safe to repeat."""
        validate_customer_name(name)
        with self._errors():
            response = self._client.update_item(
                TableName=self.table_name,
                Key={"pk": {"S": _CUSTOMERS_PK}, "sk": {"S": name}},
                UpdateExpression="SET active = :true, added_at = if_not_exists(added_at, :now)",
                ExpressionAttributeValues={":true": {"BOOL": True}, ":now": {"S": iso_utc(utc_now())}},
                ReturnValues="ALL_NEW",
            )
        return _customer(response["Attributes"])

    def get_note(self, key: str) -> str | None:
        """A small value the app keeps beside the customers (e.g. what the environment last seeded)."""
        with self._errors():
            response = self._client.get_item(
                TableName=self.table_name, Key={"pk": {"S": _NOTES_PK}, "sk": {"S": key}}, ConsistentRead=True
            )
        item = response.get("Item")
        return None if item is None else item["value"]["S"]

    def set_note(self, key: str, value: str) -> None:
        """Store a note, replacing any under `key`."""
        with self._errors():
            self._client.put_item(
                TableName=self.table_name, Item={"pk": {"S": _NOTES_PK}, "sk": {"S": key}, "value": {"S": value}}
            )

    def remove_customer(self, name: str) -> None:
        """Remove a customer; its snapshot and history stay."""
        with self._errors():
            try:
                self._client.delete_item(
                    TableName=self.table_name,
                    Key={"pk": {"S": _CUSTOMERS_PK}, "sk": {"S": name}},
                    ConditionExpression="attribute_exists(pk)",
                )
            except botocore.exceptions.ClientError as exc:
                if error_code(exc) != "ConditionalCheckFailedException":
                    raise
                raise self._unknown(name) from None

    def get_customer(self, name: str) -> Customer:
        """The customer; raises UnknownCustomerError."""
        with self._errors():
            response = self._client.get_item(
                TableName=self.table_name,
                Key={"pk": {"S": _CUSTOMERS_PK}, "sk": {"S": name}},
                ConsistentRead=True,
            )
        if "Item" not in response:
            raise self._unknown(name)
        return _customer(response["Item"])

    def list_customers(self, active_only: bool = True) -> list[Customer]:
        """Customers in name order."""
        query: QueryInputTypeDef = {
            "TableName": self.table_name,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": _CUSTOMERS_PK}},
        }
        if active_only:
            query["FilterExpression"] = "active = :true"
            query["ExpressionAttributeValues"] = {":pk": {"S": _CUSTOMERS_PK}, ":true": {"BOOL": True}}
        return [_customer(item) for item in self._query(query)]

    def save_results(self, results: Sequence[FetchResult]) -> None:
        """Store a batch in a few calls: the history items with BatchWriteItem, WRITE_BATCH per call, and the
        snapshots with TransactWriteItems, each put unless a newer fetch is stored. Items DynamoDB leaves
        unprocessed are retried with backoff; if some remain, BackendUnavailableError, and the caller's retry
        of the whole batch is safe (a history item is keyed by its fetch instant, a snapshot only moves on)."""
        history: dict[tuple[str, str], Item] = {}
        snapshots: dict[str, Item] = {}
        for result in results:
            item, snapshot = self._items(result)
            history[(item["pk"]["S"], item["sk"]["S"])] = item
            newest = snapshots.get(result.customer)
            if snapshot is not None and (newest is None or _when(snapshot) >= _when(newest)):
                snapshots[result.customer] = snapshot
        items = list(history.values())
        with self._errors():
            for start in range(0, len(items), WRITE_BATCH):
                self._batch_put(items[start : start + WRITE_BATCH])
            for group in _groups(list(snapshots.values()), WRITE_BATCH, TRANSACTION_BYTES):
                self._put_if_newer(group)

    def save_result(self, result: FetchResult) -> None:
        """Append to history (one item per customer and instant: a retry writes it again); on success update the
        snapshot unless a newer fetch is stored. Within one instant the last write wins, as in SQLite."""
        self.save_results([result])

    def _items(self, result: FetchResult) -> tuple[Item, Item | None]:
        """`result`'s history item, and its snapshot item when it fetched a user."""
        when_us = _micros(result.fetched_at)
        # UTF-8 as it is, as MetaUser measures it: escaped, a profile of emoji would take three times the bytes.
        user_json = (
            json.dumps(result.user.fields(), sort_keys=True, ensure_ascii=False) if result.user is not None else None
        )
        error = result.error
        history: Item = {
            "pk": {"S": _customer_pk(result.customer)},
            "sk": {"S": f"{_HISTORY_PREFIX}{when_us:020d}"},
            "fetched_at": {"S": iso_utc(result.fetched_at)},
            "ok": {"BOOL": result.ok},
        }
        if error is not None:
            history["error_kind"] = {"S": error.kind}
            history["error_message"] = {"S": error.message}
        if user_json is None:
            return history, None
        history["user"] = {"S": user_json}
        snapshot: Item = {
            "pk": {"S": _customer_pk(result.customer)},
            "sk": {"S": _SNAPSHOT_SK},
            "fetched_at": {"S": iso_utc(result.fetched_at)},
            "fetched_at_us": {"N": str(when_us)},
            "user": {"S": user_json},
        }
        return history, snapshot

    def _batch_put(self, items: list[Item]) -> None:
        """Put `items` (at most WRITE_BATCH, distinct keys) with BatchWriteItem, retrying what is left unprocessed."""
        requests: list[Any] = [{"PutRequest": {"Item": item}} for item in items]
        for attempt in range(WRITE_ATTEMPTS):
            if attempt:
                self._sleep(_backoff_s(attempt))
            response = self._client.batch_write_item(RequestItems={self.table_name: requests})
            requests = list(response.get("UnprocessedItems", {}).get(self.table_name, []))
            if not requests:
                return
        raise BackendUnavailableError(
            f"DynamoDB left {len(requests)} history write(s) unprocessed after {WRITE_ATTEMPTS} tries; try again later"
        )

    def _put_if_newer(self, snapshots: list[Item]) -> None:
        """Put each snapshot (one per customer) unless a newer fetch is stored, in one transaction. A
        snapshot whose condition fails is dropped (a newer one is stored: the expected outcome) and the
        transaction tried again without it; a conflict with another writer is retried with backoff."""
        pending = snapshots
        for attempt in range(WRITE_ATTEMPTS):
            if not pending:
                return
            if attempt:
                self._sleep(_backoff_s(attempt))
            try:
                self._client.transact_write_items(
                    TransactItems=[
                        {
                            "Put": {
                                "TableName": self.table_name,
                                "Item": item,
                                "ConditionExpression": "attribute_not_exists(pk) OR fetched_at_us <= :t",
                                "ExpressionAttributeValues": {":t": item["fetched_at_us"]},
                            }
                        }
                        for item in pending
                    ]
                )
                return
            except botocore.exceptions.ClientError as exc:
                if error_code(exc) != "TransactionCanceledException":
                    raise
                reasons = [reason.get("Code") for reason in exc.response.get("CancellationReasons", [])]
                if len(reasons) != len(pending):
                    raise
                failed = {index for index, code in enumerate(reasons) if code == "ConditionalCheckFailed"}
                pending = [item for index, item in enumerate(pending) if index not in failed]
        if pending:
            raise BackendUnavailableError(
                f"DynamoDB kept cancelling {len(pending)} snapshot write(s) after {WRITE_ATTEMPTS} tries; "
                "try again later"
            )

    def latest(self, customer: str) -> Snapshot | None:
        """The newest stored user of `customer`."""
        with self._errors():
            response = self._client.get_item(
                TableName=self.table_name,
                Key={"pk": {"S": _customer_pk(customer)}, "sk": {"S": _SNAPSHOT_SK}},
                ConsistentRead=True,
            )
        item = response.get("Item")
        if item is None:
            return None
        return Snapshot(
            customer=customer,
            fetched_at=datetime.fromtimestamp(int(item["fetched_at_us"]["N"]) / 1_000_000, UTC),
            user=json.loads(item["user"]["S"]),
        )

    def history(self, customer: str, limit: int = 20) -> list[dict[str, Any]]:
        """The most recent fetches of `customer`, newest first."""
        if limit <= 0:
            return []
        query: QueryInputTypeDef = {
            "TableName": self.table_name,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":pk": {"S": _customer_pk(customer)}, ":prefix": {"S": _HISTORY_PREFIX}},
            "ScanIndexForward": False,
        }
        return [
            {
                "fetched_at": item["fetched_at"]["S"],
                "ok": item["ok"]["BOOL"],
                "error_kind": item["error_kind"]["S"] if "error_kind" in item else None,
                "error_message": item["error_message"]["S"] if "error_message" in item else None,
                "user": json.loads(item["user"]["S"]) if "user" in item else None,
            }
            for item in self._query(query, limit=limit)
        ]

    def close(self) -> None:
        """Close the client's connections, unless the client was passed in (its owner closes it)."""
        if self._owns_client:
            self._client.close()

    def _query(self, query: QueryInputTypeDef, limit: int | None = None) -> list[Item]:
        """The items of a strongly consistent Query, page after page, at most `limit` of them."""
        query = {**query, "ConsistentRead": True}
        items: list[Item] = []
        with self._errors():
            while limit is None or len(items) < limit:
                sizes = [n for n in (self._page_size, None if limit is None else limit - len(items)) if n is not None]
                if sizes:
                    query["Limit"] = min(sizes)
                page = self._client.query(**query)
                items += page["Items"]
                if "LastEvaluatedKey" not in page:
                    break
                query["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return items[:limit]

    def _unknown(self, name: str) -> UnknownCustomerError:
        query: QueryInputTypeDef = {
            "TableName": self.table_name,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": _CUSTOMERS_PK}},
            "ProjectionExpression": "sk",
        }
        names = [item["sk"]["S"] for item in self._query(query, limit=6)]
        known = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "") if names else "none"
        return UnknownCustomerError(f"unknown customer {name!r} (known: {known})")

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """A missing table says how to create it; everything else is translated by `aws_errors`."""
        with aws_errors("DynamoDB"):
            try:
                yield
            except botocore.exceptions.ClientError as exc:
                if error_code(exc) == "ResourceNotFoundException":
                    raise ConfigError(
                        f"DynamoDB table {self.table_name!r} does not exist; run `motion-meta store init`"
                    ) from None
                raise


def _item_bytes(item: Item) -> int:
    """An item's size as DynamoDB counts it, near enough: each attribute's name and value in UTF-8 bytes."""
    return sum(len(name.encode()) + len(str(next(iter(value.values()))).encode()) for name, value in item.items())


def _groups(items: list[Item], most: int, most_bytes: int) -> Iterator[list[Item]]:
    """`items` in order, in groups of at most `most` items and `most_bytes` bytes (an item larger than that
    alone)."""
    group: list[Item] = []
    size = 0
    for item in items:
        item_size = _item_bytes(item)
        if group and (len(group) == most or size + item_size > most_bytes):
            yield group
            group, size = [], 0
        group.append(item)
        size += item_size
    if group:
        yield group


def _customer(item: Item) -> Customer:
    return Customer(
        name=item["sk"]["S"], active=item["active"]["BOOL"], added_at=datetime.fromisoformat(item["added_at"]["S"])
    )
