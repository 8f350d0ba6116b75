"""`motion-meta show`: what the store holds for one customer, its latest snapshot and recent fetches."""

from __future__ import annotations

from typing import Annotated

import typer

from motion_meta_cli.cli.errors import reported_errors


def show(
    customer: Annotated[str, typer.Option("--customer", "-c", help="Customer to show.")],
    history: Annotated[
        int, typer.Option("--history", min=0, max=1000, help="How many recent fetches to list (0: none).")
    ] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Show a customer's stored snapshot and fetch history (also for a removed customer: they are kept)."""
    with reported_errors():
        from motion_meta_cli.cli.context import open_app
        from motion_meta_cli.cli.render import render_stored
        from motion_meta_cli.errors import UnknownCustomerError
        from motion_meta_cli.models import validate_customer_name

        validate_customer_name(customer)
        with open_app() as handler:
            snapshot = handler.store.latest(customer)
            fetches = handler.store.history(customer, history) if history else []
            if snapshot is None and not fetches:
                handler.require_customer(customer)  # an unknown name gets the usual error, with the names known
            try:
                active: bool | None = handler.store.get_customer(customer).active
            except UnknownCustomerError:
                active = None  # removed: what was stored of it stays
        render_stored(customer, active, snapshot, list(fetches), as_json=as_json)
