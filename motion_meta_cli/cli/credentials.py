"""`motion-meta credentials list|show|set|expire|check`: tokens are never printed, at most masked."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from motion_meta_cli.cli.errors import reported_errors

app = typer.Typer(help="Inspect, store, expire and check customers' access tokens.", no_args_is_help=True)

Customer = Annotated[str, typer.Option("--customer", "-c", help="Customer name.")]


@app.command("list")
def list_credentials(as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False) -> None:
    """Every customer: token stored (masked), marker state and age."""
    with reported_errors():
        from motion_meta_cli.cli.context import open_app
        from motion_meta_cli.cli.render import render_credentials

        with open_app() as handler:
            statuses = [handler.credentials.status(c.name) for c in handler.customers()]
        render_credentials(statuses, as_json=as_json)


@app.command("show")
def show(
    customer: Customer, as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False
) -> None:
    """One customer's credentials state (masked token, version, marker)."""
    with reported_errors():
        from motion_meta_cli.cli.context import open_app
        from motion_meta_cli.cli.render import render_credentials

        with open_app() as handler:
            handler.require_customer(customer)
            status = handler.credentials.status(customer)
        render_credentials([status], as_json=as_json)


@app.command("set", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def set_token(ctx: typer.Context, customer: Customer) -> None:
    """Store a new token, read from stdin or a hidden prompt (never an argument), and expire the marker."""
    with reported_errors():
        from motion_meta_cli.cli.context import open_app
        from motion_meta_cli.credentials import validate_token
        from motion_meta_cli.errors import UsageError

        if ctx.args:  # extra arguments are taken in, not refused by Click, so that a token is never echoed
            # Caught here so the value is never echoed back the way Click reports unexpected arguments.
            raise UsageError(
                "a token must not be passed as an argument (shell history, process lists); "
                "pipe it on stdin or answer the hidden prompt"
            )

        if sys.stdin is not None and sys.stdin.isatty():
            raw = typer.prompt(f"Access token for {customer}", hide_input=True)
        else:
            raw = sys.stdin.read() if sys.stdin is not None else ""
        token = validate_token(raw)
        with open_app() as handler:
            handler.require_customer(customer)
            version = handler.credentials.set_token(customer, token)
        typer.echo(f"stored a new token for {customer} (version {version}); every instance re-reads it")


@app.command("expire")
def expire(
    customer: Annotated[str | None, typer.Option("--customer", "-c", help="Customer name.")] = None,
    all_customers: Annotated[bool, typer.Option("--all", help="Every customer.")] = False,
) -> None:
    """Delete validity markers so every instance re-reads the secrets store."""
    with reported_errors():
        from motion_meta_cli.cli.context import open_app
        from motion_meta_cli.errors import UsageError

        if (customer is None) == (not all_customers):
            raise UsageError("give exactly one of --customer NAME or --all")
        with open_app() as handler:
            names = [c.name for c in handler.customers()] if all_customers else [customer or ""]
            if customer is not None:
                handler.require_customer(customer)
            expired = sum(handler.credentials.expire(name) for name in names)
        typer.echo(f"expired {expired} marker(s) of {len(names)} customer(s)")


@app.command("check")
def check(customer: Customer) -> None:
    """Call /me with the customer's token and report valid or rejected (exit 4)."""
    with reported_errors():
        from motion_meta_cli.cli.context import open_app

        with open_app() as handler:
            handler.require_customer(customer)
            user = handler.agent.fetch_me(customer)
        typer.echo(f"valid: {customer}'s token belongs to {user.name} (id {user.id})")
