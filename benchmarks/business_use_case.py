"""Customers of one business into its business-use-case limit: how many requests arrive while blocked.

    python benchmarks/business_use_case.py [--customers 20] [--limit 30] [--rounds 4] [--instances 3]

One emulator process (`--accept-any-token --buc-limit LIMIT --window-s 60`: every user belongs to the
emulator's one business, whose ads_management use case allows LIMIT calls a minute, and whose block lasts
at least a minute, with `estimated_time_to_regain_access` in the header) per scenario:
  a. one `motion-meta poll --interval 1 --cycles ROUNDS` over the customers (pacing on; `--no-pacing`: off,
     so that it meets the block instead of pacing below it);
  b. INSTANCES such polls at once, sharing one redis-server (on a free port) and one home;
  c. a naive client: requests + urllib3's Retry (30 retries on 400/429/5xx, backoff 0.5 s), ROUNDS
     rounds over the customers, 8 threads, stopped after --naive-timeout seconds.
motion-meta runs with GIVE_UP_AFTER_S=2, so a customer held by the block fails its cycle at once instead
of waiting out Meta's minute. The figure that matters is `blocked_arrivals_by_scope.business_use_case`
at the emulator: requests that arrived while the business's use case was already blocked (the one that
trips the block is not among them). Target for motion-meta: at most one per instance per block.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from _support import clean_env, emulator_stats, free_port, kill, naive_session, start_emulator, wait_for_port

from motion_meta_cli.app import AppHandler
from motion_meta_cli.config import Settings


def _token(n: int) -> str:
    return f"EAAbusinesscustomer{n:04d}xxxxxxxxxx"


def _seed(home: Path, customers: int) -> None:
    with AppHandler(Settings(motion_meta_home=home, _env_file=None)) as app:
        for n in range(customers):
            app.store.add_customer(f"b{n:04d}")
            app.secrets.put_secret(f"b{n:04d}", _token(n))


def _polls(url: str, home: Path, work: Path, args: argparse.Namespace, instances: int, redis_url: str | None) -> float:
    extra = {
        "META_GRAPH_URL": url,
        "MOTION_META_HOME": str(home),
        "META_RATE_WINDOW_S": "60",
        "META_PLATFORM__THROTTLE__GIVE_UP_AFTER_S": "2",
        "META_PLATFORM__THROTTLE__PACING": "false" if args.no_pacing else "true",
    }
    if redis_url:
        extra["MOTION_META_CACHE_URL"] = redis_url
    command = [sys.executable, "-m", "motion_meta_cli", "poll", "--interval", "1", "--cycles", str(args.rounds)]
    start = time.monotonic()
    procs = [
        subprocess.Popen(
            [*command, "--json"], cwd=work, env=clean_env(**extra), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for _ in range(instances)
    ]
    for proc in procs:
        proc.wait(timeout=300)
    return time.monotonic() - start


def _naive(url: str, args: argparse.Namespace) -> float:
    session = naive_session(8)
    deadline = time.monotonic() + args.naive_timeout
    stop = threading.Event()

    def one(n: int) -> None:
        if not stop.is_set() and time.monotonic() < deadline:
            headers = {"Authorization": f"Bearer {_token(n % args.customers)}"}
            with contextlib.suppress(requests.RequestException):
                session.get(f"{url}/v25.0/me", params={"fields": "id,name"}, headers=headers, timeout=30)

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(one, range(args.customers * args.rounds)))
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=20)
    parser.add_argument("--limit", type=int, default=30, help="business-use-case calls per minute")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--naive-timeout", type=float, default=60.0)
    parser.add_argument("--no-pacing", action="store_true", help="motion-meta reacts only, so it meets the block")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="motion-meta-buc-"))
    flags = ("--accept-any-token", "--buc-limit", str(args.limit), "--window-s", "60")
    rows = []
    try:
        for key, label in (("a", "ours, 1 instance"), ("b", f"ours, {args.instances} on Redis"), ("c", "naive")):
            emulator, url = start_emulator(work, f"emulator-{key}", *flags)
            redis_proc = None
            try:
                home = work / f"home-{key}"
                _seed(home, args.customers)
                if key == "a":
                    seconds = _polls(url, home, work, args, 1, None)
                elif key == "b":
                    port = free_port()
                    redis_proc = subprocess.Popen(
                        [
                            shutil.which("redis-server") or "redis-server",
                            "--port",
                            str(port),
                            "--save",
                            "",
                            "--appendonly",
                            "no",
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                    wait_for_port(port)
                    seconds = _polls(url, home, work, args, args.instances, f"redis://127.0.0.1:{port}/0")
                else:
                    seconds = _naive(url, args)
                stats = emulator_stats(url)
            finally:
                kill(emulator)
                if redis_proc is not None:
                    kill(redis_proc)
            blocked = stats["blocked_arrivals_by_scope"].get("business_use_case", 0)
            rows.append((key, label, seconds, stats["requests"], stats["succeeded"], stats["throttled"], blocked))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    pacing = "off" if args.no_pacing else "on"
    print(
        f"{args.customers} customers of one business, {args.rounds} rounds, business-use-case limit {args.limit}/min,"
    )
    print(f"motion-meta's pacing {pacing}")
    print(f"{'scenario':<26}{'duration':>10}{'requests':>10}{'200s':>7}{'throttled':>11}{'blocked arrivals':>18}")
    for key, label, seconds, sent, ok, throttled, blocked in rows:
        print(f"{key} {label:<24}{seconds:>8.1f} s{sent:>10}{ok:>7}{throttled:>11}{blocked:>18}")
    naive_blocked = rows[-1][6]
    for key, _, _, _, _, _, blocked in rows[:-1]:
        instances = 1 if key == "a" else args.instances
        verdict = "ok" if blocked <= instances else "MISSED"
        print(
            f"target ({key}) blocked arrivals ≤ {instances} (one per instance per block): {blocked}  {verdict}"
            f"   (naive: {naive_blocked})"
        )


if __name__ == "__main__":
    main()
