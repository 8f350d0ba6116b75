"""`motion-meta config show|check`: the effective settings with their sources, and whether each backend answers."""

from __future__ import annotations

from typing import Annotated

import typer

from motion_meta_cli.cli.errors import reported_errors

app = typer.Typer(help="Show the effective settings, or check them and every backend.", no_args_is_help=True)


@app.command("show")
def show(as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False) -> None:
    """Every setting after the environment and `.env` merge, with its source; tokens masked."""
    with reported_errors():
        from motion_meta_cli.cli.render import print_json, render_settings
        from motion_meta_cli.config import describe_settings, load_settings

        described = describe_settings(load_settings())
        if as_json:
            print_json(described)
        else:
            render_settings(described)


@app.command("check")
def check() -> None:
    """Validate the settings, then ask the cache, the store and the secrets store to answer: one line each;
    exit 0 when all do, 8 when one does not (3 for invalid settings)."""
    with reported_errors():
        from motion_meta_cli.app import AppHandler
        from motion_meta_cli.backends import ping_backends
        from motion_meta_cli.config import load_settings
        from motion_meta_cli.errors import ExitCode

        settings = load_settings()
        typer.echo("settings: valid")
        with AppHandler.from_settings(settings) as handler:
            results = ping_backends(handler)
        for name, where, problem, seconds in results:
            state = f"ok ({seconds * 1000:.0f} ms)" if problem is None else f"FAILED: {problem}"
            typer.echo(f"{name}: {where} {state}")
        if any(problem is not None for _, _, problem, _ in results):
            raise typer.Exit(ExitCode.BACKEND_UNAVAILABLE)
