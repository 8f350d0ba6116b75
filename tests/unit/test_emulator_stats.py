"""The `/__stats` counters: blocked arrivals per scope, throttles, faults and the first throttle's time."""

from __future__ import annotations

import json

from motion_meta_cli.emulator import EmulatorConfig, Fault, ScopeLimits
from motion_meta_cli.emulator.stats import EmulatorStats, RequestRecord
from tests.unit.test_emulator_limiter import FakeClock

TOKEN = "EAAstats" + "x" * 30


def test_starts_empty_with_every_key() -> None:
    snapshot = EmulatorStats(FakeClock()).snapshot()

    assert snapshot["blocked_arrivals"] == 0
    assert snapshot["blocked_arrivals_by_scope"] == {"app": 0, "page": 0, "token": 0, "business_use_case": 0}
    assert snapshot["faults"] == {
        "500": 0,
        "transient": 0,
        "html": 0,
        "malformed_usage": 0,
        "string_numbers": 0,
        "dropped": 0,
        "slow": 0,
    }
    assert snapshot["first_throttle_at_s"] is None
    assert snapshot["throttled_by_code"] == {}


def test_blocked_arrivals_count_once_in_total_and_once_per_blocked_scope() -> None:
    clock = FakeClock()
    scopes = ScopeLimits(EmulatorConfig(app_limit=3, page_limit=2, token_limit=1), clock)
    stats = EmulatorStats(clock)

    for _ in range(4):
        stats.enter()
        stats.leave(RequestRecord(status=200, verdict=scopes.record(TOKEN)))

    snapshot = stats.snapshot()
    assert snapshot["blocked_arrivals"] == 3  # calls 2, 3 and 4
    assert snapshot["blocked_arrivals_by_scope"] == {"app": 1, "page": 2, "token": 3, "business_use_case": 0}


def test_first_throttle_is_timed_from_start_or_reset() -> None:
    clock = FakeClock()
    stats = EmulatorStats(clock)
    clock.advance(2.5)
    stats.enter()
    stats.leave(RequestRecord(status=200))
    clock.advance(1.25)
    for _ in range(2):
        stats.enter()
        stats.leave(RequestRecord(status=400, throttle_code=17))
        clock.advance(10.0)

    assert stats.snapshot()["first_throttle_at_s"] == 3.75
    assert stats.snapshot()["throttled_by_code"] == {"17": 2}

    stats.reset()
    clock.advance(1.0)
    stats.enter()
    stats.leave(RequestRecord(status=400, throttle_code=80004))
    assert stats.snapshot()["first_throttle_at_s"] == 1.0


def test_faults_and_dropped_requests() -> None:
    stats = EmulatorStats(FakeClock())
    for record in (
        RequestRecord(status=500, fault=Fault.SERVER_ERROR),
        RequestRecord(status=None, fault=Fault.DROPPED),
        RequestRecord(status=200, fault=Fault.MALFORMED_USAGE),
    ):
        stats.enter()
        stats.leave(record)

    snapshot = stats.snapshot()
    assert snapshot["requests"] == 3
    assert snapshot["by_status"] == {"200": 1, "500": 1}  # a dropped request got no status
    assert (snapshot["faults"]["500"], snapshot["faults"]["dropped"], snapshot["faults"]["malformed_usage"]) == (
        1,
        1,
        1,
    )
    assert json.loads(json.dumps(snapshot)) == snapshot
