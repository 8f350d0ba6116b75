"""`motion-meta emulator`: serve a local Graph API that rate limits and fails like Meta's."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any

import typer

from motion_meta_cli.cli.errors import reported_errors

_LIMITS = "Limits"
_BUC = "Business use case"
_FAULTS = "Faults (probabilities per request) and latency"


def _rate(flag: str, what: str) -> Any:
    return typer.Option(flag, min=0.0, max=1.0, rich_help_panel=_FAULTS, help=f"Share of requests {what}.")


def _number(text: str | float) -> float:
    """A float, or a fraction such as 1/60 (Typer passes the default through as is)."""
    if isinstance(text, float | int):
        return float(text)
    try:
        return float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError):
        raise typer.BadParameter(f"{text!r} is not a number or a fraction like 1/60") from None


def emulator(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on (0 picks a free one).")] = 8765,
    app_limit: Annotated[
        int | None,
        typer.Option(
            "--app-limit", min=1, rich_help_panel=_LIMITS, help="Calls per window for the whole app (code 4)."
        ),
    ] = None,
    page_limit: Annotated[
        int | None,
        typer.Option("--page-limit", min=1, rich_help_panel=_LIMITS, help="Calls per window for page traffic (32)."),
    ] = None,
    token_limit: Annotated[
        int | None,
        typer.Option("--token-limit", min=1, rich_help_panel=_LIMITS, help="Calls per window for each token (17)."),
    ] = None,
    window_s: Annotated[
        float, typer.Option("--window-s", min=0.01, rich_help_panel=_LIMITS, help="Rolling window length, seconds.")
    ] = 3600.0,
    buc_limit: Annotated[
        int | None,
        typer.Option("--buc-limit", min=1, rich_help_panel=_BUC, help="Calls per window for the business (80004)."),
    ] = None,
    buc_business_id: Annotated[
        str, typer.Option("--buc-business-id", rich_help_panel=_BUC, help="Id keying X-Business-Use-Case-Usage.")
    ] = "1234567890",
    buc_type: Annotated[str, typer.Option("--buc-type", rich_help_panel=_BUC, help="Business use case type.")] = (
        "ads_management"
    ),
    buc_block_minutes: Annotated[
        float, typer.Option("--buc-block-minutes", min=0.0, rich_help_panel=_BUC, help="Shortest block, minutes.")
    ] = 1.0,
    time_scale: Annotated[
        float,
        typer.Option(
            "--time-scale",
            parser=_number,
            rich_help_panel=_BUC,
            help="Real seconds per emulated second; 1/60 makes a minute last 1 s.",
        ),
    ] = 1.0,
    fault_500: Annotated[float, _rate("--fault-500", "answered 500, code 1/99")] = 0.0,
    fault_transient: Annotated[float, _rate("--fault-transient", "answered 400, code 2")] = 0.0,
    fault_html: Annotated[float, _rate("--fault-html", "answered 502 with an HTML page")] = 0.0,
    fault_drop: Annotated[float, _rate("--fault-drop", "whose connection is closed unanswered")] = 0.0,
    fault_malformed_usage: Annotated[float, _rate("--fault-malformed-usage", "with usage headers cut short")] = 0.0,
    fault_string_numbers: Annotated[float, _rate("--fault-string-numbers", "with usage numbers as strings")] = 0.0,
    fault_slow: Annotated[float, _rate("--fault-slow", "answered --slow-s late")] = 0.0,
    slow_s: Annotated[
        float, typer.Option("--slow-s", min=0.0, rich_help_panel=_FAULTS, help="How late a slow answer is.")
    ] = 3.0,
    seed: Annotated[int | None, typer.Option(rich_help_panel=_FAULTS, help="Seed for reproducible faults.")] = None,
    latency_s: Annotated[
        float, typer.Option("--latency-s", min=0.0, rich_help_panel=_FAULTS, help="Delay added to each request.")
    ] = 0.0,
    latency_jitter_s: Annotated[
        float,
        typer.Option(
            "--latency-jitter-s", min=0.0, rich_help_panel=_FAULTS, help="Uniformly random extra delay, up to this."
        ),
    ] = 0.0,
    users: Annotated[
        Path | None, typer.Option("--users", help='JSON file of users: {"users": [{"token", "id", "name"}]}.')
    ] = None,
    accept_any_token: Annotated[
        bool, typer.Option("--accept-any-token", help="Answer any EAA... token with a user derived from it.")
    ] = False,
) -> None:
    """Serve a local Graph API emulator until interrupted; GET /__stats shows what it saw."""
    with reported_errors():
        from motion_meta_cli.emulator import EmulatorConfig, GraphEmulator, default_directory, load_users

        try:
            directory = (
                load_users(users, accept_any_token=accept_any_token)
                if users is not None
                else default_directory(accept_any_token=accept_any_token)
            )
            config = EmulatorConfig(
                app_limit=app_limit,
                window_s=window_s,
                users=directory,
                latency_s=latency_s,
                latency_jitter_s=latency_jitter_s,
                token_limit=token_limit,
                page_limit=page_limit,
                buc_limit=buc_limit,
                buc_business_id=buc_business_id,
                buc_type=buc_type,
                buc_block_minutes=buc_block_minutes,
                time_scale=time_scale,
                fault_500_rate=fault_500,
                fault_transient_rate=fault_transient,
                fault_html_rate=fault_html,
                fault_drop_rate=fault_drop,
                fault_malformed_usage_rate=fault_malformed_usage,
                fault_string_numbers_rate=fault_string_numbers,
                fault_slow_rate=fault_slow,
                slow_s=slow_s,
                seed=seed,
            )
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        try:
            server = GraphEmulator(config, host=host, port=port)
        except OSError as exc:
            typer.echo(f"error: cannot listen on {host}:{port}: {exc.strerror}", err=True)
            raise typer.Exit(3) from None
        typer.echo(
            f"Graph API emulator on {server.url} ({config.summary()}); stats at {server.url}/__stats; Ctrl-C stops"
        )
        server.serve_forever()
