"""`motion-meta emulator` as a command: serves, throttles, and reports bad input."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from tests.integration.helpers import invoke_cli

pytestmark = pytest.mark.integration


def test_the_command_serves_a_throttling_graph_api(tmp_path: Path) -> None:
    users = tmp_path / "users.json"
    users.write_text('{"users": [{"token": "EAAfileUser0000000000", "id": "123", "name": "From File"}]}')
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "motion_meta_cli",
            "emulator",
            "--port",
            "0",
            "--app-limit",
            "2",
            "--window-s",
            "30",
            "--users",
            str(users),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+", banner)
        assert match, banner
        assert "2 calls per 30 s" in banner
        url = match.group(0)
        env = {"META_GRAPH_URL": url, "META_ACCESS_TOKEN": "EAAfileUser0000000000"}
        first = invoke_cli("fetch", "--json", env=env)
        assert first.code == 0, first.stderr
        assert '"name": "From File"' in first.stdout
        requests.get(f"{url}/v25.0/me", headers={"Authorization": "Bearer EAAfileUser0000000000"}, timeout=5)
        throttled = requests.get(
            f"{url}/v25.0/me", headers={"Authorization": "Bearer EAAfileUser0000000000"}, timeout=5
        )
        assert throttled.status_code == 400
        assert throttled.json()["error"]["code"] == 4
        assert requests.get(f"{url}/__stats", timeout=5).json()["throttled"] == 1
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def test_a_bad_users_file_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "users.json").write_text("{not json")
    run = invoke_cli("emulator", "--port", "0", "--users", "users.json")
    assert run.code == 2
    assert run.stderr.startswith("error: users file")
    assert len(run.stderr.strip().splitlines()) == 1


@contextmanager
def served(*flags: str) -> Iterator[tuple[str, str]]:
    """`motion-meta emulator --port 0 FLAGS` in a child process; yields its URL and its banner line."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "motion_meta_cli", "emulator", "--port", "0", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+", banner)
        assert match, banner + (proc.stderr.read() if proc.stderr and proc.poll() is not None else "")
        yield match.group(0), banner
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def test_limit_flags_reach_the_emulator() -> None:
    flags = ["--token-limit", "2", "--page-limit", "10", "--buc-limit", "5", "--buc-business-id", "66782684"]
    flags += ["--buc-block-minutes", "3", "--time-scale", "1/60", "--accept-any-token"]
    with served(*flags) as (url, banner):
        assert "token limit 2" in banner and "page limit 10" in banner
        assert "business use case limit 5 (ads_management, blocks of at least 3 min of 1 s)" in banner
        token = {"Authorization": "Bearer EAAcliCustomer00000000000"}
        responses = [requests.get(f"{url}/v25.0/me", headers=token, timeout=5) for _ in range(3)]

        assert [r.status_code for r in responses] == [200, 200, 400]
        assert responses[2].json()["error"]["code"] == 17
        usage = json.loads(responses[0].headers["X-Business-Use-Case-Usage"])
        assert usage["66782684"][0]["call_count"] == 20
        stats = requests.get(f"{url}/__stats", timeout=5).json()
        assert (stats["token_limit"], stats["page_limit"], stats["buc_limit"]) == (2, 10, 5)
        assert stats["throttled_by_code"] == {"17": 1}


def test_fault_flags_reach_the_emulator() -> None:
    flags = ["--app-limit", "100", "--fault-500", "1", "--fault-string-numbers", "0.5", "--seed", "7"]
    flags += ["--latency-s", "0.001", "--latency-jitter-s", "0.001"]
    with served(*flags) as (url, banner):
        assert "faults: 500 100%, string_numbers 50%" in banner
        response = requests.get(f"{url}/v25.0/me", headers={"Authorization": "Bearer x"}, timeout=5)

        assert response.status_code == 500
        assert (response.json()["error"]["code"], response.json()["error"]["error_subcode"]) == (1, 99)
        assert requests.get(f"{url}/__stats", timeout=5).json()["faults"]["500"] == 1


def test_dropped_connections_flag() -> None:
    with served("--fault-drop", "1") as (url, _), pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/v25.0/me", timeout=5)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--fault-500", "0.7", "--fault-drop", "0.7"], "error: fault_500_rate + fault_transient_rate"),
        (["--time-scale", "0"], "error: time_scale must be positive"),
        (["--buc-type", " "], "error: buc_type must not be empty"),
    ],
)
def test_impossible_settings_are_a_usage_error(tmp_path: Path, flags: list[str], message: str) -> None:
    run = invoke_cli("emulator", "--port", "0", *flags)

    assert run.code == 2
    assert run.stderr.startswith(message)
    assert len(run.stderr.strip().splitlines()) == 1


def test_a_time_scale_that_is_not_a_number_is_refused(tmp_path: Path) -> None:
    run = invoke_cli("emulator", "--port", "0", "--time-scale", "fast", env={"TERMINAL_WIDTH": "200"})

    assert run.code == 2
    assert "not a number or a fraction like 1/60" in run.stderr
