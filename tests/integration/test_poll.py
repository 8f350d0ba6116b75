"""`motion-meta poll` as it runs in production: several instances, one Redis, real signals, an emulator."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from motion_meta_cli.app import AppHandler
from motion_meta_cli.config import Settings
from motion_meta_cli.emulator import derived_user
from tests.integration.conftest import RedisServer
from tests.integration.helpers import emulator_process, run_cli

pytestmark = pytest.mark.integration


def _token(n: int) -> str:
    return f"EAApollcustomer{n:04d}xxxxxxxxxx"


@pytest.fixture
def emulator_url() -> Iterator[str]:
    with emulator_process("--accept-any-token", "--latency-s", "0.02") as url:
        yield url


def _seed(home: Path, count: int) -> list[str]:
    with AppHandler(Settings(motion_meta_home=home)) as app:
        app.store.remove_customer("motion_test_user")
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


def test_three_instances_fetch_each_customer_once_per_cycle(
    tmp_path: Path, emulator_url: str, redis_server: RedisServer
) -> None:
    home = tmp_path / "shared"
    names = _seed(home, 60)
    env = _env(emulator_url, home, redis_server.url)
    procs = [_start(["--interval", "1.5", "--cycles", "3", "--concurrency", "8"], env, tmp_path) for _ in range(3)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e[-800:] for _, e in outputs]
    by_slot: dict[int, Counter[str]] = defaultdict(Counter)
    for out, _ in outputs:
        for report in _reports(out):
            by_slot[int(report["slot"])].update(report["customers"])  # type: ignore[arg-type]
    for slot, fetched in by_slot.items():
        assert max(fetched.values()) == 1, f"slot {slot}: a customer was fetched twice"
    full = [slot for slot, fetched in by_slot.items() if len(fetched) == 60]
    assert len(full) >= 3, {slot: len(f) for slot, f in by_slot.items()}
    per_user = _per_user(emulator_url)
    assert sorted(per_user) == sorted(derived_user(_token(n)).id for n in range(60))
    assert sum(per_user.values()) == sum(sum(f.values()) for f in by_slot.values()), "the emulator agrees"
    assert set(names) == set().union(*by_slot.values())


def test_a_killed_instance_loses_no_customer_for_more_than_one_interval(
    tmp_path: Path, emulator_url: str, redis_server: RedisServer
) -> None:
    home = tmp_path / "shared"
    _seed(home, 30)
    env = _env(emulator_url, home, redis_server.url)
    survivor = _start(["--interval", "1", "--cycles", "5", "--concurrency", "4"], env, tmp_path)
    victim = _start(["--interval", "1", "--concurrency", "4"], env, tmp_path)
    time.sleep(2.2)
    victim.kill()
    victim.communicate()
    out, err = survivor.communicate(timeout=120)
    assert survivor.returncode == 0, err[-800:]
    reports = _reports(out)
    # Within one interval of the kill, the survivor fetches everyone itself.
    assert reports[-1]["fetched"] == 30
    assert reports[-2]["fetched"] == 30


def test_sigterm_finishes_requests_in_flight_and_exits_0(tmp_path: Path, emulator_url: str) -> None:
    home = tmp_path / "h"
    _seed(home, 200)
    proc = _start(["--interval", "30", "--concurrency", "2"], _env(emulator_url, home), tmp_path)
    time.sleep(1.5)
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
    time.sleep(1.0)
    redis_server.stop()
    time.sleep(1.6)
    redis_server.start()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-800:]
    reports = _reports(out)
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
    time.sleep(1.3)
    new = "EAArotatedtoken0000000000000"
    env = _env(emulator_url, home)
    assert run_cli("credentials", "set", "--customer", "c000", cwd=tmp_path, env=env, input=new).code == 0
    assert run_cli("credentials", "expire", "--customer", "c000", cwd=tmp_path, env=env).code == 0
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-800:]
    per_user = _per_user(emulator_url)
    assert per_user.get(derived_user(new).id, 0) >= 2, per_user
    assert per_user.get(derived_user(_token(0)).id, 0) >= 1


def test_once_exit_codes_and_the_overlap_guard(tmp_path: Path, emulator_url: str) -> None:
    home = tmp_path / "h"
    _seed(home, 3)
    env = _env(emulator_url, home)
    assert run_cli("poll", "--once", cwd=tmp_path, env=env).code == 0
    run_cli("customers", "add", "no_token", cwd=tmp_path, env=env)
    some_failed = run_cli("poll", "--once", "--interval", "1", cwd=tmp_path, env=env)
    assert some_failed.code == 9
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
        overlap = run_cli("poll", "--once", cwd=tmp_path, env=env)
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
        first = run_cli("poll", "--interval", "0.5", "--cycles", "3", "--json", cwd=tmp_path, env=env)
        reports = _reports(first.stdout)
        assert [r["failed"] for r in reports] == [1, 0, 0]
        assert [r["skipped"] for r in reports] == [0, 1, 1]
        assert first.stderr.count("skipping c000 until its credentials change") == 1
        assert strict.stats()["requests"] == 1
