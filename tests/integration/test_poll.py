"""`motion-meta poll` as it runs in production: several instances, one Redis, real signals, an emulator."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests

from motion_meta_cli.app import AppHandler
from motion_meta_cli.config import Settings
from motion_meta_cli.emulator import derived_user
from tests.integration.conftest import RedisServer
from tests.integration.helpers import emulator_process, invoke_cli

pytestmark = pytest.mark.integration


def _token(n: int) -> str:
    return f"EAApollcustomer{n:04d}xxxxxxxxxx"


@pytest.fixture
def emulator_url() -> Iterator[str]:
    with emulator_process("--accept-any-token", "--latency-s", "0.02") as url:
        yield url


def _seed(home: Path, count: int) -> list[str]:
    with AppHandler(Settings(motion_meta_home=home)) as app:
        names = []
        for n in range(count):
            name = f"c{n:03d}"
            app.store.add_customer(name)
            app.secrets.put_secret(name, _token(n))
            names.append(name)
    return names


def _env(url: str, home: Path, redis_url: str | None = None) -> dict[str, str]:
    env = {"META_GRAPH_URL": url, "MOTION_META_HOME": str(home), "MOTION_META_LOG_LEVEL": "WARNING"}
    if redis_url:
        env["MOTION_META_CACHE_URL"] = redis_url
    return env


def _start(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "motion_meta_cli", "poll", *args, "--json"],
        cwd=cwd,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _reports(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def _per_user(url: str) -> dict[str, int]:
    return dict(requests.get(f"{url}/__stats", timeout=5).json()["per_user"])


def _timeline(url: str) -> tuple[float, dict[str, list[float]]]:
    body = requests.get(f"{url}/__timeline", timeout=5).json()
    return float(body["now_s"]), {user: list(times) for user, times in body["per_user"].items()}


def _sleep_until_into_slot(interval_s: float, offset_s: float) -> None:
    """Start a process at a chosen point of a wall-clock slot (the schedule itself, not a wait for an event)."""
    now = time.time()
    target = (now // interval_s + 1) * interval_s + offset_s
    time.sleep(target - now)


def test_three_instances_one_started_late_fetch_no_customer_twice_within_an_interval(
    tmp_path: Path, emulator_url: str, redis_server: RedisServer
) -> None:
    home = tmp_path / "shared"
    names = _seed(home, 30)
    env = _env(emulator_url, home, redis_server.url)
    interval = 2.0
    _sleep_until_into_slot(interval, 1.0)  # half way into a slot, alone: it fetches everyone late in the slot
    late = _start(["--interval", "2", "--cycles", "3", "--concurrency", "4"], env, tmp_path)
    _sleep_until_into_slot(interval, 0.0)  # the others join at the next slot, where nobody may fetch them again
    punctual = [_start(["--interval", "2", "--cycles", "3", "--concurrency", "4"], env, tmp_path) for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in [*punctual, late]]
    assert all(p.returncode == 0 for p in [*punctual, late]), [e[-800:] for _, e in outputs]
    _, timeline = _timeline(emulator_url)
    assert sorted(timeline) == sorted(derived_user(_token(n)).id for n in range(30)), "every customer fetched"
    gaps = [later - earlier for times in timeline.values() for earlier, later in itertools.pairwise(times)]
    # Instances start their cycles up to half a second apart (imports); a second fetch within the interval
    # would come 0.03-0.4 s after the first.
    assert min(gaps) > interval / 2, sorted(gaps)[:5]
    fetched = Counter(name for out, _ in outputs for r in _reports(out) for name in r["customers"])  # type: ignore[attr-defined]
    assert set(fetched) == set(names)


def test_a_poll_instance_killed_with_requests_in_flight_costs_at_most_an_interval_and_an_attempt(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    home = tmp_path / "shared"
    _seed(home, 20)
    interval, attempt = 2.0, 0.5 + 1.5 + 1.0  # connect + read timeout + the lease margin
    with emulator_process("--accept-any-token", "--latency-s", "0.5") as url:
        env = {
            **_env(url, home, redis_server.url),
            "META_PLATFORM__RETRY__CONNECT_TIMEOUT_S": "0.5",
            "META_PLATFORM__RETRY__READ_TIMEOUT_S": "1.5",
        }
        # Alone, the survivor's cycle (20 customers, 8 at a time, 0.5 s each) fits its interval.
        survivor = _start(["--interval", "2", "--concurrency", "8"], env, tmp_path)
        victim = _start(["--interval", "2", "--concurrency", "8"], env, tmp_path)
        client = redis.Redis.from_url(redis_server.url, decode_responses=True)
        try:
            # Past their first (late) cycles, which may lease the next slot too, both run on the slots' grid.
            first_reports = [json.loads(p.stdout.readline()) for p in (survivor, victim)]  # type: ignore[union-attr]
            deadline = time.monotonic() + 30
            held: list[str] = []
            while not held and time.monotonic() < deadline:  # the victim holds slots: its requests are in flight
                for key in client.scan_iter("motion-meta:{mod}:slots:*"):
                    record = json.loads(client.get(key) or "{}")
                    held += [h for h in record.get("holders", {}) if f":{victim.pid}:" in h]
            assert held, "the victim never had a request in flight"
            victim.kill()
            victim.communicate()
            killed_at, _ = _timeline(url)
            deadline = time.monotonic() + interval + attempt + 5
            while time.monotonic() < deadline:
                now, timeline = _timeline(url)
                after = {
                    user: [t for t in times if killed_at + 0.7 < t <= killed_at + interval + attempt + 0.5]
                    for user, times in timeline.items()
                }
                if (len(timeline) == 20 and all(after.values())) or now > killed_at + interval + attempt + 0.5:
                    break
                time.sleep(0.2)
        finally:
            client.close()
            survivor.send_signal(signal.SIGTERM)
            out, err = survivor.communicate(timeout=60)
    assert survivor.returncode == 0, err[-800:]
    assert len(timeline) == 20 and all(after.values()), {u: t for u, t in after.items() if not t}
    failures = [r["failures"] for r in [first_reports[0], *_reports(out)] if r["failures"]]
    assert failures == [], "no customer failed on a slot the victim held"


def test_sigterm_finishes_requests_in_flight_and_exits_0(tmp_path: Path, emulator_url: str) -> None:
    home = tmp_path / "h"
    _seed(home, 200)
    proc = _start(["--interval", "30", "--concurrency", "2"], _env(emulator_url, home), tmp_path)
    while sum(_per_user(emulator_url).values()) < 10:  # well into the cycle
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-800:]
    assert "stopping" in err
    (report,) = _reports(out)
    fetched = report["fetched"]
    assert isinstance(fetched, int) and 0 < fetched < 200
    assert report["failed"] == 0, "nothing was cut off"
    assert fetched + report["not_started"] == 200  # type: ignore[operator]
    assert sum(_per_user(emulator_url).values()) == fetched, "every request that left got its answer"


def test_polling_survives_redis_going_away_and_coming_back(
    tmp_path: Path, emulator_url: str, redis_server: RedisServer
) -> None:
    home = tmp_path / "h"
    _seed(home, 10)
    proc = _start(
        ["--interval", "0.8", "--cycles", "6", "--concurrency", "4"],
        _env(emulator_url, home, redis_server.url),
        tmp_path,
    )
    assert proc.stdout is not None
    reports = [json.loads(proc.stdout.readline())]  # the first cycle, with Redis
    redis_server.stop()
    reports.append(json.loads(proc.stdout.readline()))  # a cycle without it
    redis_server.start()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-800:]
    reports += _reports(out)
    assert len(reports) == 6
    assert sum(int(r["fetched"]) for r in reports) >= 50, reports  # type: ignore[call-overload]
    assert "Traceback" not in err
    with AppHandler(Settings(motion_meta_home=home)) as app:
        stored = sum(len(app.store.history(f"c{n:03d}", limit=100)) for n in range(10))
    assert stored == sum(int(r["fetched"]) + int(r["failed"]) for r in reports), "nothing fetched was lost"  # type: ignore[call-overload]


def test_a_rotated_token_is_used_from_the_next_cycle(tmp_path: Path, emulator_url: str) -> None:
    home = tmp_path / "h"
    _seed(home, 1)
    proc = _start(["--interval", "1", "--cycles", "6", "--concurrency", "1"], _env(emulator_url, home), tmp_path)
    assert proc.stdout is not None and json.loads(proc.stdout.readline())["fetched"] == 1  # the old token served
    new = "EAArotatedtoken0000000000000"
    env = _env(emulator_url, home)
    assert invoke_cli("credentials", "set", "--customer", "c000", env=env, input=new).code == 0
    assert invoke_cli("credentials", "expire", "--customer", "c000", env=env).code == 0
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-800:]
    per_user = _per_user(emulator_url)
    assert per_user.get(derived_user(new).id, 0) >= 2, per_user
    assert per_user.get(derived_user(_token(0)).id, 0) >= 1


def test_once_exit_codes_and_the_overlap_guard(tmp_path: Path, emulator_url: str) -> None:
    home = tmp_path / "h"
    _seed(home, 3)
    env = _env(emulator_url, home)
    hourly = ["poll", "--once", "--interval", "3600", "--json"]  # every run below falls in the same slot
    assert invoke_cli(*hourly, env=env).code == 0
    invoke_cli("customers", "add", "no_token", env=env)
    some_failed = invoke_cli(*hourly, env=env)
    assert some_failed.code == 9
    (report,) = _reports(some_failed.stdout)
    assert report["failures"] == {"no_token": "missing_credentials"} and report["taken_elsewhere"] == 3
    fixed = invoke_cli("credentials", "set", "--customer", "no_token", env=env, input="EAAfixedtoken00000000")
    assert fixed.code == 0, fixed.stderr
    retried = invoke_cli(*hourly, env=env)
    assert retried.code == 0, retried.stderr
    (report,) = _reports(retried.stdout)
    assert report["customers"] == ["no_token"], "the failed run gave its lease back: no 'taken elsewhere'"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom pathlib import Path\nfrom motion_meta_cli.storage.sqlite_cache import SQLiteCache\n"
            "assert SQLiteCache(Path(sys.argv[1]) / 'cache.db').lock('poll:once', ttl_s=60).acquire()\n"
            "print('held', flush=True)\ntime.sleep(60)",
            str(home),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        overlap = invoke_cli("poll", "--once", env=env)
        assert overlap.code == 10
        assert "another `poll --once` run is still going" in overlap.stderr
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


def test_rejected_customers_are_skipped_until_their_credentials_change(tmp_path: Path) -> None:
    from motion_meta_cli.emulator import EmulatorConfig, GraphEmulator

    home = tmp_path / "h"
    _seed(home, 1)
    with GraphEmulator(EmulatorConfig()) as strict:  # knows none of the seeded tokens: 190
        env = _env(strict.url, home)
        first = invoke_cli("poll", "--interval", "0.5", "--cycles", "3", "--json", env=env)
        reports = _reports(first.stdout)
        assert [r["failed"] for r in reports] == [1, 0, 0]
        assert [r["skipped"] for r in reports] == [0, 1, 1]
        assert reports[1]["skipped_customers"] == ["c000"]
        assert first.stderr.count("skipping c000 until its credentials change") == 1
        assert strict.stats()["requests"] == 1


def test_a_hung_redis_does_not_stall_polling(tmp_path: Path, emulator_url: str, redis_server: RedisServer) -> None:
    home = tmp_path / "h"
    _seed(home, 20)
    proc = _start(["--interval", "2", "--concurrency", "4"], _env(emulator_url, home, redis_server.url), tmp_path)
    assert proc.stdout is not None and redis_server.process is not None
    for _ in range(3):  # past a first, late cycle (whose next slot may be empty), with Redis answering
        steady = json.loads(proc.stdout.readline())
    reports = [steady]
    # Accepts connections, never answers; for six intervals: past the leases' three, and several timeouts
    # (MOTION_META_REDIS_TIMEOUT_S 2 s) and breaker periods.
    redis_server.process.send_signal(signal.SIGSTOP)
    stopped, hung_s = time.time(), 6 * 2.0
    try:
        while time.time() < stopped + hung_s:
            reports.append(json.loads(proc.stdout.readline()))
    finally:
        redis_server.process.send_signal(signal.SIGCONT)
    reports.append(json.loads(proc.stdout.readline()))
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-800:]
    reports += _reports(out)
    slots = [int(r["slot"]) for r in reports]  # type: ignore[call-overload]
    assert slots == list(range(slots[0], slots[0] + len(slots))), "every slot had its cycle"
    assert len(slots) >= hung_s / 2.0, "a cycle for each interval Redis hung, at least"
    assert all(r["fetched"] == 20 for r in reports), [(r["slot"], r["fetched"], r["duration_s"]) for r in reports]
    assert "Traceback" not in err
