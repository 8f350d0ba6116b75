"""Rendering results for people (Rich tables) and for programs (one JSON object per line)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from motion_meta_cli.credentials import CredentialStatus
from motion_meta_cli.models import Customer, FetchResult, iso_utc

if TYPE_CHECKING:
    from motion_meta_cli.app import AppHandler
    from motion_meta_cli.poller import Poller
    from motion_meta_cli.service import CycleReport
    from motion_meta_cli.storage.base import Snapshot
    from motion_meta_cli.stress import StressProgress, StressReport

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


def render_customers(customers: list[Customer], *, as_json: bool) -> None:
    """Customers as a table, or one JSON object `{"customers": [...]}`."""
    if as_json:
        rows = [{"name": c.name, "active": c.active, "added_at": iso_utc(c.added_at)} for c in customers]
        print_json({"customers": rows})
        return
    table = Table("customer", "added", title=f"{len(customers)} customer(s)", title_justify="left")
    for customer in customers:
        table.add_row(customer.name, iso_utc(customer.added_at))
    stdout.print(table)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


_MARKER_STYLES = {"current": "[green]current[/]", "stale": "[yellow]stale[/]", "rejected": "[red]rejected[/]"}


def render_credentials(statuses: list[CredentialStatus], *, as_json: bool) -> None:
    """Credentials states as a table, or one JSON object; tokens only ever masked."""
    if as_json:
        rows = [
            {
                "customer": s.customer,
                "stored": s.stored,
                "token": s.masked,
                "version": s.version,
                "marker": s.marker,
                "marker_age_s": None if s.marker_age_s is None else round(s.marker_age_s, 1),
            }
            for s in statuses
        ]
        print_json({"credentials": rows})
        return
    table = Table("customer", "token", "version", "marker", "marker age", title_justify="left")
    for s in statuses:
        table.add_row(
            s.customer,
            s.masked or "[red]none stored[/]",
            (s.version or "-")[:12],
            _MARKER_STYLES.get(s.marker, s.marker),
            _age(s.marker_age_s),
        )
    stdout.print(table)


def render_moderation(state: dict[str, Any], *, as_json: bool) -> None:
    """`moderation show`: a table of scopes, then named scopes, slots and the instances sharing the budgets."""
    if as_json:
        print_json(state)
        return
    if not state["scopes"] and not state["named_scopes"] and not state["slots"] and not state["instances"]:
        stdout.print("no shared moderation state: nothing paused, no budget learned yet")
        return
    table = Table(title="Shared moderation", title_justify="left")
    for column in ("scope", "cooldown", "strikes", "probe", "budget", "limited"):
        table.add_column(column)

    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f} s left"

    for row in state["scopes"]:
        cooldown = seconds(row["cooldown_s"]) + (" (recovering)" if row["recovering"] else "")
        budget = row["budget"]
        shown = "-" if budget is None else f"{budget}/window" if isinstance(budget, int) else str(budget)
        if isinstance(budget, int) and not row["budget_precise"]:
            shown += " (coarse)"
        table.add_row(
            row["scope"], cooldown, str(row["strikes"]), seconds(row["probe_s"]), shown, seconds(row["limited_s"])
        )
    stdout.print(table)
    for customer, scopes in state["named_scopes"].items():
        stdout.print(f"{customer} also falls under: {', '.join(scopes)}")
    for customer, held in state["slots"].items():
        stdout.print(f"{customer}: {held} request(s) in flight")
    for holder, entry in state["instances"].items():
        alone = ", ".join(f"{n} on {log}" for log, n in entry["alone"].items())
        sent = f"; sent alone lately: {alone}" if alone else ""
        stdout.print(f"instance {holder}: last heartbeat {entry['seen_s_ago']:.1f} s ago{sent}")


def _cooldowns(app: AppHandler) -> str:
    try:
        active = app.moderator.cooldowns()
    except Exception:  # a display must never stop the run
        return "unknown"
    return ", ".join(f"{scope} {left:.1f} s" for scope, left in sorted(active.items())) or "none"


@contextmanager
def live_view(build: Callable[[], Table], *, enabled: bool) -> Iterator[bool]:
    """Redraw `build()` four times a second while the block runs, on a terminal only; yields whether it does."""
    if not enabled or not stdout.is_terminal:
        yield False
        return
    import logging

    from rich.live import Live

    stop = threading.Event()
    logger = logging.getLogger("motion_meta_cli")
    with Live(build(), console=stdout, refresh_per_second=4) as live, _handlers(logger, live.console) as _:

        def refresh() -> None:
            while not stop.wait(0.25):
                live.update(build())

        worker = threading.Thread(target=refresh, daemon=True)
        worker.start()
        try:
            yield True
        finally:
            stop.set()
            worker.join()
            live.update(build())


@contextmanager
def _handlers(logger: Any, console: Console) -> Iterator[None]:
    """While a live view runs, log lines go through its console, which prints them above the view instead of
    tearing it (a plain stderr handler writes under Rich's feet)."""
    import logging

    from rich.logging import RichHandler

    saved = logger.handlers[:]
    handler = RichHandler(console=console, show_path=False, markup=False, rich_tracebacks=False)
    handler.setLevel(min((h.level for h in saved), default=logging.NOTSET))
    logger.handlers[:] = [handler]
    try:
        yield
    finally:
        logger.handlers[:] = saved


def stress_panel(progress: StressProgress, app: AppHandler) -> Table:
    stats = app.moderator.stats
    table = Table(title="motion-meta stress", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    table.add_row("requests", f"{progress.done} / {progress.requests} done")
    table.add_row("sent (attempts)", str(stats.sent))
    table.add_row("in flight / waiting", f"{max(progress.in_flight - stats.waiting, 0)} / {stats.waiting}")
    table.add_row("succeeded", f"[green]{progress.succeeded}[/]")
    table.add_row("failed", f"[red]{progress.failed}[/]" if progress.failed else "0")
    table.add_row("throttled answers", f"[yellow]{stats.throttles}[/]")
    table.add_row("waiting on", _waits(app))
    table.add_row("active cooldowns", _cooldowns(app))
    return table


def render_stress(report: StressReport) -> None:
    """The stress summary as a table."""
    table = Table(title="stress summary", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    for key, value in report.to_dict().items():
        if key == "latency_ms":
            value = f"p50 {value['p50']:.0f} · p95 {value['p95']:.0f} · max {value['max']:.0f}"
        elif key == "failures":
            value = ", ".join(f"{k} {v}" for k, v in value.items()) or "none"
        table.add_row(key.replace("_", " "), str(value))
    stdout.print(table)


def render_cycle_line(report: CycleReport) -> None:
    """One plain line per cycle (when stdout is not a terminal)."""
    print(
        f"cycle {report.cycle} (slot {report.slot}): fetched {len(report.fetched)}, failed {len(report.failed)}, "
        f"skipped {len(report.skipped_rejected)}, taken by other instances {report.taken_elsewhere}, "
        f"{report.duration_s:.2f} s{' OVERRUN' if report.overrun else ''}"
        + (f"; {report.unsaved} result(s) waiting for the store" if report.unsaved else "")
        + (f"; {report.lost} result(s) lost" if report.lost else "")
        + (f"; last error: {report.last_error}" if report.last_error else "")
    )


def poll_panel(poller: Poller, app: AppHandler, *, once: bool = False) -> Table:
    """The poll live view: the cycle running (or the countdown to the next), requests in flight and what
    they wait on, and the last cycles."""
    import time

    title = "motion-meta poll --once" if once else f"motion-meta poll every {poller.interval_s:g} s"
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value")
    report, next_start = poller.current, poller.next_start
    if report is not None:
        table.add_row(
            "now",
            f"cycle {report.cycle} (slot {report.slot}): {len(report.fetched)} fetched, {len(report.failed)} failed, "
            f"{len(report.skipped_rejected)} skipped, {report.taken_elsewhere} taken by other instances",
        )
    elif next_start is not None:
        table.add_row("now", f"next cycle in {max(next_start - time.time(), 0):.1f} s")
    stats = app.moderator.stats
    table.add_row("requests in flight / waiting", f"{stats.in_flight} / {stats.waiting}")
    table.add_row("waiting on", _waits(app))
    latest = report if report is not None else (poller.recent[-1] if poller.recent else None)
    table.add_row("last error", (latest.last_error if latest is not None else None) or "-")
    for past in reversed(poller.recent):
        table.add_row(
            f"cycle {past.cycle}",
            f"{len(past.fetched)} fetched, {len(past.failed)} failed, {len(past.skipped_rejected)} skipped, "
            f"{past.taken_elsewhere} elsewhere, {past.duration_s:.2f} s{' OVERRUN' if past.overrun else ''}",
        )
    return table


def render_poll_summary(poller: Poller) -> None:
    """One line when polling stops: what every cycle together did."""
    totals = poller.totals
    print(
        f"poll stopped after {totals['cycles']} cycle(s): {totals['fetched']} fetched, {totals['failed']} failed, "
        f"{totals['skipped']} skipped (rejected credentials), {totals['lost']} lost"
    )


def _waits(app: AppHandler) -> str:
    """What requests wait on right now, with the scope: `12 on cooldown app (3.1 s left), 2 on probe app`."""
    waits = app.moderator.stats.waits_now()
    if not waits:
        return "nothing"
    try:
        left = app.moderator.cooldowns()
    except Exception:  # a display must never stop the run
        left = {}
    parts = []
    for why, scope, count in waits:
        detail = f" ({left[scope]:.1f} s left)" if why == "cooldown" and scope in left else ""
        parts.append(f"{count} on {why} {scope}{detail}")
    return ", ".join(parts)


def render_stored(
    customer: str,
    active: bool | None,
    snapshot: Snapshot | None,
    fetches: list[dict[str, Any]],
    *,
    as_json: bool,
) -> None:
    """`motion-meta show`: the latest snapshot and the recent fetches, as tables or one JSON object."""
    status = "removed" if active is None else "active" if active else "inactive"
    if as_json:
        print_json(
            {
                "customer": customer,
                "status": status,
                "snapshot": None
                if snapshot is None
                else {"fetched_at": iso_utc(snapshot.fetched_at), "user": snapshot.user},
                "history": fetches,
            }
        )
        return
    if snapshot is None:
        stdout.print(f"{customer} ({status}): no snapshot stored yet")
    else:
        table = Table(
            title=f"{customer} ({status}): snapshot of {iso_utc(snapshot.fetched_at)}",
            show_header=False,
            title_justify="left",
        )
        table.add_column("field", style="bold cyan")
        table.add_column("value")
        for key, value in snapshot.user.items():
            table.add_row(key, escape(str(value)))
        stdout.print(table)
    if fetches:
        recent = Table("fetched at", "outcome", "detail", title=f"last {len(fetches)} fetch(es)", title_justify="left")
        for entry in fetches:
            outcome = "ok" if entry["ok"] else str(entry["error_kind"])
            detail = "" if entry["ok"] else escape(str(entry["error_message"] or ""))
            recent.add_row(str(entry["fetched_at"]), outcome, detail)
        stdout.print(recent)


def render_settings(described: dict[str, Any]) -> None:
    """`config show`: one row per setting (value, source), then the merged Meta config per endpoint."""
    table = Table("setting", "value", "source", title="effective settings", title_justify="left")
    for variable, entry in described["settings"].items():
        value = entry["value"]
        shown = json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else str(value)
        if variable in ("META_PLATFORM", "META_ENDPOINTS"):
            shown = "(see per endpoint below)"
        table.add_row(variable, escape(shown), entry["source"])
    stdout.print(table)
    for endpoint, platform in described["endpoints"].items():
        merged = Table("block", "setting", "value", title=f"Meta config for /{endpoint}", title_justify="left")
        for block, fields in platform.items():
            for key, value in fields.items():
                merged.add_row(block, key, escape(json.dumps(value, ensure_ascii=False)))
        stdout.print(merged)
