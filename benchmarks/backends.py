"""Backends side by side: the cost of a credentials lookup, and fetch+store throughput.

    python benchmarks/backends.py [--lookups 2000] [--customers 200] [--concurrency 8]

Starts its own redis-server (free port), a moto server (DynamoDB and Secrets Manager over HTTP) and an
unlimited Graph API emulator, then measures
  1. `CredentialsManager.token()` with the marker unchanged: cache round trips and secrets-store reads
     per lookup, and time per lookup, on the SQLite cache and on Redis (secrets in Secrets Manager);
  2. one `run_once` over N customers: SQLite cache + SQLite store + local secrets, against
     Redis + DynamoDB + Secrets Manager (moto): customers per second and the ratio.
moto runs in its own process on the same two cores; its figures show our overhead, not AWS latency.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _support import free_port, wait_for_port

from motion_meta_cli.app import AppHandler
from motion_meta_cli.config import Settings
from motion_meta_cli.credentials import CredentialsManager
from motion_meta_cli.emulator import EmulatorConfig, GraphEmulator, default_directory
from motion_meta_cli.storage.aws import aws_client
from motion_meta_cli.storage.aws_secrets import AwsSecretsStore
from motion_meta_cli.storage.base import Cache
from motion_meta_cli.storage.local_secrets import LocalSecretsStore
from motion_meta_cli.storage.redis_cache import RedisCache
from motion_meta_cli.storage.sqlite_cache import SQLiteCache


class CountingCache:
    """Counts the cache calls a lookup makes."""

    def __init__(self, inner: Cache) -> None:
        self.inner = inner
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if callable(attr):

            def counted(*args: Any, **kwargs: Any) -> Any:
                self.calls += 1
                return attr(*args, **kwargs)

            return counted
        return attr


def _lookups(label: str, cache: Cache, secrets: Any, count_reads: Any, lookups: int) -> dict[str, Any]:
    counting = CountingCache(cache)
    manager = CredentialsManager(secrets, counting)  # type: ignore[arg-type]
    manager.token("bench")  # first read fills memory and the marker
    counting.calls, reads_before = 0, count_reads()
    times = []
    for _ in range(lookups):
        start = time.perf_counter()
        manager.token("bench")
        times.append(time.perf_counter() - start)
    return {
        "label": label,
        "us": statistics.median(times) * 1e6,
        "p95_us": statistics.quantiles(times, n=20)[18] * 1e6,
        "cache_calls": counting.calls / lookups,
        "secret_reads": (count_reads() - reads_before) / lookups,
    }


def _throughput(settings: Settings, customers: int) -> float:
    with AppHandler(settings) as app:
        app.store.initialize()
        names = [f"bench{n:05d}" for n in range(customers)]
        for name in names:
            app.store.add_customer(name)
            app.secrets.put_secret(name, f"EAAbench{name}-token-000000")
        app.handle_request(names)  # warm: markers, connections
        start = time.perf_counter()
        results = app.handle_request(names)
        elapsed = time.perf_counter() - start
    assert all(r.ok for r in results), [r.error for r in results if r.error][:3]
    return customers / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lookups", type=int, default=2000)
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="motion-meta-bench-"))
    redis_port, moto_port = free_port(), free_port()
    redis_proc = subprocess.Popen(
        ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    # moto in its own process, as AWS would be: in-process it would share the GIL with the client.
    moto = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.environ.update(
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{moto_port}",
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
    )
    wait_for_port(moto_port)
    wait_for_port(redis_port)
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    try:
        local = LocalSecretsStore(work / "secrets.json")
        local.put_secret("bench", "EAAbench-local-token-000000")
        sm_client = aws_client("secretsmanager")
        sm_reads = {"n": 0}
        sm_client.meta.events.register(
            "before-call.secretsmanager.GetSecretValue", lambda **_: sm_reads.__setitem__("n", sm_reads["n"] + 1)
        )
        aws_secrets = AwsSecretsStore("bench/", client=sm_client)
        aws_secrets.put_secret("bench", "EAAbench-aws-token-000000")
        rows = [
            _lookups("SQLite cache + local secrets", SQLiteCache(work / "cache.db"), local, lambda: 0, args.lookups),
            _lookups(
                "Redis cache + Secrets Manager",
                RedisCache.from_url(redis_url, prefix="bench:"),
                aws_secrets,
                lambda: sm_reads["n"],
                args.lookups,
            ),
        ]
        print(f"1. CredentialsManager.token() with the marker unchanged, {args.lookups} lookups")
        print(f"   {'backend':<32}{'median':>10}{'p95':>10}{'cache calls':>13}{'secret reads':>14}")
        for row in rows:
            print(
                f"   {row['label']:<32}{row['us']:>8.0f}µs{row['p95_us']:>8.0f}µs"
                f"{row['cache_calls']:>13.2f}{row['secret_reads']:>14.2f}"
            )
        print(f"   Redis / SQLite median: {rows[1]['us'] / rows[0]['us']:.2f}×")

        with GraphEmulator(EmulatorConfig(users=default_directory(accept_any_token=True))) as emulator:
            common: dict[str, Any] = {"meta_graph_url": emulator.url, "motion_meta_concurrency": args.concurrency}
            embedded = Settings(motion_meta_home=work / "embedded", **common)
            production = Settings(
                motion_meta_home=work / "production",
                motion_meta_cache_url=redis_url,
                motion_meta_store_url="dynamodb://motion-meta-bench",
                motion_meta_secrets_url="aws-secretsmanager://bench/",
                **common,
            )
            sqlite_rate = _throughput(embedded, args.customers)
            aws_rate = _throughput(production, args.customers)
        print(f"2. fetch + store, one run_once over {args.customers} customers, concurrency {args.concurrency}")
        print(f"   SQLite + local secrets:                  {sqlite_rate:8.0f} customers/s")
        print(f"   Redis + DynamoDB + Secrets Manager (moto): {aws_rate:6.0f} customers/s")
        print(f"   ratio production / embedded: {aws_rate / sqlite_rate:.2f}")
    finally:
        moto.kill()
        moto.wait()
        redis_proc.kill()
        redis_proc.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
