"""Rendering results for people (Rich tables) and for programs (one JSON object per line)."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table

from motion_meta_cli.models import FetchResult

stdout = Console(soft_wrap=True)


def print_json(payload: dict[str, Any]) -> None:
    """Exactly one JSON object on one line of stdout."""
    print(json.dumps(payload, ensure_ascii=False, sort_keys=False))


def render_user(result: FetchResult, *, as_json: bool) -> None:
    """A fetched user as a two-column table, or as JSON."""
    payload = result.to_dict()
    payload.pop("ok", None)
    if as_json:
        print_json(payload)
        return
    table = Table(title=f"Meta /me for {result.customer}", show_header=False, title_justify="left")
    table.add_column("field", style="bold cyan")
    table.add_column("value")
    for key, value in payload.items():
        if key == "customer":
            continue
        table.add_row(key, value if isinstance(value, str) else json.dumps(value))
    stdout.print(table)
