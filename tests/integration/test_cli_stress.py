"""`motion-meta stress` as a user runs it: summary, JSON, and a failing run's exit code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from motion_meta_cli.emulator import DEMO_TOKEN, EmulatorConfig, GraphEmulator
from tests.integration.conftest import free_port
from tests.integration.helpers import invoke_cli

pytestmark = pytest.mark.integration

KEYS = {"requests", "concurrency", "succeeded", "failed", "throttled_responses", "retries", "paused_s"}
KEYS |= {"duration_s", "first_throttle_s", "latency_ms"}


def test_stress_reports_every_figure(tmp_path: Path) -> None:
    with GraphEmulator(EmulatorConfig()) as server:
        env = {"META_GRAPH_URL": server.url, "META_ACCESS_TOKEN": DEMO_TOKEN}
        run = invoke_cli("stress", "--concurrency", "5", "--json", env=env)
        table = invoke_cli("stress", "--concurrency", "2", "--requests", "3", env=env)
    assert run.code == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary.keys() >= KEYS
    assert (summary["requests"], summary["succeeded"], summary["failed"]) == (20, 20, 0), "default: 4 × concurrency"
    assert set(summary["latency_ms"]) == {"p50", "p95", "max"}
    assert table.code == 0
    assert "stress summary" in table.stdout and "throttled responses" in table.stdout


def test_stress_exits_non_zero_when_requests_fail(tmp_path: Path) -> None:
    env = {
        "META_GRAPH_URL": f"http://127.0.0.1:{free_port()}",
        "META_ACCESS_TOKEN": DEMO_TOKEN,
        "META_PLATFORM__RETRY__MAX_ATTEMPTS": "1",
    }
    run = invoke_cli("stress", "--concurrency", "2", "--requests", "4", "--json", env=env)
    assert run.code == 6
    summary = json.loads(run.stdout)
    assert summary["failed"] == 4
    assert summary["failures"] == {"network": 4}


def _emulator_requests(url: str) -> int:
    import urllib.request

    with urllib.request.urlopen(f"{url}/__stats", timeout=10) as answer:
        return int(json.load(answer)["requests"])


def test_ctrl_c_stops_sending_lets_requests_in_flight_finish_and_prints_the_partial_summary(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.integration.helpers import emulator_process

    with emulator_process("--accept-any-token", "--latency-s", "0.3") as url:
        env = {**os.environ, "META_GRAPH_URL": url, "META_ACCESS_TOKEN": DEMO_TOKEN}
        command = [sys.executable, "-m", "motion_meta_cli", "stress", "--requests", "400", "--concurrency", "20"]
        with subprocess.Popen(
            [*command, "--json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        ) as proc:
            deadline = time.monotonic() + 30
            while _emulator_requests(url) < 20 and time.monotonic() < deadline:  # a first wave is in flight
                time.sleep(0.05)
            proc.send_signal(signal.SIGINT)
            sent_at_signal = _emulator_requests(url)
            out, err = proc.communicate(timeout=60)
        sent = _emulator_requests(url)
    assert proc.returncode == 130, err
    assert "stopping: finishing requests in flight" in err
    summary = json.loads(out)
    assert summary["stopped"] is True
    assert summary["not_started"] > 0
    assert summary["succeeded"] + summary["failed"] + summary["not_started"] == 400
    assert sent <= sent_at_signal + 20, "nothing new was sent after Ctrl-C beyond the requests already in flight"
    assert summary["succeeded"] >= sent_at_signal - 20, "the requests in flight were let finish"
