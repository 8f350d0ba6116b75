"""`motion-meta emulator`: serve a local Graph API that rate limits and fails like Meta's."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from motion_meta_cli.cli.errors import reported_errors


def emulator(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on (0 picks a free one).")] = 8765,
    app_limit: Annotated[
        int | None,
        typer.Option("--app-limit", min=1, help="Calls per window for the whole app (default: none)."),
    ] = None,
    window_s: Annotated[float, typer.Option("--window-s", min=0.01, help="Rolling window length, seconds.")] = 3600.0,
    users: Annotated[
        Path | None, typer.Option("--users", help='JSON file of users: {"users": [{"token", "id", "name"}]}.')
    ] = None,
    accept_any_token: Annotated[
        bool, typer.Option("--accept-any-token", help="Answer any EAA... token with a user derived from it.")
    ] = False,
) -> None:
    """Serve a local Graph API emulator until interrupted."""
    with reported_errors():
        from motion_meta_cli.emulator import EmulatorConfig, GraphEmulator, default_directory, load_users

        try:
            directory = (
                load_users(users, accept_any_token=accept_any_token)
                if users is not None
                else default_directory(accept_any_token=accept_any_token)
            )
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        config = EmulatorConfig(app_limit=app_limit, window_s=window_s, users=directory)
        try:
            server = GraphEmulator(config, host=host, port=port)
        except OSError as exc:
            typer.echo(f"error: cannot listen on {host}:{port}: {exc.strerror}", err=True)
            raise typer.Exit(3) from None
        limit = f"{app_limit} calls per {window_s:g} s" if app_limit else "no app limit"
        typer.echo(f"Graph API emulator on {server.url} ({limit}); stats at {server.url}/__stats; Ctrl-C stops")
        server.serve_forever()
