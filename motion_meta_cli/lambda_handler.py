"""AWS Lambda entry point: `motion_meta_cli.lambda_handler.handler`, the same core the CLI uses.

Event: `{"customers": ["acme", ...]}` or `{}` for every active customer. Configuration comes from the
function's environment, as for the CLI.
"""

from __future__ import annotations

from typing import Any

from motion_meta_cli.app import AppHandler
from motion_meta_cli.config import load_settings
from motion_meta_cli.errors import UsageError
from motion_meta_cli.logs import quiet_sdk_loggers


def handler(event: dict[str, Any] | None, context: object = None) -> dict[str, Any]:
    """Fetch and store the event's customers; returns who was fetched, failed and skipped, and each result."""
    quiet_sdk_loggers()
    customers = (event or {}).get("customers")
    if customers is not None and not (isinstance(customers, list) and all(isinstance(c, str) for c in customers)):
        raise UsageError('"customers" must be a list of customer names')
    with AppHandler.from_settings(load_settings()) as app:
        report = app.handle_request(customers)
    return {
        "fetched": sorted(report.fetched),
        "failed": dict(sorted(report.failed.items())),
        "skipped": sorted(report.skipped_rejected),
        "results": [r.to_dict() for r in sorted(report.results, key=lambda r: r.customer)],
    }
