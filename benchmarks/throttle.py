"""Throttling under load: motion-meta `stress` against a rate-limited emulator, and a naive client.

    python benchmarks/throttle.py [--requests 500] [--concurrency 200] [--limit 100] [--window 2]
                                  [--scenarios a,b,c,d] [--naive-timeout 180]

Each scenario gets a fresh emulator process (`motion-meta emulator --app-limit LIMIT --window-s WINDOW`,
killed afterwards) and a fresh MOTION_META_HOME; motion-meta runs with META_RATE_WINDOW_S=WINDOW and no
other META_/MOTION_META_ variable from the caller. Everything listens on 127.0.0.1.
  a. one `stress --pacing` process: pacing from the usage headers, as fetch and poll do;
  b. one `stress` process without pacing: it learns the limit from the throttles it meets;
  c. four `stress` processes started together, each with a quarter of the requests and workers,
     sharing one redis-server (started here on a free port) through MOTION_META_CACHE_URL;
  d. a naive client: requests + urllib3's Retry (30 retries on 400/429/5xx, backoff 0.5 s) from a
     thread pool as wide as --concurrency; a request fails if its final status is not 200; it is
     stopped after --naive-timeout seconds and whatever is unfinished counts as failed.

Duration is wall time from starting the client process(es) to the last one exiting, interpreter start
included (the naive client runs in a child process too, so it can be killed). Throttled answers,
arrivals while blocked and tokens in URLs are what the emulator counted (`GET /__stats`).

The ideal duration is (ceil(N / LIMIT) - 1) × WINDOW: 8.0 s for 500 requests at 100 per 2 s. The first
LIMIT calls can all go at once; each later batch of LIMIT has to wait until the rolling window has let
the previous batch age out, one WINDOW later; the last batch's own latency is taken as nothing.
Targets: every request succeeds; without pacing (b, c) at most one throttled answer per worker, i.e.
no more than the requests in flight when the first throttle came (≤ concurrency); with pacing (a) at
most 1 % of requests throttled; a, b and c within 1.25 × ideal.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from _support import clean_env, emulator_stats, free_port, kill, naive_session, start_emulator, tail, wait_for_port

from motion_meta_cli.emulator import DEMO_TOKEN

CLIENT_TIMEOUT_S = 300.0
"""Longest a stress process may run; motion-meta gives up on a throttle after 120 s by default."""
LABELS = {
    "a": "a ours, pacing",
    "b": "b ours, no pacing",
    "c": "c ours ×4, shared Redis",
    "d": "d naive requests + Retry",
}


@dataclass
class ScenarioResult:
    """What one scenario did, from the clients' side and the emulator's."""

    key: str
    requests: int
    concurrency: int
    duration_s: float
    succeeded: int
    failed: int
    emulator: dict[str, Any]
    own_duration_s: float | None = None
    own_throttled: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def throttled(self) -> int:
        return int(self.emulator.get("throttled", 0))


@dataclass
class ClientRun:
    """One client process: exit code, output and when it ended."""

    name: str
    returncode: int | None
    stdout: str
    stderr: str
    ended_at: float


def _ideal_s(requests_n: int, limit: int, window_s: float) -> float:
    return max(0, math.ceil(requests_n / limit) - 1) * window_s


def _run_clients(
    commands: list[list[str]], env: dict[str, str], work: Path, timeout_s: float
) -> tuple[float, list[ClientRun]]:
    """Start every command at once, wait for all (killing any past `timeout_s`); the start time and runs."""
    procs: list[subprocess.Popen[bytes]] = []
    files: list[tuple[Path, Path]] = []
    ended: dict[int, float] = {}
    start = time.monotonic()
    try:
        for n, command in enumerate(commands):
            out_path, err_path = work / f"client{n}.out", work / f"client{n}.err"
            with out_path.open("wb") as out, err_path.open("wb") as err:
                procs.append(subprocess.Popen(command, stdout=out, stderr=err, env=env))
            files.append((out_path, err_path))
        deadline = start + timeout_s
        while len(ended) < len(procs) and time.monotonic() < deadline:
            for n, proc in enumerate(procs):
                if n not in ended and proc.poll() is not None:
                    ended[n] = time.monotonic()
            time.sleep(0.01)
    finally:
        for proc in procs:
            kill(proc)
    runs = [
        ClientRun(
            name=f"process {n + 1}",
            returncode=procs[n].returncode if n in ended else None,
            stdout=out_path.read_text(errors="replace"),
            stderr=err_path.read_text(errors="replace"),
            ended_at=ended.get(n, start + timeout_s),
        )
        for n, (out_path, err_path) in enumerate(files)
    ]
    return start, runs


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (n < total % parts) for n in range(parts)]


def _stress_scenario(key: str, args: argparse.Namespace, url: str, work: Path, redis_url: str | None) -> ScenarioResult:
    """Scenarios a, b and c: `motion-meta stress` processes, JSON summaries aggregated."""
    processes = 4 if key == "c" else 1
    env = clean_env(
        MOTION_META_HOME=str(work / "home"),
        META_RATE_WINDOW_S=str(args.window),
        META_GRAPH_URL=url,
        META_ACCESS_TOKEN=DEMO_TOKEN,
    )
    if redis_url is not None:
        env["MOTION_META_CACHE_URL"] = redis_url
    shares = list(zip(_split(args.requests, processes), _split(args.concurrency, processes), strict=True))
    commands = [
        [sys.executable, "-m", "motion_meta_cli", "stress", "--concurrency", str(workers), "--requests", str(n)]
        + (["--pacing"] if key == "a" else [])
        + ["--json"]
        for n, workers in shares
    ]
    start, runs = _run_clients(commands, env, work, CLIENT_TIMEOUT_S)
    result = ScenarioResult(
        key=key,
        requests=args.requests,
        concurrency=args.concurrency,
        duration_s=max(run.ended_at for run in runs) - start,
        succeeded=0,
        failed=0,
        emulator=emulator_stats(url),
        own_duration_s=0.0,
        own_throttled=0,
    )
    for run, (n, _) in zip(runs, shares, strict=True):
        try:
            summary = json.loads(run.stdout)
        except json.JSONDecodeError:
            summary = None
        if summary is None:
            result.failed += n
            result.notes.append(f"{run.name}: no JSON summary on stdout")
        else:
            result.succeeded += int(summary["succeeded"])
            result.failed += int(summary["failed"])
            result.own_throttled = (result.own_throttled or 0) + int(summary["throttled_responses"])
            result.own_duration_s = max(result.own_duration_s or 0.0, float(summary["duration_s"]))
            if summary["failures"]:
                result.notes.append(f"{run.name}: failures {summary['failures']}")
        if run.returncode is None:
            result.notes.append(f"{run.name}: killed after {CLIENT_TIMEOUT_S:.0f} s\n{tail(run.stderr)}")
        elif run.returncode != 0:
            result.notes.append(f"{run.name}: exit {run.returncode}, stderr ends:\n{tail(run.stderr)}")
    return result


def _naive_worker(url: str, requests_n: int, concurrency: int) -> None:
    """The naive client (run in a child process): one line per finished request, its final status."""
    session = naive_session(concurrency)
    headers = {"Authorization": f"Bearer {DEMO_TOKEN}"}
    lock = threading.Lock()

    def one(_: int) -> None:
        try:
            status = session.get(f"{url}/v25.0/me?fields=id,name", headers=headers, timeout=30).status_code
        except requests.RequestException:
            status = 0
        with lock:
            print(status, flush=True)

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, range(requests_n)))


def _naive_scenario(args: argparse.Namespace, url: str, work: Path) -> ScenarioResult:
    """Scenario d: the naive client in a child process, stopped after --naive-timeout seconds."""
    command = [sys.executable, str(Path(__file__).resolve()), "--naive-worker", url]
    command += ["--requests", str(args.requests), "--concurrency", str(args.concurrency)]
    start, (run,) = _run_clients([command], clean_env(), work, args.naive_timeout)
    statuses = [line.strip() for line in run.stdout.splitlines() if line.strip()]
    succeeded = statuses.count("200")
    result = ScenarioResult(
        key="d",
        requests=args.requests,
        concurrency=args.concurrency,
        duration_s=run.ended_at - start,
        succeeded=succeeded,
        failed=args.requests - succeeded,
        emulator=emulator_stats(url),
    )
    if run.returncode is None:
        unfinished = args.requests - len(statuses)
        result.notes.append(f"stopped after {args.naive_timeout:.0f} s; {unfinished} requests unfinished (failed)")
    elif run.returncode != 0:
        result.notes.append(f"exit {run.returncode}, stderr ends:\n{tail(run.stderr)}")
    other = sorted({s for s in statuses if s != "200"})
    if other:
        result.notes.append("final statuses other than 200: " + ", ".join(f"{s} ×{statuses.count(s)}" for s in other))
    return result


def _run_scenario(key: str, args: argparse.Namespace) -> ScenarioResult:
    """One scenario with its own emulator, home directory and (for c) redis-server, all removed after."""
    work = Path(tempfile.mkdtemp(prefix=f"motion-meta-throttle-{key}-"))
    emulator: subprocess.Popen[bytes] | None = None
    redis_proc: subprocess.Popen[bytes] | None = None
    try:
        redis_url = None
        if key == "c":
            port = free_port()
            redis_proc = subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                stdout=subprocess.DEVNULL,
            )
            wait_for_port(port)
            redis_url = f"redis://127.0.0.1:{port}/0"
        emulator, url = start_emulator(work, "emulator", "--app-limit", str(args.limit), "--window-s", str(args.window))
        if key == "d":
            return _naive_scenario(args, url, work)
        return _stress_scenario(key, args, url, work, redis_url)
    finally:
        for proc in (emulator, redis_proc):
            if proc is not None:
                kill(proc)
        shutil.rmtree(work, ignore_errors=True)


def _print_table(results: list[ScenarioResult], ideal_s: float) -> None:
    print(
        f"{'scenario':<26}{'duration':>10}{'ideal':>8}{'×ideal':>8}{'ok':>6}{'failed':>8}"
        f"{'throttled':>11}{'blocked':>9}{'token in URL':>14}{'in flight at 1st throttle':>27}"
    )
    for r in results:
        ratio = f"{r.duration_s / ideal_s:.2f}" if ideal_s else "n/a"
        bound = f"≤ {r.concurrency}" if r.key in ("b", "c") else ""
        print(
            f"{LABELS[r.key]:<26}{r.duration_s:>8.2f} s{ideal_s:>6.1f} s{ratio:>8}{r.succeeded:>6}{r.failed:>8}"
            f"{r.throttled:>11}{r.emulator.get('blocked_arrivals', 0):>9}"
            f"{r.emulator.get('token_in_query', 0):>14}{bound:>27}"
        )
    print()
    print("details (emulator: requests seen, first throttle, peak concurrency; motion-meta's own JSON)")
    for r in results:
        stats = r.emulator
        first = stats.get("first_throttle_at_s")
        line = (
            f"  {r.key}: {stats.get('requests')} requests, first throttle "
            f"{'none' if first is None else f'{first:.2f} s'} after the emulator started, "
            f"peak concurrency {stats.get('peak_concurrency')}"
        )
        if r.own_duration_s is not None:
            line += f"; duration_s {r.own_duration_s:.2f} s, throttled_responses {r.own_throttled}"
        print(line)
        for note in r.notes:
            print(f"     {note}")


def _print_targets(results: dict[str, ScenarioResult], ideal_s: float) -> None:
    checks: list[tuple[str, str, bool]] = []
    for key in ("a", "b", "c"):
        if key in results:
            r = results[key]
            ok = r.succeeded == r.requests and r.failed == 0
            checks.append((f"({key}) every request succeeds", f"{r.succeeded}/{r.requests}", ok))
    for key in ("b", "c"):
        if key in results:
            r = results[key]
            checks.append(
                (f"({key}) throttled ≤ concurrency", f"{r.throttled} ≤ {r.concurrency}", r.throttled <= r.concurrency)
            )
    if "a" in results:
        r = results["a"]
        cap = r.requests / 100
        checks.append(("(a) throttled ≤ 1 % of requests", f"{r.throttled} ≤ {cap:g}", r.throttled <= cap))
    for key in ("a", "b", "c"):
        if key in results:
            r = results[key]
            cap = 1.25 * ideal_s
            checks.append(
                (f"({key}) duration ≤ 1.25 × ideal", f"{r.duration_s:.2f} ≤ {cap:.2f} s", r.duration_s <= cap)
            )
    print("targets")
    for name, figures, ok in checks:
        print(f"  {name:<36}{figures:>20}  {'ok' if ok else 'MISSED'}")


def _print_naive_ratios(results: dict[str, ScenarioResult]) -> None:
    naive = results.get("d")
    ours = [results[key] for key in ("a", "b", "c") if key in results]
    if naive is None or not ours:
        return
    print(f"naive / ours (naive: {naive.succeeded}/{naive.requests} succeeded)")
    print(f"  {'':<10}{'duration':>12}{'throttled answers':>22}")
    for r in ours:
        duration = f"{naive.duration_s / r.duration_s:.1f}×"
        throttled = f"{naive.throttled / r.throttled:.1f}×" if r.throttled else f"{naive.throttled} vs 0"
        print(f"  d / {r.key:<6}{duration:>12}{throttled:>22}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--limit", type=int, default=100, help="emulator app calls per window")
    parser.add_argument("--window", type=float, default=2.0, help="emulator window, seconds")
    parser.add_argument("--scenarios", default="a,b,c,d", help="comma-separated subset of a,b,c,d")
    parser.add_argument("--naive-timeout", type=float, default=180.0, help="seconds before the naive client stops")
    parser.add_argument("--naive-worker", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.naive_worker:
        _naive_worker(args.naive_worker, args.requests, args.concurrency)
        return
    keys = [key.strip() for key in args.scenarios.split(",") if key.strip()]
    unknown = [key for key in keys if key not in LABELS]
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(unknown)} (choose from a,b,c,d)")
    if "c" in keys and args.concurrency < 4:
        parser.error("scenario c splits --concurrency over 4 processes; use at least 4")

    ideal_s = _ideal_s(args.requests, args.limit, args.window)
    print(
        f"{args.requests} requests, concurrency {args.concurrency}, emulator limit {args.limit} calls "
        f"per {args.window:g} s; ideal = (ceil({args.requests}/{args.limit}) - 1) × {args.window:g} = {ideal_s:.1f} s"
    )
    results: dict[str, ScenarioResult] = {}
    for key in keys:
        results[key] = _run_scenario(key, args)
    print()
    _print_table(list(results.values()), ideal_s)
    print()
    _print_targets(results, ideal_s)
    if "d" in results:
        print()
        _print_naive_ratios(results)


if __name__ == "__main__":
    main()
