"""AWS Lambda entry point: `motion_meta_cli.lambda_handler.handler`, the same core the CLI uses.

Event: `{"customers": ["acme", ...]}` or `{}` for every active customer. Configuration comes from the
function's environment, as for the CLI. One AppHandler lives as long as the execution environment: warm
invocations reuse its connections and held tokens, and it is closed when the environment shuts down.
No wait outlasts the invocation: a customer whose pause would end after `get_remaining_time_in_millis()`
(less a margin) is returned as deferred, with its wait, instead of being slept on.
"""

from __future__ import annotations

import atexit
import time
from typing import Any

from motion_meta_cli.app import AppHandler
from motion_meta_cli.config import load_settings
from motion_meta_cli.errors import ThrottledError, UsageError
from motion_meta_cli.logs import quiet_sdk_loggers
from motion_meta_cli.request_manager import DEADLINE

MARGIN_S = 3.0
"""Left of an invocation's time for storing results and answering."""

_app: AppHandler | None = None


def _application() -> tuple[AppHandler, bool]:
    """This execution environment's AppHandler, and whether it was already there (a warm invocation)."""
    global _app
    if _app is not None:
        return _app, True
    _app = AppHandler.from_settings(load_settings())
    atexit.register(_app.close)
    return _app, False


def handler(event: dict[str, Any] | None, context: object = None) -> dict[str, Any]:
    """Fetch and store the event's customers; returns who was fetched, failed, deferred and skipped, and each
    result."""
    quiet_sdk_loggers()
    customers = (event or {}).get("customers")
    if customers is not None and not (isinstance(customers, list) and all(isinstance(c, str) for c in customers)):
        raise UsageError('"customers" must be a list of customer names')
    app, warm = _application()
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    deadline = time.monotonic() + remaining_ms() / 1000 - MARGIN_S if callable(remaining_ms) else None
    token = DEADLINE.set(deadline)
    try:
        report = app.handle_request(customers)
    finally:
        DEADLINE.reset(token)
        app.rest()  # the environment may be frozen until the next invocation
    deferred = {
        result.customer: round(result.error.retry_after_s or 0.0, 3)
        for result in report.results
        if isinstance(result.error, ThrottledError)
    }
    return {
        "fetched": sorted(report.fetched),
        "failed": {customer: kind for customer, kind in sorted(report.failed.items()) if customer not in deferred},
        "deferred": dict(sorted(deferred.items())),
        "skipped": sorted(report.skipped_rejected),
        "warm": warm,
        "results": [r.to_dict() for r in sorted(report.results, key=lambda r: r.customer)],
    }
