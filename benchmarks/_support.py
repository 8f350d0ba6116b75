"""What the benchmarks (and the integration tests' fixtures) share: local ports, child processes, an emulator, a
redis-server or a local Redis Cluster in their own processes, and how poll instances' reports split the work.

Everything stays on 127.0.0.1; every process started here is the caller's to kill. Only the standard library
is imported at the top (redis only inside the functions that talk to Redis), so that `tests/integration/
conftest.py` can import the server helpers from here.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

URL_PATTERN = re.compile(r"http://127\.0\.0\.1:(\d+)")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout_s: float = 30) -> None:
    """Return once something accepts connections on `port`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def kill(proc: subprocess.Popen[Any]) -> None:
    """Kill `proc` if it still runs, and reap it."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def kill_group(proc: subprocess.Popen[Any]) -> None:
    """Kill a process started with `start_new_session=True` and everything it started, and reap it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def tail(text: str, lines: int = 8) -> str:
    """The last `lines` lines of `text`, indented for a report."""
    return "\n".join(f"      {line}" for line in text.strip().splitlines()[-lines:])


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without META_/MOTION_META_ variables, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("META_", "MOTION_META_"))}
    env.update(extra)
    return env


def naive_session(pool_size: int) -> Any:
    """The naive client's session: requests with urllib3's Retry (30 retries on 400/429/5xx, backoff 0.5 s)."""
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util import Retry

    session = requests.Session()
    retry = Retry(
        total=30,
        status_forcelist=(400, 429, 500, 502, 503, 504),
        backoff_factor=0.5,
        allowed_methods=None,
        raise_on_status=False,
    )
    session.mount("http://", HTTPAdapter(pool_maxsize=pool_size, max_retries=retry))
    return session


def start_emulator(work: Path, name: str, *flags: str) -> tuple[subprocess.Popen[bytes], str]:
    """`motion-meta emulator --port 0 FLAGS` in its own process, and its URL once it accepts connections."""
    out_path, err_path = work / f"{name}.out", work / f"{name}.err"
    command = [sys.executable, "-m", "motion_meta_cli", "emulator", "--port", "0", *flags]
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(command, stdout=out, stderr=err, env=clean_env(), cwd=work)
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            match = URL_PATTERN.search(out_path.read_text(errors="replace"))
            if match:
                wait_for_port(int(match.group(1)), timeout_s=10)
                return proc, match.group(0)
            if proc.poll() is not None:
                raise RuntimeError(f"emulator exited {proc.returncode}:\n{tail(err_path.read_text())}")
            time.sleep(0.02)
        raise RuntimeError("emulator printed no URL within 30 s")
    except BaseException:
        kill(proc)
        raise


def emulator_stats(url: str) -> dict[str, Any]:
    """The emulator's `/__stats`."""
    with urllib.request.urlopen(f"{url}/__stats", timeout=10) as response:
        return dict(json.load(response))


def emulator_reset(url: str) -> None:
    """Clear the emulator's counters and limits."""
    request = urllib.request.Request(f"{url}/__reset", method="POST", data=b"")
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


@dataclass
class RedisServer:
    """A redis-server child process that may be stopped and started again on the same port."""

    port: int
    workdir: Path
    password: str | None = None
    process: subprocess.Popen[bytes] | None = None
    extra: tuple[str, ...] = ()
    """More redis-server arguments (cluster mode, a replica's master, Sentinel mode)."""
    config_file: Path | None = None
    """A configuration file, read before the arguments (a Sentinel needs one it may rewrite)."""

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not on PATH; .ci/run installs it")
        args = [binary] + ([str(self.config_file)] if self.config_file else [])
        args += ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--dir", str(self.workdir)]
        if self.password:
            args += ["--requirepass", self.password]
        args += self.extra
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@dataclass
class RedisClusterServers:
    """A local Redis Cluster: three masters (no replicas), each a redis-server child process on a free port."""

    nodes: list[RedisServer]

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}/0"

    def node_of(self, key: str) -> RedisServer:
        """The master that holds `key`'s slot."""
        import redis

        with redis.Redis(port=self.nodes[0].port) as client:
            slot = int(client.execute_command("CLUSTER KEYSLOT", key))
            for start, end, (_host, port, *_rest), *_replicas in client.execute_command("CLUSTER SLOTS"):
                if start <= slot <= end:
                    return next(node for node in self.nodes if node.port == int(port))
        raise RuntimeError(f"no node holds slot {slot}")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def start_redis_cluster(workdir: Path) -> RedisClusterServers:
    """Three cluster-mode redis-servers joined with `redis-cli --cluster create`, waited on until the cluster is ok."""
    import redis

    nodes = []
    try:
        for n in range(3):
            folder = workdir / f"cluster-{n}"
            folder.mkdir(parents=True)
            extra = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
            extra += ("--cluster-node-timeout", "2000")
            extra += ("--cluster-port", str(free_port()))  # the bus port; port + 10000 may be past 65535
            node = RedisServer(port=free_port(), workdir=folder, extra=extra)
            nodes.append(node)
            node.start()
        cluster = RedisClusterServers(nodes)
        addresses = [f"127.0.0.1:{node.port}" for node in nodes]
        subprocess.run(
            ["redis-cli", "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=30,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            states = []
            for node in nodes:
                with redis.Redis(port=node.port) as client:
                    states.append(client.execute_command("CLUSTER INFO").get("cluster_state"))
            if all(state == "ok" for state in states):
                return cluster
            time.sleep(0.05)
        raise RuntimeError("the local Redis Cluster did not reach cluster_state:ok")
    except BaseException:
        for node in nodes:
            node.stop()
        raise


@dataclass(frozen=True)
class SlotCoverage:
    """How the instances sharing one cache split one poll slot, from their `poll --json` cycle reports."""

    slot: int
    fetched_by: tuple[int | None, ...]
    """Customers each instance fetched in this slot; None for an instance that ran no cycle in it."""
    fetched: int
    distinct: int
    duplicates: int
    """Customers fetched by more than one instance in this slot."""
    misses: int | None
    """Customers nobody fetched (a late cycle of the slot before covers this one too); None unless every instance
    ran a cycle in this slot."""
    failed: int

    @property
    def split(self) -> str:
        """`fetched_by` as `1200/1187/-`."""
        return "/".join("-" if n is None else str(n) for n in self.fetched_by)


def slot_coverage(
    reports: Sequence[Sequence[dict[str, Any]]], names: Collection[str], interval_s: float
) -> list[SlotCoverage]:
    """Per slot, in order: who fetched how many, duplicates and misses, over `reports` (per instance, its cycle
    reports as `poll --json` prints them) of instances polling `names` every `interval_s`.

    A customer fetched by a cycle that started late in the slot before is not missed: that fetch covers this slot
    too, so that nobody is fetched twice within one interval (see `motion_meta_cli.poller`).
    """
    from motion_meta_cli.poller import LATE_SHARE

    by_slot: dict[int, dict[int, dict[str, Any]]] = {}
    for instance, instance_reports in enumerate(reports):
        for report in instance_reports:
            by_slot.setdefault(int(report["slot"]), {})[instance] = report

    def late_fetches(slot: int) -> set[str]:
        late = set[str]()
        for report in by_slot.get(slot, {}).values():
            started = datetime.fromisoformat(report["started_at"].replace("Z", "+00:00")).timestamp()
            if started - slot * interval_s > LATE_SHARE * interval_s:
                late.update(report["customers"])
        return late

    wanted = set(names)
    rows = []
    for slot in sorted(by_slot):
        per_instance = by_slot[slot]
        counts: Counter[str] = Counter()
        for report in per_instance.values():
            counts.update(report["customers"])
        covered = len(per_instance) == len(reports)
        rows.append(
            SlotCoverage(
                slot=slot,
                fetched_by=tuple(
                    int(per_instance[i]["fetched"]) if i in per_instance else None for i in range(len(reports))
                ),
                fetched=sum(counts.values()),
                distinct=len(counts),
                duplicates=sum(1 for count in counts.values() if count > 1),
                misses=len(wanted - set(counts) - late_fetches(slot - 1)) if covered else None,
                failed=sum(int(report["failed"]) for report in per_instance.values()),
            )
        )
    return rows
