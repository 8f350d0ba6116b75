"""`motion-meta demo`: the whole story against an in-process emulator, in a throwaway home, in seconds."""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from motion_meta_cli.cli.errors import reported_errors

if TYPE_CHECKING:
    from motion_meta_cli.stress import StressReport

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
        from motion_meta_cli.cli.render import live_view, render_stress, render_user, stress_panel
        from motion_meta_cli.config import DEMO_CUSTOMER, load_settings
        from motion_meta_cli.emulator import DEMO_TOKEN, EmulatorConfig, GraphEmulator, default_directory
        from motion_meta_cli.poller import Poller
        from motion_meta_cli.stress import StressProgress, run_stress, stress_settings

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
                poller = Poller(app, interval_s=1.0)
                for cycle in poller.run(stop=threading.Event(), cycles=3):
                    recent = (
                        f", {cycle.taken_elsewhere} left alone (fetched less than an interval ago)"
                        if cycle.taken_elsewhere
                        else ""
                    )
                    console.print(
                        f"   cycle {cycle.cycle}: fetched {len(cycle.fetched)}, failed {len(cycle.failed)}{recent}, "
                        f"{cycle.duration_s * 1000:.0f} ms"
                    )
            server.reset()
            burst = stress_settings(settings, concurrency=WORKERS, pacing=False)
            console.print(
                f"[bold]4.[/] stress: {BURST} requests from {WORKERS} workers at once, pacing off, "
                "straight into the limit…"
            )
            progress = StressProgress(BURST, WORKERS)
            with (
                AppHandler.from_settings(burst) as app,
                live_view(lambda: stress_panel(progress, app), enabled=True),
            ):
                report = run_stress(app, customer=DEMO_CUSTOMER, requests=BURST, concurrency=WORKERS, progress=progress)
            stats = server.stats()
            render_stress(report)
            ideal = (-(-BURST // APP_LIMIT) - 1) * WINDOW_S
            console.print(f"[bold]5.[/] {_story(stats, report, ideal)}")
        console.print(
            f"Done in {time.monotonic() - started:.0f} s. Next: `motion-meta --help`; the README covers Redis, "
            "DynamoDB and Secrets Manager for many instances."
        )


def _story(stats: dict[str, Any], report: StressReport, ideal_s: float) -> str:
    """What the burst did, told from its own figures (Meta's side from the emulator's counts)."""

    def count(n: int, what: str) -> str:
        return f"{n} {what}{'' if n == 1 else 's'}"

    throttled, blocked = int(stats["throttled"]), int(stats["blocked_arrivals"])
    if not throttled:
        middle = "Meta throttled nothing: moderation kept the burst inside the limit."
    else:
        probes = (
            f"probes tested the limit one at a time ({count(report.probes, 'probe')} in all) while the others waited"
            if report.probes
            else "no probe was needed"
        )
        middle = (
            f"After the first throttle every worker paused on the app scope, {probes}, and the budget learned from "
            "the usage headers paced the rest."
        )
    return (
        f"Meta's side: {count(throttled, 'throttled answer')}, {count(blocked, 'request')} arriving while blocked. "
        f"{middle} {report.succeeded}/{report.requests} succeeded in {report.duration_s:.1f} s (the limit allows "
        f"{ideal_s:.0f} s at best); a naive client keeps calling into the block and lengthens it."
    )
