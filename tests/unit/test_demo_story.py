"""The demo's closing text is derived from its own figures, never a fixed story."""

from __future__ import annotations

from motion_meta_cli.cli.demo import _story
from motion_meta_cli.stress import StressReport


def _report(probes: int) -> StressReport:
    return StressReport(
        requests=240, concurrency=120, pacing=False, succeeded=240, failed=0, failures={},
        throttled_responses=3, retries=3, probes=probes, paused_s=1.0, duration_s=9.3,
        first_throttle_s=0.4, latency_ms={"p50": 1.0, "p95": 2.0, "max": 3.0}, exit_code=0,
    )  # fmt: skip


def test_the_story_counts_what_happened() -> None:
    several = _story({"throttled": 3, "blocked_arrivals": 3}, _report(probes=4), 6.0)
    assert "3 throttled answers, 3 requests arriving while blocked" in several
    assert "(4 probes in all)" in several and "240/240 succeeded in 9.3 s" in several
    assert "(1 probe in all)" in _story({"throttled": 1, "blocked_arrivals": 1}, _report(probes=1), 6.0)
    assert "no probe was needed" in _story({"throttled": 1, "blocked_arrivals": 1}, _report(probes=0), 6.0)
    assert "Meta throttled nothing" in _story({"throttled": 0, "blocked_arrivals": 0}, _report(probes=0), 6.0)
