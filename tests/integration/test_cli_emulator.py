"""`motion-meta emulator` as a command: serves, throttles, and reports bad input."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.integration.helpers import run_cli

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
        first = run_cli("fetch", "--json", cwd=tmp_path, env=env)
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
    run = run_cli("emulator", "--port", "0", "--users", "users.json", cwd=tmp_path)
    assert run.code == 2
    assert run.stderr.startswith("error: users file")
    assert len(run.stderr.strip().splitlines()) == 1
