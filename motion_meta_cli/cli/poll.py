"""`motion-meta poll`: the service on an interval, alone or beside other instances; `--once` for cron."""

from __future__ import annotations

import contextlib
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer

from motion_meta_cli.cli.errors import reported_errors


def poll(
    interval: Annotated[float, typer.Option(min=0.1, help="Seconds between cycle starts (fixed rate).")] = 60.0,
    cycles: Annotated[
        int | None, typer.Option(min=1, help="Stop after this many cycles (default: run until stopped).")
    ] = None,
    customers: Annotated[
        str | None, typer.Option(help="Comma-separated customers (default: every active customer).")
    ] = None,
    concurrency: Annotated[int | None, typer.Option(min=1, max=1000, help="Customers fetched at once.")] = None,
    once: Annotated[
        bool,
        typer.Option(
            "--once", help="One cycle, for cron: exit 0 only if all were fetched, 9 if not, 10 if a run overlaps."
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per cycle on stdout.")] = False,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=1, max=65535, help="Serve /metrics, /livez and /readyz on this port (or MOTION_META_METRICS_PORT)."
        ),
    ] = None,
    metrics_file: Annotated[
        Path | None,
        typer.Option(help="Write the metrics to this file when done (Prometheus textfile collector), for cron."),
    ] = None,
) -> None:
    """Fetch every active customer once per interval, sharing the work with other instances."""
    with reported_errors():
        from motion_meta_cli import metrics
        from motion_meta_cli.app import AppHandler
        from motion_meta_cli.cli.errors import configure_logging, stopped_by_signals
        from motion_meta_cli.cli.render import live_view, poll_panel, print_json, render_cycle_line, render_poll_summary
        from motion_meta_cli.config import load_settings
        from motion_meta_cli.errors import BackendUnavailableError, ExitCode, UsageError
        from motion_meta_cli.poller import Poller, once_guard, serve_health, stoppable_sleep

        if once and cycles is not None:
            raise UsageError("--once runs one cycle; leave out --cycles (or drop --once)")
        names = None
        if customers is not None:
            names = [n.strip() for n in customers.split(",") if n.strip()]
            if not names:
                raise UsageError("--customers names nobody; give names separated by commas, or leave it out for all")
        settings = load_settings()
        if concurrency is not None:
            settings = settings.model_copy(update={"motion_meta_concurrency": concurrency})
        configure_logging(settings.motion_meta_log_level, settings.motion_meta_log_format)
        stop = threading.Event()
        with stopped_by_signals(stop), AppHandler(settings, sleep=stoppable_sleep(stop)) as app:
            poller = Poller(app, interval_s=interval, customers=names)
            metrics.watch(app.moderator, settings.meta_api_version)
            port = metrics_port if metrics_port is not None else settings.motion_meta_metrics_port
            with contextlib.ExitStack() as held:
                if port is not None:
                    server = serve_health(port, poller, app, interval)
                    held.callback(server.shutdown)
                if metrics_file is not None:
                    held.callback(metrics.write_textfile, metrics_file)
                if once and not held.enter_context(once_guard(app.cache)):
                    typer.echo(
                        "error: another `poll --once` run is still going (overlap guard); not starting", err=True
                    )
                    raise typer.Exit(ExitCode.ALREADY_RUNNING)
                complete = True
                with live_view(lambda: poll_panel(poller, app, once=once), enabled=not as_json) as live:
                    for report in poller.run(stop=stop, cycles=1 if once else cycles):
                        complete = complete and report.complete
                        if as_json:
                            print_json(report.to_dict())
                        elif not live:
                            render_cycle_line(report)
                        sys.stdout.flush()
                if live:
                    render_poll_summary(poller)
            if not poller.backlog.flush(force=True):
                raise BackendUnavailableError(
                    f"{len(poller.backlog)} fetched result(s) could not be stored: the store did not answer"
                )
        if once and not complete:
            raise typer.Exit(ExitCode.SOME_FAILED)
