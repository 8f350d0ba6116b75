"""`motion-meta fetch`: fetch one customer's `/me` once and store it."""

from __future__ import annotations

from typing import Annotated

import typer

from motion_meta_cli.cli.errors import reported_errors

DEMO_CUSTOMER = "motion_test_user"


def fetch(
    customer: Annotated[str, typer.Option("--customer", "-c", help="Customer to fetch.")] = DEMO_CUSTOMER,
    fields: Annotated[
        str | None,
        typer.Option("--fields", help="Comma-separated /me fields; id and name are always included."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")] = False,
) -> None:
    """Fetch a customer's Meta /me profile once and store it."""
    with reported_errors():
        from motion_meta_cli.agent import parse_fields
        from motion_meta_cli.cli.context import open_app
        from motion_meta_cli.cli.render import render_user

        wanted = parse_fields(fields) if fields is not None else None
        with open_app() as app:
            result = app.fetch(customer, wanted)
        if result.error is not None:
            raise result.error
        render_user(result, as_json=as_json)
