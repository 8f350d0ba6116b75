"""The `motion-meta` command: a root Typer app joining one module per command."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from motion_meta_cli.cli import (
    config_cmd,
    credentials,
    customers,
    demo,
    emulator,
    fetch,
    moderation,
    poll,
    show,
    store,
    stress,
)


class OneLineErrors(TyperGroup):
    """Usage errors as the one `error:` line every other error is (exit 2), not Rich's multi-line box."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **kwargs: Any,
    ) -> Any:
        """Run the command; in standalone mode, exit with its code."""
        kwargs.update(
            args=args, prog_name=prog_name, complete_var=complete_var, windows_expand_args=windows_expand_args
        )
        if not standalone_mode:
            return super().main(standalone_mode=False, **kwargs)
        # Typer 0.29 vendors Click: its exceptions live in `typer._click`.
        from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError

        try:
            code = super().main(standalone_mode=False, **kwargs)
        except NoArgsIsHelpError:
            return super().main(standalone_mode=True, **kwargs)  # the help, as Typer prints it
        except UsageError as exc:
            where = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
            print(f"error: {exc.format_message()}{where}", file=sys.stderr)
            sys.exit(exc.exit_code)
        except ClickException as exc:
            print(f"error: {exc.format_message()}", file=sys.stderr)
            sys.exit(exc.exit_code)
        except typer.Abort:
            print("error: aborted", file=sys.stderr)
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="motion-meta",
    cls=OneLineErrors,
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
app.command("show")(show.show)
app.add_typer(customers.app, name="customers")
app.add_typer(credentials.app, name="credentials")
app.add_typer(store.app, name="store")
app.add_typer(moderation.app, name="moderation")
app.add_typer(config_cmd.app, name="config")


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
