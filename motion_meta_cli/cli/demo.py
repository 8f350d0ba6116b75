"""`motion-meta demo`: the whole tool against an in-process emulator, in a throwaway home."""

from __future__ import annotations

import tempfile
from pathlib import Path

from motion_meta_cli.cli.errors import reported_errors

DEMO_APP_LIMIT = 100
DEMO_WINDOW_S = 10.0


def demo() -> None:
    """Start a local Graph API emulator, store the demo customer's token, fetch /me, and show what happened."""
    with reported_errors():
        from rich.console import Console

        from motion_meta_cli.app import AppHandler
        from motion_meta_cli.cli.errors import configure_logging
        from motion_meta_cli.cli.render import render_user
        from motion_meta_cli.config import DEMO_CUSTOMER, load_settings
        from motion_meta_cli.emulator import DEMO_TOKEN, EmulatorConfig, GraphEmulator

        console = Console(highlight=False)
        config = EmulatorConfig(app_limit=DEMO_APP_LIMIT, window_s=DEMO_WINDOW_S)
        with tempfile.TemporaryDirectory(prefix="motion-meta-demo-") as home, GraphEmulator(config) as server:
            console.print(
                f"[bold]1.[/] Graph API emulator listening on {server.url} "
                f"(app limit {DEMO_APP_LIMIT} calls per {DEMO_WINDOW_S:g} s, Meta-shaped errors)"
            )
            settings = load_settings(
                meta_graph_url=server.url, meta_access_token=DEMO_TOKEN, motion_meta_home=Path(home)
            )
            configure_logging(settings.motion_meta_log_level)
            with AppHandler.from_settings(settings) as app:
                console.print(
                    f"[bold]2.[/] Stored the demo token as {DEMO_CUSTOMER}'s credentials in "
                    f"{settings.secrets_backend.target} (mode 0600); the cache holds only its version marker"
                )
                result = app.fetch(DEMO_CUSTOMER, ("id", "name", "first_name", "last_name"))
                if result.error is not None:
                    raise result.error
                console.print(
                    f"[bold]3.[/] Fetched /me for {DEMO_CUSTOMER} with the token in the Authorization header:"
                )
                render_user(result, as_json=False)
                stored = app.store.latest(DEMO_CUSTOMER)
                stats = server.stats()
                console.print(
                    f"[bold]4.[/] Stored the snapshot ({stored.fetched_at:%H:%M:%S} UTC); the emulator saw "
                    f"{stats['requests']} request(s), {stats['token_in_query']} with a token in the URL, "
                    f"app usage now {stats['app_usage_pct']} %"
                    if stored is not None
                    else "[bold]4.[/] nothing was stored"
                )
        console.print("Next: `motion-meta fetch --help`, and the README for pointing it at Meta.")
