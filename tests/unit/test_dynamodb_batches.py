"""What DynamoDB leaves undone in a batch is retried with backoff; what stays undone is a backend error.

A stub client stands in for DynamoDB's answers that moto does not give (unprocessed items, conflicts)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import botocore.exceptions
import pytest

from motion_meta_cli.errors import BackendUnavailableError
from motion_meta_cli.models import FetchResult, MetaUser
from motion_meta_cli.storage.dynamodb_store import WRITE_ATTEMPTS, DynamoCustomerStore

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


class StubDynamo:
    """Leaves the first `unprocessed` answers' last item unprocessed; cancels the first `conflicts`
    transactions for a conflict on their first item."""

    def __init__(self, *, unprocessed: int = 0, conflicts: int = 0) -> None:
        self.unprocessed, self.conflicts = unprocessed, conflicts
        self.batches: list[int] = []
        self.transactions: list[int] = []

    def batch_write_item(self, RequestItems: dict[str, list[Any]]) -> dict[str, Any]:
        [(table, requests)] = RequestItems.items()
        self.batches.append(len(requests))
        if self.unprocessed:
            self.unprocessed -= 1
            return {"UnprocessedItems": {table: requests[-1:]}}
        return {"UnprocessedItems": {}}

    def transact_write_items(self, TransactItems: list[Any]) -> dict[str, Any]:
        self.transactions.append(len(TransactItems))
        if self.conflicts:
            self.conflicts -= 1
            reasons = [{"Code": "TransactionConflict"}] + [{"Code": "None"}] * (len(TransactItems) - 1)
            raise botocore.exceptions.ClientError(
                {"Error": {"Code": "TransactionCanceledException"}, "CancellationReasons": reasons},
                "TransactWriteItems",
            )
        return {}


def _results(count: int) -> list[FetchResult]:
    return [FetchResult(f"c{n}", NOW, user=MetaUser(id=str(n), name=f"U{n}")) for n in range(count)]


def test_unprocessed_history_items_are_retried_with_backoff() -> None:
    stub, sleeps = StubDynamo(unprocessed=2), []
    DynamoCustomerStore("t", client=stub, sleep=sleeps.append).save_results(_results(3))
    assert stub.batches == [3, 1, 1]
    assert len(sleeps) == 2 and all(0 <= s <= 1.0 for s in sleeps)


def test_a_conflicting_snapshot_transaction_is_tried_again() -> None:
    stub = StubDynamo(conflicts=1)
    DynamoCustomerStore("t", client=stub, sleep=lambda _s: None).save_results(_results(3))
    assert stub.transactions == [3, 3]


def test_writes_left_undone_after_every_try_are_a_backend_error_for_the_caller_to_retry() -> None:
    stub = StubDynamo(unprocessed=WRITE_ATTEMPTS)
    store = DynamoCustomerStore("t", client=stub, sleep=lambda _s: None)
    with pytest.raises(BackendUnavailableError, match="left 1 history write"):
        store.save_results(_results(2))
    assert len(stub.batches) == WRITE_ATTEMPTS
