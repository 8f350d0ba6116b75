"""What metrics cost a poll: one cycle with `--metrics-port` scraped twice a second against one without,
and the time and size of a `/metrics` scrape while a large cycle runs.

    python benchmarks/metrics.py [--customers 1000] [--big 10000] [--runs 5] [--concurrency 64]
                                 [--latency-s 0.1] [--latency-jitter-s 0.05]

Homes are seeded and warmed as in `benchmarks/poll.py` (the app's budget known), one emulator per run with
Meta-like latency. Each run times `poll --once --json` (its own `duration_s`) with metrics served on a free
port and scraped every 0.5 s, and without; which goes first alternates. Counters are recorded either way
(a dictionary lookup and an add per event): what differs is the server and its scrapes. Target: the median
ratio off / on of cycle times at least 0.97 (metrics cost at most 3 %). Then one cycle over --big customers
with metrics on: the scrapes' times (median, max) and the size of the last.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from _support import clean_env, emulator_reset, free_port, kill, start_emulator
from poll import Seeded, _fresh_home, _seed, _warm

TARGET = 0.97


def _cycle(
    home: Path, url: str, work: Path, args: argparse.Namespace, port: int | None
) -> tuple[float, list[float], int]:
    """One `poll --once`: its cycle seconds, and (with `port`) each scrape's seconds and the last one's bytes."""
    command = [
        sys.executable,
        "-m",
        "motion_meta_cli",
        "poll",
        "--once",
        "--json",
        "--concurrency",
        str(args.concurrency),
    ]
    if port is not None:
        command += ["--metrics-port", str(port)]
    env = clean_env(MOTION_META_HOME=str(home), META_GRAPH_URL=url)
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=work)
    scrapes: list[float] = []
    size = [0]
    done = threading.Event()

    def scrape() -> None:
        while not done.wait(0.5):
            start = time.perf_counter()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
                    size[0] = len(answer.read())
            except OSError:
                continue  # not serving yet, or already gone
            scrapes.append(time.perf_counter() - start)

    scraper = threading.Thread(target=scrape, daemon=True) if port is not None else None
    if scraper is not None:
        scraper.start()
    try:
        out, _ = proc.communicate(timeout=600)
    finally:
        done.set()
        kill(proc)
    report = json.loads(out.decode().splitlines()[0])
    return float(report["duration_s"]), scrapes, size[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--big", type=int, default=10000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency-s", type=float, default=0.1)
    parser.add_argument("--latency-jitter-s", type=float, default=0.05)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="motion-meta-metrics-"))
    latency = ["--latency-s", str(args.latency_s), "--latency-jitter-s", str(args.latency_jitter_s)]
    try:
        template: Seeded = _warm(_seed(work / "template", args.customers), work)
        pairs: list[tuple[float, float]] = []
        emulator, url = start_emulator(work, "emulator", "--accept-any-token", *latency)
        try:
            for index in range(args.runs):
                times: dict[str, float] = {}
                for which in ["on", "off"] if index % 2 == 0 else ["off", "on"]:
                    emulator_reset(url)
                    home = _fresh_home(template, work, f"{which}-{index}")
                    port = free_port() if which == "on" else None
                    times[which] = _cycle(home, url, work, args, port)[0]
                pairs.append((times["on"], times["off"]))
        finally:
            kill(emulator)
        print(
            f"1. one cycle over {args.customers} customers, concurrency {args.concurrency}, "
            f"latency {args.latency_s:g} s"
        )
        print(f"   {'run':<5}{'metrics on':>12}{'metrics off':>13}{'off/on':>9}")
        for index, (on, off) in enumerate(pairs):
            print(f"   {index + 1:<5}{on:>10.2f} s{off:>11.2f} s{off / on:>9.2f}")
        ratio = statistics.median(off / on for on, off in pairs)
        print(f"   median off/on {ratio:.3f}  target ≥ {TARGET}: {'ok' if ratio >= TARGET else 'MISSED'}")

        big = _warm(_seed(work / "template-big", args.big), work)
        emulator, url = start_emulator(work, "emulator-big", "--accept-any-token")
        try:
            cycle_s, scrapes, size = _cycle(_fresh_home(big, work, "big"), url, work, args, free_port())
        finally:
            kill(emulator)
        print(f"2. /metrics while one cycle over {args.big} customers runs ({cycle_s:.1f} s)")
        if scrapes:
            print(
                f"   {len(scrapes)} scrapes: median {statistics.median(scrapes) * 1000:.1f} ms, "
                f"max {max(scrapes) * 1000:.1f} ms; the last {size / 1024:.1f} KiB"
            )
        else:
            print("   no scrape answered")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
