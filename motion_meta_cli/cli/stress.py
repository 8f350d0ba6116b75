"""`motion-meta stress`: push past the limit on purpose and watch the app moderate itself."""

from __future__ import annotations

import threading
from typing import Annotated

import typer

from motion_meta_cli.cli.errors import reported_errors

DEMO_CUSTOMER = "motion_test_user"


def stress(
    concurrency: Annotated[int, typer.Option(min=1, max=2000, help="Workers sending at once.")] = 200,
    requests: Annotated[
        int | None, typer.Option(min=1, max=1_000_000, help="Requests in all (default 4 × concurrency).")
    ] = None,
    customer: Annotated[str, typer.Option("--customer", "-c", help="Whose token to use.")] = DEMO_CUSTOMER,
    pacing: Annotated[
        bool, typer.Option("--pacing", help="Pace from the usage headers, as fetch and poll do (default: off).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON summary object.")] = False,
) -> None:
    """Send many /me requests at once through the moderated request manager, and report."""
    with reported_errors():
        from motion_meta_cli.app import AppHandler
        from motion_meta_cli.cli.errors import configure_logging, stopped_by_signals
        from motion_meta_cli.cli.render import live_view, print_json, render_stress, stress_panel
        from motion_meta_cli.config import load_settings
        from motion_meta_cli.poller import stoppable_sleep
        from motion_meta_cli.stress import StressProgress, run_stress, stress_settings

        total = requests if requests is not None else 4 * concurrency
        settings = stress_settings(load_settings(), concurrency=concurrency, pacing=pacing)
        configure_logging(settings.motion_meta_log_level, settings.motion_meta_log_format)
        progress = StressProgress(total, concurrency)
        stop = threading.Event()
        with (
            stopped_by_signals(stop),
            AppHandler(settings, sleep=stoppable_sleep(stop)) as app,
            live_view(lambda: stress_panel(progress, app), enabled=not as_json),
        ):
            report = run_stress(
                app, customer=customer, requests=total, concurrency=concurrency, progress=progress, stop=stop
            )
        if as_json:
            print_json(report.to_dict())
        else:
            render_stress(report)
        if report.stopped:
            raise typer.Exit(130)  # the summary above is partial
        if report.exit_code:
            raise typer.Exit(report.exit_code)
