"""`motion-meta store init`: create the customer store's tables."""

from __future__ import annotations

import typer

from motion_meta_cli.cli.errors import reported_errors

app = typer.Typer(help="Manage the customer store.", no_args_is_help=True)


@app.command("init")
def init() -> None:
    """Create the store (SQLite file or DynamoDB table) if it is missing; safe to run twice."""
    with reported_errors():
        from motion_meta_cli.cli.context import open_app

        with open_app() as handler:
            created = handler.store.initialize()
            where = handler.settings.store_backend
        what = f"DynamoDB table {where.target}" if where.scheme == "dynamodb" else f"SQLite store {where.target}"
        typer.echo(f"created {what}" if created else f"{what} already exists; nothing to do")
