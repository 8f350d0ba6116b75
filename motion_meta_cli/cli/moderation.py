"""`motion-meta moderation show|clear`: what every instance shares about Meta's limits, and ending it by hand."""

from __future__ import annotations

from typing import Annotated

import typer

from motion_meta_cli.cli.errors import reported_errors

app = typer.Typer(help="See and clear the shared moderation state (cooldowns, probes, budgets).", no_args_is_help=True)


@app.command("show")
def show(as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False) -> None:
    """List cooldowns, probes, learned budgets, named scopes and slots held, as every instance sees them."""
    with reported_errors():
        from motion_meta_cli.cli.context import open_app
        from motion_meta_cli.cli.render import render_moderation

        with open_app() as handler:
            state = handler.moderator.describe()
        render_moderation(state, as_json=as_json)


@app.command("clear")
def clear(
    scope: Annotated[
        list[str] | None,
        typer.Option("--scope", help="A scope to clear, e.g. app or buc:42:ads_management (repeatable)."),
    ] = None,
    everything: Annotated[bool, typer.Option("--all", help="Clear every scope and named scope.")] = False,
) -> None:
    """End cooldowns, probes and budgets for every instance (the next request relearns the budget)."""
    with reported_errors():
        from motion_meta_cli.cli.context import open_app
        from motion_meta_cli.errors import UsageError

        if bool(scope) == everything:
            raise UsageError("say what to clear: --scope S (repeatable) or --all")
        with open_app() as handler:
            cleared = handler.moderator.clear(None if everything else scope)
        typer.echo(f"cleared {', '.join(cleared)}" if cleared else "nothing to clear")
