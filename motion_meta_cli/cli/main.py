"""The `motion-meta` command: a root Typer app joining one module per command."""

from __future__ import annotations

from typing import Annotated

import typer

from motion_meta_cli.cli import credentials, customers, demo, emulator, fetch, moderation, poll, store, stress

app = typer.Typer(
    name="motion-meta",
    help="Keep many customers' Meta Graph API data fresh without getting the app throttled.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals could hold a token
    add_completion=False,
)
app.command("fetch")(fetch.fetch)
app.command("emulator")(emulator.emulator)
app.command("poll")(poll.poll)
app.command("stress")(stress.stress)
app.command("demo")(demo.demo)
app.add_typer(customers.app, name="customers")
app.add_typer(credentials.app, name="credentials")
app.add_typer(store.app, name="store")
app.add_typer(moderation.app, name="moderation")


def _version(value: bool) -> None:
    if value:
        from motion_meta_cli import __version__

        typer.echo(f"motion-meta {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Keep many customers' Meta Graph API data fresh without getting the app throttled."""


def run() -> None:
    """Console-script entry point."""
    app(prog_name="motion-meta")
