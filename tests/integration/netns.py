"""Test hosts in network namespaces: two `poll` instances on one Redis, each in a namespace of its own, and a
link the caller can cut (`tests/integration/test_partition.py`, `benchmarks/partition.py`).

Namespace `srv` runs redis-server; `a` and `b` each have a veth pair to `srv` (Redis) and one to the caller's
own namespace, where the emulator listens (Meta). Taking a's link to `srv` down cuts it off Redis and nothing
else. Making namespaces needs root (CAP_NET_ADMIN) and iproute2's `ip`.
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
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from motion_meta_cli.app import AppHandler
from motion_meta_cli.config import Settings
from motion_meta_cli.emulator.users import derived_user

REDIS_PORT = "6379"


class NamespacesUnavailable(RuntimeError):
    """This process cannot make network namespaces."""


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


class Hosts:
    """Network namespaces and veth pairs, removed by `close` (removing a namespace removes its end of every
    pair, and so the pair)."""

    def __init__(self) -> None:
        if os.geteuid() != 0 or shutil.which("ip") is None:
            raise NamespacesUnavailable("making network namespaces needs root and iproute2's ip (apt install iproute2)")
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
        """A veth pair from `left` (None: the caller's own namespace) to `right`, with a /24 address at each
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

    def run(self, namespace: str, command: list[str], **popen: Any) -> subprocess.Popen[str]:
        return subprocess.Popen(["ip", "netns", "exec", namespace, *command], text=True, **popen)

    def close(self) -> None:
        for namespace in self.namespaces:
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)


class Instance:
    """A `poll` in its namespace, its stderr read line by line so that the caller can wait on what it logs."""

    def __init__(self, proc: subprocess.Popen[str], users: set[str]) -> None:
        self.proc = proc
        self.users = users
        """The emulator's user ids of its customers."""
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
        """Return once a line with `text` is logged (AssertionError with the log's tail after `timeout_s`)."""
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
        """SIGTERM, as a supervisor stops it, and wait."""
        self.proc.send_signal(signal.SIGTERM)
        self.proc.communicate(timeout=60)
        self._reader.join(timeout=10)


@dataclass
class TwoInstances:
    """What `two_instances_on_one_redis` yields."""

    a: Instance
    b: Instance
    stats_url: str
    cut_link: str
    a_namespace: str
    srv_namespace: str

    def stats(self) -> dict[str, Any]:
        return dict(requests.get(f"{self.stats_url}/__stats", timeout=5).json())

    def calls(self, instance: Instance) -> int:
        """Calls the emulator has answered for `instance`'s customers."""
        return sum(n for user, n in self.stats()["per_user"].items() if user in instance.users)

    def timeline(self) -> dict[str, list[float]]:
        return dict(requests.get(f"{self.stats_url}/__timeline", timeout=5).json()["per_user"])

    def redis(self, *args: str) -> str:
        """A `redis-cli` command on the shared Redis; its raw output."""
        command = ["ip", "netns", "exec", self.srv_namespace, "redis-cli", "-p", REDIS_PORT, "--raw", *args]
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()

    def cut(self) -> None:
        """Take a's link to Redis down."""
        _ip("-n", self.a_namespace, "link", "set", self.cut_link, "down")

    def restore(self) -> None:
        _ip("-n", self.a_namespace, "link", "set", self.cut_link, "up")


def _seed(home: Path, prefix: str, customers: int) -> set[str]:
    """`customers` customers with tokens of their own; returns the emulator's user ids for them."""
    tokens = {f"{prefix}{n:02d}": f"EAApartition{prefix}{n:02d}xxxxxxxxxxxx" for n in range(customers)}
    with AppHandler(Settings(motion_meta_home=home)) as app:
        for name, token in tokens.items():
            app.store.add_customer(name)
            app.secrets.put_secret(name, token)
    return {derived_user(token).id for token in tokens.values()}


@contextmanager
def two_instances_on_one_redis(
    workdir: Path,
    *,
    limit: int,
    window_s: float,
    customers: int,
    pythonpath: str | None = None,
    guard_pct: float | None = None,
) -> Iterator[TwoInstances]:
    """Redis in `srv`, the emulator here (`limit` calls per `window_s` for the whole app, 50 ms a call), and
    `poll --interval 0.5 --concurrency 4` in `a` and in `b`, each over `customers` customers of its own;
    `pythonpath` runs the instances from another checkout, `guard_pct` sets WINDOW_GUARD_PCT. Everything is
    stopped and removed afterwards."""
    hosts = Hosts()
    procs: list[subprocess.Popen[str]] = []
    try:
        octet = random.randrange(100, 250)  # this namespace holds two addresses: keep them unlikely to clash
        srv, a, b = hosts.namespace("srv"), hosts.namespace("a"), hosts.namespace("b")
        cut = hosts.link(a, "10.77.1.2", srv, "10.77.1.1")
        hosts.link(b, "10.77.2.2", srv, "10.77.2.1")
        hosts.link(None, f"10.{octet}.1.1", a, f"10.{octet}.1.2")
        hosts.link(None, f"10.{octet}.2.1", b, f"10.{octet}.2.2")
        redis = ["redis-server", "--port", REDIS_PORT, "--bind", "0.0.0.0", "--protected-mode", "no", "--save", ""]
        procs.append(hosts.run(srv, redis, stdout=subprocess.DEVNULL))
        flags = ["--app-limit", str(limit), "--window-s", str(window_s), "--latency-s", "0.05", "--accept-any-token"]
        emulator = subprocess.Popen(
            [sys.executable, "-m", "motion_meta_cli", "emulator", "--host", "0.0.0.0", "--port", "0", *flags],
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(emulator)
        assert emulator.stdout is not None
        found = re.search(r"http://[\d.]+:(\d+)", emulator.stdout.readline())
        assert found, "the emulator printed no URL"
        port = found.group(1)
        ping = ["ip", "netns", "exec", srv, "redis-cli", "-p", REDIS_PORT, "ping"]
        until(lambda: subprocess.run(ping, capture_output=True, text=True).stdout.strip() == "PONG", "Redis answers")
        instances = []
        for name, namespace, side in (("a", a, 1), ("b", b, 2)):
            home = workdir / name
            users = _seed(home, name, customers)
            env = {
                **os.environ,
                "MOTION_META_HOME": str(home),
                "MOTION_META_CACHE_URL": f"redis://10.77.{side}.1:{REDIS_PORT}/0",
                "MOTION_META_REDIS_TIMEOUT_S": "0.5",
                "META_GRAPH_URL": f"http://10.{octet}.{side}.1:{port}",
                "META_RATE_WINDOW_S": str(window_s),
                **({"META_PLATFORM__THROTTLE__WINDOW_GUARD_PCT": str(guard_pct)} if guard_pct is not None else {}),
                "MOTION_META_LOG_LEVEL": "WARNING",
                **({"PYTHONPATH": pythonpath} if pythonpath else {}),
            }
            command = [sys.executable, "-m", "motion_meta_cli", "poll", "--interval", "0.5", "--concurrency", "4"]
            proc = hosts.run(
                namespace, command, env=env, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            procs.append(proc)
            instances.append(Instance(proc, users))
        yield TwoInstances(instances[0], instances[1], f"http://127.0.0.1:{port}", cut, a, srv)
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        hosts.close()


def busiest_window(timeline: dict[str, list[float]], window_s: float) -> int:
    """The most calls in any `window_s` seconds, over every user."""
    times = sorted(t for user_times in timeline.values() for t in user_times)
    return max((sum(1 for t in times[i:] if t < start + window_s) for i, start in enumerate(times)), default=0)


def quiet(count: Callable[[], int], seconds: float) -> Callable[[], bool]:
    """A condition: `count()` has not moved for `seconds`."""
    last = [count(), time.monotonic()]

    def still() -> bool:
        now = count()
        if now != last[0]:
            last[:] = [now, time.monotonic()]
        return time.monotonic() - last[1] >= seconds

    return still


def until(condition: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    """Return once `condition()` holds (AssertionError saying `what` after `timeout_s`)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.1)
