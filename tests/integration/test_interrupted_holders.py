"""What an interrupted or killed request leaves behind: nothing that outlives one attempt.

Each test first makes sure the victim really holds the probe (and its customer's slot), then
interrupts or kills it, and times how soon the next process gets through.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.integration.conftest import RedisServer
from tests.integration.helpers import Reply, invoke_cli, json_reply, stand_in_server

pytestmark = pytest.mark.integration

TOKEN = "EAAinterruptedHolderToken00000"


class SlowFirst:
    """A Graph API stand-in whose first request hangs until released; later ones answer at once."""

    def __init__(self) -> None:
        self.requests = 0
        self.first_arrived = threading.Event()
        self.release = threading.Event()

    def __call__(self, path: str, headers: dict[str, str]) -> Reply:
        self.requests += 1
        if self.requests == 1:
            self.first_arrived.set()
            self.release.wait(60)
        return json_reply(200, {"id": "1", "name": "Ada"}, {"X-App-Usage": '{"call_count": 1}'})


@pytest.fixture
def graph() -> Iterator[tuple[str, SlowFirst]]:
    server = SlowFirst()
    with stand_in_server(server) as url:
        yield url, server
        server.release.set()


def _env(url: str, home: Path, **extra: str) -> dict[str, str]:
    # One attempt: 1 s to connect + 2 s to read, so a probe or slot lease lasts 4 s.
    return {
        "META_GRAPH_URL": url,
        "META_ACCESS_TOKEN": TOKEN,
        "MOTION_META_HOME": str(home),
        "META_PLATFORM__RETRY__CONNECT_TIMEOUT_S": "1",
        "META_PLATFORM__RETRY__READ_TIMEOUT_S": "2",
        "META_PLATFORM__RETRY__MAX_ATTEMPTS": "1",
        **extra,
    }


def _as_from_a_shell() -> None:
    # The child starts with SIGINT at its default and unblocked, as from a terminal, whatever the test
    # process did to its own (in the full suite the victim once inherited a SIGINT it never saw).
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _fetch(env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "motion_meta_cli", "fetch", "--json"],
        preexec_fn=_as_from_a_shell,
        cwd=cwd,
        env={**os.environ, "PYTHONFAULTHANDLER": "1", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_ctrl_c_during_the_first_fetch_locks_nobody_out(tmp_path: Path, graph: tuple[str, SlowFirst]) -> None:
    url, server = graph
    env = _env(url, tmp_path / "home", META_PLATFORM__RETRY__READ_TIMEOUT_S="30")
    victim = _fetch(env, tmp_path)
    assert server.first_arrived.wait(30), "the first fetch never sent its request"
    victim.send_signal(signal.SIGINT)
    try:
        _, err = victim.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        victim.send_signal(signal.SIGABRT)  # PYTHONFAULTHANDLER: every thread's stack, on stderr
        _, err = victim.communicate(timeout=30)
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
        parent = f"parent's SIGINT handler {signal.getsignal(signal.SIGINT)!r}, mask {mask}"
        pytest.fail(f"the interrupted fetch did not exit within 30 s ({parent}):\n{err}")
    assert victim.returncode == 130, err
    start = time.monotonic()
    after = invoke_cli("fetch", "--json", env=env)
    assert after.code == 0, after.stderr
    assert json.loads(after.stdout)["name"] == "Ada"
    assert time.monotonic() - start < 5


def test_a_killed_probe_holder_frees_the_probe_within_one_attempt(
    tmp_path: Path, graph: tuple[str, SlowFirst], redis_server: RedisServer
) -> None:
    url, server = graph
    env = _env(url, tmp_path / "a", MOTION_META_CACHE_URL=redis_server.url)
    victim = _fetch(env, tmp_path)
    assert server.first_arrived.wait(30), "the first fetch never sent its request"
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    app_scope = json.loads(client.get("motion-meta:{mod}:app") or "{}")
    slots = json.loads(client.get("motion-meta:{mod}:slots:motion_test_user") or "{}")
    client.close()
    assert app_scope.get("probe"), "the victim holds the app's budget probe"
    assert len(slots.get("holders", {})) == 1, "and its customer's only slot"
    victim.kill()
    victim.communicate()
    killed = time.monotonic()
    other = invoke_cli("fetch", "--json", env={**env, "MOTION_META_HOME": str(tmp_path / "b")})
    assert other.code == 0, other.stderr
    assert time.monotonic() - killed < 5, "the probe and the slot lapsed within one attempt (4 s)"
    assert server.requests == 2
