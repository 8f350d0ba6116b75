"""`motion-meta demo`: the whole story against an in-process emulator, in a throwaway home, in seconds."""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

from motion_meta_cli.cli.errors import reported_errors

APP_LIMIT = 60
WINDOW_S = 2.0
CUSTOMERS = 6
BURST = 240
WORKERS = 120


def demo() -> None:
    """Fetch, poll several customers, then trip the app limit and watch the tool moderate itself."""
    with reported_errors():
        from rich.console import Console

        from motion_meta_cli.app import AppHandler
        from motion_meta_cli.cli.errors import configure_logging
        from motion_meta_cli.cli.render import render_stress, render_user
        from motion_meta_cli.config import DEMO_CUSTOMER, load_settings
        from motion_meta_cli.emulator import DEMO_TOKEN, EmulatorConfig, GraphEmulator, default_directory
        from motion_meta_cli.poller import Poller
        from motion_meta_cli.stress import run_stress, stress_settings

        console = Console(highlight=False, soft_wrap=True)
        started = time.monotonic()
        config = EmulatorConfig(app_limit=APP_LIMIT, window_s=WINDOW_S, users=default_directory(accept_any_token=True))
        with tempfile.TemporaryDirectory(prefix="motion-meta-demo-") as home, GraphEmulator(config) as server:
            console.print(
                f"[bold]1.[/] A Graph API emulator on {server.url}: the app may make {APP_LIMIT} calls per "
                f"{WINDOW_S:g} s window; calls made while blocked extend the block, as at Meta."
            )
            settings = load_settings(
                meta_graph_url=server.url,
                meta_access_token=DEMO_TOKEN,
                motion_meta_home=Path(home),
                meta_rate_window_s=WINDOW_S,
            )
            configure_logging("ERROR")
            with AppHandler.from_settings(settings) as app:
                result = app.fetch(DEMO_CUSTOMER, ("id", "name", "first_name", "last_name"))
                if result.error is not None:
                    raise result.error
                console.print(f"[bold]2.[/] fetch: {DEMO_CUSTOMER}'s /me, token in the Authorization header only")
                render_user(result, as_json=False)
                for n in range(1, CUSTOMERS):
                    app.store.add_customer(f"customer{n}")
                    app.secrets.put_secret(f"customer{n}", f"EAAdemoCustomer{n:02d}-0123456789abcdef")
                console.print(
                    f"[bold]3.[/] poll every 1 s over {CUSTOMERS} customers (fixed rate, one lease per customer):"
                )
                poller = Poller(app, interval_s=1.0, concurrency=4)
                for cycle in poller.run(stop=threading.Event(), cycles=3):
                    console.print(
                        f"   cycle {cycle.cycle}: fetched {len(cycle.fetched)}, failed {len(cycle.failed)}, "
                        f"{cycle.duration_s * 1000:.0f} ms"
                    )
            server.reset()
            burst = stress_settings(settings, concurrency=WORKERS, pacing=False)
            console.print(
                f"[bold]4.[/] stress: {BURST} requests from {WORKERS} workers at once, pacing off, "
                "straight into the limit…"
            )
            with AppHandler.from_settings(burst) as app:
                report = run_stress(app, customer=DEMO_CUSTOMER, requests=BURST, concurrency=WORKERS)
            stats = server.stats()
            render_stress(report)
            ideal = (-(-BURST // APP_LIMIT) - 1) * WINDOW_S
            console.print(
                f"[bold]5.[/] Meta-side view: {stats['throttled']} throttled answers, all from the first burst "
                f"already in flight; {stats['blocked_arrivals']} requests arrived while blocked. After the first "
                f"throttle the app paused, one probe went first, and the learned budget paced the rest: "
                f"{report.succeeded}/{report.requests} succeeded in {report.duration_s:.1f} s "
                f"(the limit allows {ideal:.0f} s at best). A naive client keeps hammering and extends the block."
            )
        console.print(
            f"Done in {time.monotonic() - started:.0f} s. Next: `motion-meta --help`; the README covers Redis, "
            "DynamoDB and Secrets Manager for many instances."
        )
