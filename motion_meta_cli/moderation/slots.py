"""Per-customer slots: at most `limit` requests of one customer in flight across every instance
(SERVICES_META_USER_CONCURRENT_REQUESTS).

A slot is a lease in the record `slots:<customer>` (holder -> until). It is taken for one attempt and
lives as long as one (`RetryConfig.attempt_s` and a margin); while its holder is still waiting on
moderation it is renewed; it goes back in a `finally`, and a holder killed mid-request frees it when
the lease runs out.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from motion_meta_cli import metrics
from motion_meta_cli.errors import ThrottledError
from motion_meta_cli.moderation.state import ModerationState, holder_id


def _taking(holder: str, limit: int, until_ms: int) -> Callable[[dict[str, Any] | None, int], dict[str, Any]]:
    def change(record: dict[str, Any] | None, now: int) -> dict[str, Any]:
        holders = {h: t for h, t in (record or {}).get("holders", {}).items() if t > now}
        if holder in holders or len(holders) < limit:
            holders[holder] = now + until_ms
        return {"holders": holders, "expires_ms": max(holders.values(), default=now)}

    return change


def _giving_back(holder: str) -> Callable[[dict[str, Any] | None, int], dict[str, Any] | None]:
    def change(record: dict[str, Any] | None, now: int) -> dict[str, Any] | None:
        holders = {h: t for h, t in (record or {}).get("holders", {}).items() if t > now and h != holder}
        return {"holders": holders, "expires_ms": max(holders.values())} if holders else None

    return change


class SlotLease:
    """One held slot; `renew` extends it by another attempt's length (call it while waiting)."""

    def __init__(self, slots: CustomerSlots, customer: str, holder: str) -> None:
        self._slots, self.customer, self.holder = slots, customer, holder
        self._renewed = slots.clock()

    def renew(self) -> None:
        """Extend the lease once half of it has passed."""
        if self._slots.clock() - self._renewed >= self._slots.lease_s / 2:
            self._slots.state.update(
                f"slots:{self.customer}", _taking(self.holder, self._slots.limit, int(self._slots.lease_s * 1000))
            )
            self._renewed = self._slots.clock()


class CustomerSlots:
    """Caps one customer's requests in flight across instances.

    slots = CustomerSlots(state, limit=1, lease_s=34.0)
    with slots.hold("acme", wait_s=120) as lease:
        ...                                   # one attempt; lease.renew() while waiting before it
    """

    POLL_S = (0.02, 0.5)
    """First and longest wait between tries for a slot another request holds."""

    def __init__(
        self,
        state: ModerationState,
        *,
        limit: int,
        lease_s: float,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state, self.limit, self.lease_s = state, limit, lease_s
        self._sleep = sleep
        self.clock = clock

    @contextmanager
    def hold(self, customer: str, *, wait_s: float) -> Iterator[SlotLease]:
        """Hold one of `limit` slots of `customer` for the block; ThrottledError after `wait_s` without one."""
        holder, start, poll = holder_id(), self.clock(), self.POLL_S[0]
        take = _taking(holder, self.limit, int(self.lease_s * 1000))
        waited = False
        while holder not in (self.state.update(f"slots:{customer}", take) or {}).get("holders", {}):
            waited = True
            if self.clock() - start + poll > wait_s:
                raise ThrottledError(
                    f"customer {customer!r} already has {self.limit} request(s) in flight "
                    "(SERVICES_META_USER_CONCURRENT_REQUESTS); try again later",
                    scope=f"user:{customer}",
                    retry_after_s=poll,
                )
            self._sleep(poll)
            poll = min(poll * 2, self.POLL_S[1])
        if waited:
            metrics.waits.labels("customer_cap").observe(self.clock() - start)
        try:
            yield SlotLease(self, customer, holder)
        finally:
            self.state.update(f"slots:{customer}", _giving_back(holder))
