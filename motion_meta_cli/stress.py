"""Stress: many `/me` requests at once through the same request manager the service uses, to show the
moderation at work (or, with pacing, to show it never needing to)."""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from motion_meta_cli.app import AppHandler
from motion_meta_cli.config import Settings
from motion_meta_cli.errors import ExitCode, MotionMetaError, StoppedError


@dataclass
class StressProgress:
    """Live counters, safe to read from another thread."""

    requests: int
    concurrency: int
    done: int = 0
    succeeded: int = 0
    failed: int = 0
    in_flight: int = 0
    not_started: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def finished(self, ok: bool, kind: str | None = None) -> None:
        """Count one finished request."""
        with self._lock:
            self.done += 1
            self.in_flight -= 1
            if ok:
                self.succeeded += 1
            else:
                self.failed += 1
                self.failures[kind or "internal"] += 1

    def started(self) -> None:
        """Count one request starting."""
        with self._lock:
            self.in_flight += 1

    def skipped(self, *, started: bool = False) -> None:
        """Count one request never sent: the run was stopped before it started (or, `started`, while it
        waited to be sent)."""
        with self._lock:
            self.not_started += 1
            if started:
                self.in_flight -= 1


@dataclass(frozen=True)
class StressReport:
    """What a stress run did; `to_dict` is the `--json` summary."""

    requests: int
    concurrency: int
    pacing: bool
    succeeded: int
    failed: int
    failures: dict[str, int]
    throttled_responses: int
    retries: int
    probes: int
    paused_s: float
    duration_s: float
    first_throttle_s: float | None
    latency_ms: dict[str, float]
    exit_code: int
    not_started: int = 0
    """Requests never sent because the run was stopped (Ctrl-C, SIGTERM) first."""
    stopped: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "requests": self.requests,
            "concurrency": self.concurrency,
            "pacing": self.pacing,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "failures": self.failures,
            "throttled_responses": self.throttled_responses,
            "retries": self.retries,
            "probes": self.probes,
            "paused_s": round(self.paused_s, 3),
            "duration_s": round(self.duration_s, 3),
            "first_throttle_s": None if self.first_throttle_s is None else round(self.first_throttle_s, 3),
            "latency_ms": {k: round(v, 1) for k, v in self.latency_ms.items()},
            "not_started": self.not_started,
            "stopped": self.stopped,
        }


def stress_settings(settings: Settings, *, concurrency: int, pacing: bool) -> Settings:
    """`settings` with the connection pool sized to `concurrency` and pacing on or off."""
    platform = settings.meta_platform.merged({"throttle": {"pacing": pacing}})
    return settings.model_copy(update={"meta_platform": platform, "motion_meta_concurrency": concurrency})


def run_stress(
    app: AppHandler,
    *,
    customer: str,
    requests: int,
    concurrency: int,
    progress: StressProgress | None = None,
    clock: Callable[[], float] = time.monotonic,
    stop: threading.Event | None = None,
) -> StressReport:
    """Send `requests` GET /me for `customer` from `concurrency` workers; never raises for a failed request.

    Stress is a load generator: it calls the request manager directly, so the per-customer cap on
    requests in flight (which `fetch` and `poll` respect) does not apply; every moderation scope does.
    Once `stop` is set no request starts; those in flight finish (a wait the app's sleep cuts short ends
    as not started), and the report says how many never went.
    """
    stop = stop or threading.Event()
    progress = progress or StressProgress(requests, concurrency)
    app.require_customer(customer)
    token = app.credentials.token(customer)
    manager, stats = app.requests, app.moderator.stats
    before_sent, before_throttles, before_paused, before_probes = (
        stats.sent,
        stats.throttles,
        stats.paused_s,
        stats.probes,
    )
    latencies: list[float] = []
    first_failure: list[int] = []
    start = clock()

    def one(_: int) -> None:
        if stop.is_set():
            progress.skipped()
            return
        progress.started()
        began = clock()
        try:
            manager.get("me", token, params={"fields": "id,name"}, customer=customer, capped=False)
        except StoppedError:
            progress.skipped(started=True)
            return
        except MotionMetaError as exc:
            first_failure.append(exc.exit_code)
            progress.finished(False, exc.kind)
        except Exception:
            first_failure.append(ExitCode.INTERNAL)
            progress.finished(False, "internal")
        else:
            progress.finished(True)
        latencies.append((clock() - began) * 1000)

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="stress") as pool:
        list(pool.map(one, range(requests)))
    duration = clock() - start
    first = stats.first_throttle_at
    ordered = sorted(latencies)
    return StressReport(
        requests=requests,
        concurrency=concurrency,
        pacing=app.settings.meta_platform.throttle.pacing,
        succeeded=progress.succeeded,
        failed=progress.failed,
        failures=dict(progress.failures),
        throttled_responses=stats.throttles - before_throttles,
        retries=max(0, (stats.sent - before_sent) - requests),
        probes=stats.probes - before_probes,
        paused_s=stats.paused_s - before_paused,
        duration_s=duration,
        first_throttle_s=None if first is None or first < start else first - start,
        latency_ms={
            "p50": statistics.median(ordered) if ordered else 0.0,
            "p95": ordered[int(0.95 * (len(ordered) - 1))] if ordered else 0.0,
            "max": ordered[-1] if ordered else 0.0,
        },
        exit_code=ExitCode.OK if not first_failure else first_failure[0],
        not_started=progress.not_started,
        stopped=stop.is_set(),
    )
