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


@app.command("import")
def import_customers() -> None:
    """Add customers, and store their tokens, from JSON lines on stdin: {"customer": "acme", "token": "EAA..."}
    (the token is optional). Every line is checked before anything is written; tokens never go in arguments."""
    with reported_errors():
        import json
        import sys

        from motion_meta_cli.cli.context import open_app
        from motion_meta_cli.credentials import validate_token
        from motion_meta_cli.errors import UsageError
        from motion_meta_cli.models import validate_customer_name

        names: list[str] = []
        tokens: dict[str, str] = {}
        for number, line in enumerate(sys.stdin, start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                raise UsageError(f"stdin line {number} is not JSON") from None  # never echo it: it may hold a token
            if not isinstance(entry, dict) or not isinstance(entry.get("customer"), str):
                raise UsageError(f'stdin line {number} is not an object like {{"customer": "acme", "token": "EAA..."}}')
            name = entry["customer"]
            try:
                validate_customer_name(name)
                if "token" in entry:
                    if not isinstance(entry["token"], str):
                        raise UsageError("its token is not a string")
                    tokens[name] = validate_token(entry["token"])
            except UsageError as exc:
                raise UsageError(f"stdin line {number}: {exc}") from None
            names.append(name)
        if not names:
            raise UsageError(
                'no customers on stdin; give one JSON object per line: {"customer": "acme", "token": "EAA..."}'
            )
        with open_app() as handler:
            for name in dict.fromkeys(names):
                handler.store.add_customer(name)
            if tokens:
                handler.credentials.set_tokens(tokens)
        typer.echo(f"imported {len(dict.fromkeys(names))} customer(s), {len(tokens)} token(s)")
