"""Prometheus metrics (prometheus-client), in the library's default registry: `poll --metrics-port` serves
them, `poll --once --metrics-file` writes them in the textfile-collector format.

Names follow Prometheus conventions: the `motion_meta_` prefix, base units (seconds, ratios 0-1), `_total` on
counters, and no label whose values grow with the number of customers. Recording one is a dictionary lookup
and an add: cheap beside a request that spends 100-500 ms at Meta.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
    write_to_textfile,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from motion_meta_cli import __version__

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from motion_meta_cli.meta import Usage
    from motion_meta_cli.moderation.moderator import Moderator

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
WAIT_BUCKETS = (0.01, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600)

requests = Counter(
    "motion_meta_graph_requests_total",
    "Graph API attempts by endpoint and outcome (ok, throttled, transient, rejected, refused, network, upstream).",
    ["endpoint", "outcome"],
)
request_seconds = Histogram(
    "motion_meta_graph_request_duration_seconds",
    "Time one Graph API attempt spent in flight.",
    ["endpoint"],
    buckets=LATENCY_BUCKETS,
)
retries = Counter("motion_meta_graph_retries_total", "Attempts after the first of a request.", ["endpoint"])
throttles = Counter("motion_meta_throttles_total", "Throttled answers by the kind of scope Meta named.", ["scope_kind"])
waits = Histogram(
    "motion_meta_moderation_wait_seconds",
    "Time a request waited before it could be sent, by reason (cooldown, probe, budget, partition, customer_cap).",
    ["reason"],
    buckets=WAIT_BUCKETS,
)
cycles = Histogram(
    "motion_meta_poll_cycle_duration_seconds", "Duration of one poll cycle.", buckets=(0.1, 0.5, 1, 5, 15, 60, 300)
)
cycle_customers = Counter(
    "motion_meta_poll_customers_total",
    "Customers per poll cycle outcome (fetched, failed, skipped, taken_elsewhere).",
    ["result"],
)
overruns = Counter("motion_meta_poll_overruns_total", "Poll cycles that took longer than their interval.")
credential_refreshes = Counter(
    "motion_meta_credential_refreshes_total", "Tokens re-read because their validity marker was missing or changed."
)
secrets_reads = Counter(
    "motion_meta_secrets_store_reads_total", "Secrets read from the secrets store (a batch read counts each)."
)
backend_errors = Counter(
    "motion_meta_backend_errors_total", "Calls to a backend that did not answer, by backend.", ["backend"]
)
build = Info("motion_meta_build", "The running motion-meta.")
usage = Gauge(
    "motion_meta_usage_ratio",
    "Meta's last reported usage (0-1) by scope kind (app, business_use_case), use case and counter.",
    ["scope_kind", "use_case", "counter"],
)


def record_usage(reading: Usage) -> None:
    """Keep the counters of one answer's usage headers (the app's, and each business use case's)."""
    if reading.app is not None:
        _set_counters("app", "", reading.app)
    for entry in reading.business_use_cases:
        _set_counters("business_use_case", entry.type or "unknown", entry)


def _set_counters(kind: str, use_case: str, counters: object) -> None:
    for counter in ("call_count", "total_cputime", "total_time"):
        value = getattr(counters, f"{counter}_pct", None)
        if value is not None:
            usage.labels(kind, use_case, counter).set(value / 100)


def scope_kind(scope: str) -> str:
    """The bounded label for a scope key: `app`, `user`, `business_use_case`, `page`, `ad_account`."""
    kind = scope.split(":", 1)[0]
    return {"buc": "business_use_case"}.get(kind, kind)


class ModerationCollector(Collector):
    """What the shared moderation state says at scrape time: cooldowns and their seconds left, learned budgets,
    and whether moderation runs in-process because the shared state is away."""

    def __init__(self, moderator: Callable[[], Moderator | None]) -> None:
        self._moderator = moderator

    def collect(self) -> Iterator[Metric]:
        """One read of the state per scrape."""
        moderator = self._moderator()
        in_process = GaugeMetricFamily(
            "motion_meta_moderation_in_process", "1 while moderation runs in this process only (shared state away)."
        )
        active = GaugeMetricFamily("motion_meta_cooldowns_active", "Scopes in a cooldown.", labels=["scope_kind"])
        left = GaugeMetricFamily(
            "motion_meta_cooldown_seconds_left", "Longest cooldown left, by scope kind.", labels=["scope_kind"]
        )
        budget = GaugeMetricFamily(
            "motion_meta_budget_calls",
            "Smallest learned budget (calls per window), by scope kind.",
            labels=["scope_kind"],
        )
        if moderator is not None:
            in_process.add_metric([], 1.0 if getattr(moderator.state, "degraded", False) else 0.0)
            counts: dict[str, int] = {}
            longest: dict[str, float] = {}
            smallest: dict[str, float] = {}
            try:
                described = moderator.describe()
            except Exception:  # a scrape must never fail the poll
                described = {"scopes": []}
            for entry in described["scopes"]:
                kind = scope_kind(entry["scope"])
                if entry["cooldown_s"]:
                    counts[kind] = counts.get(kind, 0) + 1
                    longest[kind] = max(longest.get(kind, 0.0), float(entry["cooldown_s"]))
                if isinstance(entry["budget"], int) and entry["budget"] > 0:
                    smallest[kind] = min(smallest.get(kind, float("inf")), float(entry["budget"]))
            for kind in sorted(counts):
                active.add_metric([kind], counts[kind])
                left.add_metric([kind], longest[kind])
            for kind in sorted(smallest):
                budget.add_metric([kind], smallest[kind])
        yield from (in_process, active, left, budget)


_collector: ModerationCollector | None = None
_moderator: Moderator | None = None


def watch(moderator: Moderator, api_version: str) -> None:
    """Report `moderator`'s shared state in scrapes (once per process), and the build info."""
    global _collector, _moderator
    _moderator = moderator
    build.info({"version": __version__, "api_version": api_version})
    if _collector is None:
        _collector = ModerationCollector(lambda: _moderator)
        REGISTRY.register(_collector)


Probe = Callable[[], tuple[bool, dict[str, object]]]


def serve(port: int, *, live: Probe, ready: Probe, address: str = "0.0.0.0") -> ThreadingHTTPServer:
    """Serve `/metrics`, `/livez` and `/readyz` from a daemon thread; each probe answers 200 or 503 with a small
    JSON body. Returns the server (`shutdown()` stops it)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                body, status, kind = generate_latest(REGISTRY), 200, CONTENT_TYPE_LATEST
            elif path in ("/livez", "/readyz"):
                ok, detail = (live if path == "/livez" else ready)()
                body = json.dumps({"status": "ok" if ok else "failing", **detail}).encode()
                status, kind = (200 if ok else 503), "application/json"
            else:
                body, status, kind = b"not found\n", 404, "text/plain"
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # scrapes every few seconds would drown the log

    server = ThreadingHTTPServer((address, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server


def write_textfile(path: Path) -> None:
    """Write every metric to `path` in the textfile-collector format, atomically (prometheus-client writes a
    temporary file beside it and renames it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), REGISTRY)
