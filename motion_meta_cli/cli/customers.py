"""`motion-meta customers list|add|remove`."""

from __future__ import annotations

from typing import Annotated

import typer

from motion_meta_cli.cli.errors import reported_errors

app = typer.Typer(help="List, add and remove customers.", no_args_is_help=True)


@app.command("list")
def list_customers(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """List active customers."""
    with reported_errors():
        from motion_meta_cli.cli.context import open_app
        from motion_meta_cli.cli.render import render_customers

        with open_app() as handler:
            customers = handler.customers()
        render_customers(customers, as_json=as_json)


@app.command("add")
def add(name: Annotated[str, typer.Argument(help="Customer name: letters, digits, _ . @ -")]) -> None:
    """Add a customer (or re-activate one); safe to repeat."""
    with reported_errors():
        from motion_meta_cli.cli.context import open_app
        from motion_meta_cli.models import validate_customer_name

        validate_customer_name(name)
        with open_app() as handler:
            handler.store.add_customer(name)
        typer.echo(f"added {name}; store its token with `motion-meta credentials set --customer {name}`")


@app.command("remove")
def remove(name: Annotated[str, typer.Argument(help="Customer to remove (snapshots and history stay).")]) -> None:
    """Remove a customer; its stored snapshots and history stay. Safe to repeat."""
    with reported_errors():
        from motion_meta_cli.cli.context import open_app
        from motion_meta_cli.errors import UnknownCustomerError

        with open_app() as handler:
            try:
                handler.remove_customer(name)
            except UnknownCustomerError:  # like `add`, safe to repeat: the customer is not there either way
                typer.echo(f"{name} is not a customer; nothing to remove")
                return
        typer.echo(f"removed {name}")
