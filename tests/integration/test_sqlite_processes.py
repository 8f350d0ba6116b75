"""The embedded SQLite cache and store are safe for several processes on one machine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from motion_meta_cli.storage.sqlite_cache import SQLiteCache
from motion_meta_cli.storage.sqlite_store import SQLiteCustomerStore

pytestmark = pytest.mark.integration

WRITER = """
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from motion_meta_cli.models import FetchResult, MetaUser
from motion_meta_cli.storage.sqlite_cache import SQLiteCache
from motion_meta_cli.storage.sqlite_store import SQLiteCustomerStore

home, worker = Path(sys.argv[1]), int(sys.argv[2])
store, cache = SQLiteCustomerStore(home / "store.db"), SQLiteCache(home / "cache.db")
base = datetime(2026, 1, 1, tzinfo=UTC)
for i in range(100):
    customer = f"c{i % 10}"
    at = base + timedelta(milliseconds=worker * 1000 + i)
    store.save_result(FetchResult(customer=customer, fetched_at=at, user=MetaUser(id=str(i), name=f"w{worker}")))
    cache.set(f"k{worker}:{i}", "v")
    with cache.lock("shared-counter", ttl_s=30):
        current = int(cache.get("counter") or 0)
        cache.set("counter", str(current + 1))
"""


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    workers = 4
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(n)], stderr=subprocess.PIPE, text=True)
        for n in range(workers)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    store = SQLiteCustomerStore(tmp_path / "store.db")
    cache = SQLiteCache(tmp_path / "cache.db")
    assert sum(len(store.history(f"c{i}", limit=1000)) for i in range(10)) == workers * 100
    assert all(cache.get(f"k{w}:{i}") == "v" for w in range(workers) for i in range(100))
    assert cache.get("counter") == str(workers * 100), "the lock made read-modify-write atomic across processes"
    latest = store.latest("c9")
    assert latest is not None and latest.user["name"] == f"w{workers - 1}", "the newest fetch wins"


def test_a_lock_held_by_a_killed_process_lapses_at_its_ttl(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom pathlib import Path\nfrom motion_meta_cli.storage.sqlite_cache import SQLiteCache\n"
            "lock = SQLiteCache(Path(sys.argv[1]) / 'cache.db').lock('lease', ttl_s=1.0)\n"
            "assert lock.acquire()\nprint('held', flush=True)\ntime.sleep(60)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait()
    holder.stdout.close()
    waiter = SQLiteCache(tmp_path / "cache.db").lock("lease", ttl_s=1.0)
    assert waiter.acquire(timeout_s=5), "the dead holder's lease expired"
