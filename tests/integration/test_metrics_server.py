"""`poll --metrics-port`: /metrics, /livez and /readyz served from a running poll, against the emulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from motion_meta_cli.emulator import DEMO_TOKEN
from tests.integration.conftest import RedisServer, free_port
from tests.integration.helpers import emulator_process

pytestmark = pytest.mark.integration


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _poll(tmp_path: Path, env: dict[str, str], port: int) -> subprocess.Popen[str]:
    """`poll --interval 1` with metrics on `port`, printing one JSON line per cycle."""
    command = [sys.executable, "-m", "motion_meta_cli", "poll", "--interval", "1", "--cycles", "30", "--json"]
    return subprocess.Popen(
        [*command, "--metrics-port", str(port)],
        cwd=tmp_path,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_running_poll_serves_metrics_and_health(tmp_path: Path) -> None:
    port = free_port()
    with (
        emulator_process("--accept-any-token") as url,
        _poll(tmp_path, {"META_GRAPH_URL": url, "META_ACCESS_TOKEN": DEMO_TOKEN}, port) as proc,
    ):
        try:
            assert proc.stdout is not None
            first_cycle = json.loads(proc.stdout.readline())  # the first cycle has run
            assert first_cycle["fetched"] == 1
            status, metrics = _get(f"http://127.0.0.1:{port}/metrics")
            assert status == 200
            assert 'motion_meta_poll_customers_total{result="fetched"}' in metrics
            assert 'motion_meta_graph_requests_total{endpoint="me",outcome="ok"}' in metrics
            assert DEMO_TOKEN not in metrics
            live_status, live = _get(f"http://127.0.0.1:{port}/livez")
            assert live_status == 200 and json.loads(live)["status"] == "ok"
            ready_status, ready = _get(f"http://127.0.0.1:{port}/readyz")
            assert ready_status == 200, ready
            assert json.loads(ready)["backends"] == {"cache": "ok", "store": "ok", "secrets": "ok"}
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def test_readyz_says_503_and_names_the_backend_while_redis_is_away(tmp_path: Path, redis_server: RedisServer) -> None:
    port = free_port()
    with emulator_process("--accept-any-token") as url:
        env = {
            "META_GRAPH_URL": url,
            "META_ACCESS_TOKEN": DEMO_TOKEN,
            "MOTION_META_CACHE_URL": redis_server.url,
            "MOTION_META_REDIS_TIMEOUT_S": "0.5",
        }
        with _poll(tmp_path, env, port) as proc:
            try:
                assert proc.stdout is not None
                json.loads(proc.stdout.readline())  # the first cycle has run, with Redis there
                assert _get(f"http://127.0.0.1:{port}/readyz")[0] == 200
                redis_server.stop()
                status, body = _get(f"http://127.0.0.1:{port}/readyz")
                assert status == 503, body
                assert json.loads(body)["backends"]["cache"].startswith("cannot reach Redis")
                assert _get(f"http://127.0.0.1:{port}/livez")[0] == 200, "the loop itself is alive"
            finally:
                proc.terminate()
                proc.wait(timeout=30)
