"""Two `poll` instances share one Redis, each from a network namespace of its own; one is cut off Redis mid-run
and brought back. Meta's budget (the emulator's, for the whole app) holds throughout: no throttle, and no
window with more calls than the limit, while the instance cut off goes on fetching at its share.

The test's hosts: namespace `srv` runs redis-server; `a` and `b` each have a veth pair to `srv` (Redis) and
one to the test's own namespace, where the emulator listens (Meta). Taking a's link to `srv` down cuts it off
Redis and nothing else. Making namespaces needs root (CAP_NET_ADMIN) and iproute2's `ip`; without them the
test fails and says so.
"""

from __future__ import annotations

import os
import queue
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from motion_meta_cli.app import AppHandler
from motion_meta_cli.config import Settings
from motion_meta_cli.emulator.users import derived_user

pytestmark = pytest.mark.integration

LIMIT = 40
"""Calls per window for the whole app, at the emulator."""
WINDOW_S = 6.0
CUSTOMERS = 20
"""Per instance: each polls its own, 4 at a time every 0.5 s, far more than the budget allows."""
REDIS = "6379"


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    assert done.returncode == 0, f"ip {' '.join(args)}: {done.stderr.strip()}"


class Hosts:
    """Network namespaces and veth pairs made for one test, and removed after it (removing a namespace
    removes its end of every pair, and so the pair)."""

    def __init__(self) -> None:
        if os.geteuid() != 0 or shutil.which("ip") is None:
            pytest.fail("this test makes network namespaces: it needs root and iproute2's ip (apt install iproute2)")
        self.tag = f"{random.randrange(16**4):04x}"
        self.namespaces: list[str] = []
        self._links = 0

    def namespace(self, name: str) -> str:
        full = f"mm{self.tag}{name}"
        _ip("netns", "add", full)
        self.namespaces.append(full)
        _ip("-n", full, "link", "set", "lo", "up")
        return full

    def link(self, left: str | None, left_ip: str, right: str, right_ip: str) -> str:
        """A veth pair from `left` (None: the test's own namespace) to `right`, with a /24 address at each
        end; returns the name of the left end."""
        self._links += 1
        a, b = f"mm{self.tag}l{self._links}", f"mm{self.tag}r{self._links}"
        _ip("link", "add", a, "type", "veth", "peer", "name", b)
        for end, namespace, address in ((a, left, left_ip), (b, right, right_ip)):
            scoped = ["-n", namespace] if namespace else []
            if namespace:
                _ip("link", "set", end, "netns", namespace)
            _ip(*scoped, "addr", "add", f"{address}/24", "dev", end)
            _ip(*scoped, "link", "set", end, "up")
        return a

    def run(self, namespace: str, command: list[str], **popen: object) -> subprocess.Popen[str]:
        return subprocess.Popen(["ip", "netns", "exec", namespace, *command], text=True, **popen)  # type: ignore[call-overload]

    def close(self) -> None:
        for namespace in self.namespaces:
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    made = Hosts()
    try:
        yield made
    finally:
        made.close()


class Instance:
    """A `poll` in its namespace, with its stderr read line by line so that the test can wait on what it logs."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)
            self.lines.put(line)

    def wait_for(self, text: str, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"never logged {text!r}:\n{''.join(self.log)[-2000:]}"
            try:
                if text in self.lines.get(timeout=left):
                    return
            except queue.Empty:
                continue

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.communicate(timeout=60)
        self._reader.join(timeout=10)


def _token(prefix: str, n: int) -> str:
    return f"EAApartition{prefix}{n:02d}xxxxxxxxxxxx"


def _seed(home: Path, prefix: str) -> set[str]:
    """`CUSTOMERS` customers with tokens of their own; returns the emulator's user ids for them."""
    with AppHandler(Settings(motion_meta_home=home)) as app:
        for n in range(CUSTOMERS):
            app.store.add_customer(f"{prefix}{n:02d}")
            app.secrets.put_secret(f"{prefix}{n:02d}", _token(prefix, n))
    return {derived_user(_token(prefix, n)).id for n in range(CUSTOMERS)}


def _quiet(count: Callable[[], int], seconds: float) -> Callable[[], bool]:
    """A condition: `count()` has not moved for `seconds`."""
    last = [count(), time.monotonic()]

    def still() -> bool:
        now = count()
        if now != last[0]:
            last[:] = [now, time.monotonic()]
        return time.monotonic() - last[1] >= seconds

    return still


def _until(condition: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.1)


def test_an_instance_cut_off_redis_keeps_to_its_share_and_rejoins_without_a_burst(tmp_path: Path, hosts: Hosts) -> None:
    octet = random.randrange(100, 250)  # the test's own namespace holds two addresses: keep them unlikely to clash
    srv, a, b = hosts.namespace("srv"), hosts.namespace("a"), hosts.namespace("b")
    cut = hosts.link(a, "10.77.1.2", srv, "10.77.1.1")
    hosts.link(b, "10.77.2.2", srv, "10.77.2.1")
    hosts.link(None, f"10.{octet}.1.1", a, f"10.{octet}.1.2")
    hosts.link(None, f"10.{octet}.2.1", b, f"10.{octet}.2.2")

    redis = hosts.run(
        srv,
        [
            "redis-server",
            "--port",
            REDIS,
            "--bind",
            "0.0.0.0",
            "--protected-mode",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
    )
    limits = ["--app-limit", str(LIMIT), "--window-s", str(WINDOW_S), "--latency-s", "0.05", "--accept-any-token"]
    emulator = subprocess.Popen(
        [sys.executable, "-m", "motion_meta_cli", "emulator", "--host", "0.0.0.0", "--port", "0", *limits],
        stdout=subprocess.PIPE,
        text=True,
    )
    instances: list[Instance] = []
    users: dict[str, set[str]] = {}
    try:
        assert emulator.stdout is not None
        port = re.search(r"http://[\d.]+:(\d+)", emulator.stdout.readline())
        assert port, "the emulator printed no URL"
        stats_url = f"http://127.0.0.1:{port.group(1)}"
        _until(
            lambda: (
                subprocess.run(
                    ["ip", "netns", "exec", srv, "redis-cli", "-p", REDIS, "ping"], capture_output=True, text=True
                ).stdout.strip()
                == "PONG"
            ),
            "Redis answers",
        )
        for name, side in (("a", 1), ("b", 2)):
            home = tmp_path / name
            users[name] = _seed(home, name)
            env = {
                **os.environ,
                "MOTION_META_HOME": str(home),
                "MOTION_META_CACHE_URL": f"redis://10.77.{side}.1:{REDIS}/0",
                "MOTION_META_REDIS_TIMEOUT_S": "0.5",
                "META_GRAPH_URL": f"http://10.{octet}.{side}.1:{port.group(1)}",
                "META_RATE_WINDOW_S": str(WINDOW_S),
                "MOTION_META_LOG_LEVEL": "WARNING",
            }
            command = [sys.executable, "-m", "motion_meta_cli", "poll", "--interval", "0.5", "--concurrency", "4"]
            namespace = a if name == "a" else b
            proc = hosts.run(
                namespace, command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            instances.append(Instance(proc))
        first = instances[0]

        def calls(name: str) -> int:
            per_user = requests.get(f"{stats_url}/__stats", timeout=5).json()["per_user"]
            return sum(n for user, n in per_user.items() if user in users[name])

        def total() -> int:
            return int(requests.get(f"{stats_url}/__stats", timeout=5).json()["requests"])

        def throttled() -> int:
            return int(requests.get(f"{stats_url}/__stats", timeout=5).json()["throttled"])

        throttles_by_phase: dict[str, int] = {}

        _until(lambda: total() >= 2 * LIMIT, "both instances have paced for two windows")
        assert calls("a") > 0 and calls("b") > 0
        # Cut while the window's budget is spent (no call for a while), as it is most of the time: a cut just
        # before the window frees its budget lets the other instance take it all before it sees this one away,
        # which is the bound the README gives.
        _until(_quiet(total, 0.5), "the window's budget is spent")

        throttles_by_phase["before"] = throttled()
        _ip("-n", a, "link", "set", cut, "down")
        first.wait_for("moderating in this process only")
        a_at_cut, b_at_cut, at_cut = calls("a"), calls("b"), time.monotonic()
        _until(
            lambda: calls("a") > a_at_cut and time.monotonic() - at_cut >= WINDOW_S,
            "the instance cut off has fetched alone, for a window",
        )
        a_cut_off = calls("a") - a_at_cut
        b_meanwhile = calls("b") - b_at_cut

        throttles_by_phase["cut"] = throttled()
        _ip("-n", a, "link", "set", cut, "up")
        first.wait_for("moderation is shared again")
        after = total()
        _until(lambda: total() >= after + 2 * LIMIT, "both instances have paced together again for two windows")
        throttles_by_phase["after"] = throttled()
        for instance in instances:
            instance.stop()
        stats = requests.get(f"{stats_url}/__stats", timeout=5).json()
        timeline = requests.get(f"{stats_url}/__timeline", timeout=5).json()["per_user"]
    finally:
        for instance in instances:
            if instance.proc.poll() is None:
                instance.proc.kill()
                instance.proc.wait()
        for proc in (emulator, redis):
            proc.kill()
            proc.wait()
        if emulator.stdout is not None:
            emulator.stdout.close()

    for instance in instances:
        assert instance.proc.returncode == 0, "".join(instance.log)[-2000:]
        assert "Traceback" not in "".join(instance.log), "".join(instance.log)[-2000:]
    times = sorted(t for user_times in timeline.values() for t in user_times)
    busiest = max(sum(1 for t in times[i:] if t < start + WINDOW_S) for i, start in enumerate(times))
    assert stats["throttled"] == 0, (throttles_by_phase, busiest, a_cut_off, b_meanwhile, stats)
    assert busiest <= LIMIT, f"{busiest} calls in one {WINDOW_S} s window; Meta allows {LIMIT}"
    assert a_cut_off > 0 and b_meanwhile > 0, "both went on fetching, each at its share"
