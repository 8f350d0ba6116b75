"""Polling at scale: one cycle's throughput beside a plain client, peak memory, three instances on one Redis.

    python benchmarks/poll.py [--customers 1000] [--big 10000] [--runs 5] [--concurrency 64]
                              [--latency-s 0.1] [--latency-jitter-s 0.05]
                              [--shared-customers 300] [--shared-interval 2] [--shared-cycles 4]
                              [--poll-timeout 300] [--skip-throughput] [--skip-memory] [--skip-shared]

Every server is a child process on 127.0.0.1 (an emulator without limits, `motion-meta emulator --port 0
--accept-any-token`, and for 3 a redis-server on a free port), killed at the end. motion-meta runs with
no META_/MOTION_META_ variable from the caller, from a scratch directory (so no `.env` is read), with a
fresh MOTION_META_HOME per run: customers `c000000`, … with tokens `EAAbench000000xxxxxxxxxx`, …, and no
demo customer. Each `poll --once` runs under a tiny wrapper process that times it and reads its peak RSS
(`RUSAGE_CHILDREN`, whose only child is the poll process).

  1. Throughput of one cycle over --customers customers at --concurrency: `poll --once --json`, timed by
     its own `duration_s` (the cycle) and by the wall time of the process (start-up included), against a
     plain client making the same calls: a `requests.Session` (pool as wide as --concurrency) and a
     thread pool of that width, `GET /v25.0/me?fields=id,name` with each customer's bearer token, nothing
     stored. Poll runs twice: cold, from a fresh home, whose first request goes alone to learn the app's
     budget (one round trip), and warm, from a home whose moderation knows it already (made once by a
     `motion-meta fetch` of one customer), as every cycle after an instance's first. Each of --runs runs
     gets a fresh emulator, shared by the three (`POST /__reset` between them; which goes first rotates).
     The emulator answers after --latency-s ± --latency-jitter-s, as Meta takes 100-500 ms. Medians of
     customers/s, the ratios poll / plain, and CPU seconds per 1,000 customers (user + system: the poll
     process's, start-up included, and the benchmark process's while the plain client runs). Target
     ≥ 0.95: moderation, credentials and storage cost at most 5 %; with --latency-s 0 (a CPU race) ≥ 0.6.
  2. Peak RSS of one `poll --once` over --customers and over --big customers. Target: sub-linear growth,
     under 150 MB at 10,000. Up to 2,000 customers the tokens are stored with `put_secret`; above that
     the secrets file is written directly in LocalSecretsStore's format (each `put_secret` rewrites the
     whole file, so seeding would be quadratic), and a few timed `put_secret` calls show why.
  3. Three `poll --interval 2 --cycles 4 --concurrency 8 --json` processes started together on one home and
     one Redis (MOTION_META_CACHE_URL), over --shared-customers customers. Per slot: duplicates (customers
     fetched by more than one instance in that slot) and misses (customers nobody fetched, counted only in
     slots every instance covered; a customer fetched by a cycle that started late in the slot before is
     not missed: that fetch covers this slot too, so that nobody is fetched twice within one interval).
     Target 0 and 0. The emulator's `per_user` counts cross-check it.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
from _support import (
    clean_env,
    emulator_reset,
    emulator_stats,
    free_port,
    kill,
    kill_group,
    slot_coverage,
    start_emulator,
    tail,
    wait_for_port,
)
from requests.adapters import HTTPAdapter

from motion_meta_cli.app import AppHandler
from motion_meta_cli.config import Settings
from motion_meta_cli.models import iso_utc, utc_now
from motion_meta_cli.storage.local_secrets import FILE_MODE, LocalSecretsStore

PUT_SECRET_MAX = 2000
"""Above this many customers the secrets file is written directly (put_secret rewrites it every time)."""
SHARED_TIMEOUT_S = 120.0
RSS_TARGET_MB = 150.0
RATIO_TARGET = 0.95
"""poll / plain at Meta-like latency: moderation, credentials and storage may cost 5 %."""
RATIO_TARGET_NO_LATENCY = 0.6
"""The same with no latency at all, a CPU race on two cores that no user runs."""
_RSS_WRAPPER = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
returncode = subprocess.call(sys.argv[2:])
wall_s = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(sys.argv[1], "w", encoding="utf-8") as out:
    cpu_s = usage.ru_utime + usage.ru_stime
    json.dump({"returncode": returncode, "wall_s": wall_s, "maxrss_kb": usage.ru_maxrss, "cpu_s": cpu_s}, out)
"""
"""Runs one command, then writes its exit code, wall time and peak RSS (KB on Linux) to argv[1]."""


@dataclass
class PollRun:
    """One `poll --once` process: its cycle report, wall time and peak RSS."""

    customers: int
    returncode: int | None
    wall_s: float
    maxrss_kb: int
    cpu_s: float
    """User + system CPU of the whole process, start-up included."""
    report: dict[str, Any] | None
    emulator: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    @property
    def cycle_s(self) -> float:
        return float(self.report["duration_s"]) if self.report else float("nan")

    @property
    def rss_mb(self) -> float:
        return self.maxrss_kb / 1024


@dataclass
class PlainRun:
    """The plain client over the same customers."""

    customers: int
    seconds: float
    ok: int
    emulator: dict[str, Any]
    cpu_s: float
    """CPU of this (otherwise idle) benchmark process while the plain client ran."""


@dataclass
class Seeded:
    """A seeded home, kept as a template that every run copies."""

    path: Path
    customers: int
    seconds: float
    how: str


def _name(n: int) -> str:
    return f"c{n:06d}"


def _token(n: int) -> str:
    return f"EAAbench{n:06d}xxxxxxxxxx"


def _write_secrets(path: Path, count: int) -> None:
    """The file LocalSecretsStore writes: `{customer: {token, version, updated_at}}`, sorted, indent 2, 0600."""
    now = iso_utc(utc_now())
    data = {_name(n): {"token": _token(n), "version": secrets.token_hex(12), "updated_at": now} for n in range(count)}
    fd, tmp = tempfile.mkstemp(prefix=".secrets-", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
    os.chmod(tmp, FILE_MODE)
    os.replace(tmp, path)


def _seed(path: Path, count: int) -> Seeded:
    """A home with `count` customers and their tokens, the demo customer removed."""
    start = time.perf_counter()
    with AppHandler(Settings(motion_meta_home=path, _env_file=None)) as app:
        store = app.secrets
        if not isinstance(store, LocalSecretsStore):
            raise RuntimeError(f"expected the local secrets store, got {type(store).__name__}")
        for n in range(count):
            app.store.add_customer(_name(n))
        if count <= PUT_SECRET_MAX:
            for n in range(count):
                store.put_secret(_name(n), _token(n))
            how = "put_secret"
        else:
            _write_secrets(store.path, count)
            probe_start = time.perf_counter()
            for n in range(10):  # the same tokens again: shows what put_secret costs at this size
                store.put_secret(_name(n), _token(n))
            each_s = (time.perf_counter() - probe_start) / 10
            how = f"file written directly (put_secret at {count} entries: {each_s * 1000:.0f} ms each)"
        for n in {0, count // 2, count - 1}:
            if store.get_secret(_name(n)).token.get_secret_value() != _token(n):
                raise RuntimeError(f"seeded token of {_name(n)} does not read back")
        if len(app.store.list_customers()) != count:
            raise RuntimeError("seeded customers do not list back")
    return Seeded(path, count, time.perf_counter() - start, how)


def _fresh_home(template: Seeded, work: Path, label: str) -> Path:
    home = work / f"home-{label}"
    shutil.copytree(template.path, home)
    return home


def _poll_once(home: Path, url: str, work: Path, label: str, customers: int, args: argparse.Namespace) -> PollRun:
    """One `poll --once --json` under the RSS wrapper; killed (with the wrapper) after --poll-timeout."""
    out_path, err_path, rss_path = work / f"{label}.out", work / f"{label}.err", work / f"{label}.rss"
    command = [sys.executable, "-c", _RSS_WRAPPER, str(rss_path), sys.executable, "-m", "motion_meta_cli"]
    command += ["poll", "--once", "--concurrency", str(args.concurrency), "--json"]
    env = clean_env(MOTION_META_HOME=str(home), META_GRAPH_URL=url)
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(command, stdout=out, stderr=err, env=env, cwd=work, start_new_session=True)
    try:
        proc.wait(timeout=args.poll_timeout)
    except subprocess.TimeoutExpired:
        pass
    finally:
        kill_group(proc)
    stdout, stderr = out_path.read_text(errors="replace"), err_path.read_text(errors="replace")
    measured = json.loads(rss_path.read_text()) if rss_path.exists() else None
    reports = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    run = PollRun(
        customers=customers,
        returncode=None if measured is None else int(measured["returncode"]),
        wall_s=float("nan") if measured is None else float(measured["wall_s"]),
        maxrss_kb=0 if measured is None else int(measured["maxrss_kb"]),
        cpu_s=float("nan") if measured is None else float(measured["cpu_s"]),
        report=reports[0] if len(reports) == 1 else None,
        emulator=emulator_stats(url),
    )
    if measured is None:
        run.notes.append(f"killed after {args.poll_timeout:.0f} s")
    elif run.returncode != 0:
        run.notes.append(f"exit {run.returncode}")
    if run.report is None:
        run.notes.append(f"{len(reports)} JSON reports on stdout, expected 1")
    else:
        report = run.report
        if report["fetched"] != customers or report["failed"] or report["skipped"] or report["not_started"]:
            run.notes.append(
                f"fetched {report['fetched']}/{customers}, failed {report['failed']}, skipped {report['skipped']}, "
                f"not started {report['not_started']}, taken elsewhere {report['taken_elsewhere']}"
            )
        if report["failures"]:
            kinds = Counter(report["failures"].values())
            run.notes.append(f"failures by kind: {dict(kinds)}; last error: {report['last_error']}")
        if report["overrun"]:
            run.notes.append("the cycle took longer than its 60 s interval (overrun: true)")
    if stderr.strip():
        run.notes.append(f"stderr:\n{tail(stderr)}")
    return run


def _plain(url: str, customers: int, concurrency: int) -> PlainRun:
    """The same calls from a pooled requests.Session and a thread pool; nothing stored."""
    tokens = [_token(n) for n in range(customers)]
    start, cpu_start = time.perf_counter(), time.process_time()
    with requests.Session() as session:
        session.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=concurrency))

        def one(token: str) -> bool:
            try:
                response = session.get(
                    f"{url}/v25.0/me",
                    params={"fields": "id,name"},
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=(3.05, 30),
                )
            except requests.RequestException:
                return False
            return response.status_code == 200 and "id" in response.json()

        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            ok = sum(pool.map(one, tokens))
    seconds, cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    return PlainRun(customers, seconds, ok, emulator_stats(url), cpu_s)


def _warm(template: Seeded, work: Path) -> Seeded:
    """A copy of `template` whose moderation already knows the app's budget, as every cycle after an instance's
    first does: one `motion-meta fetch` of the first customer, against an emulator of its own."""
    home = work / f"{template.path.name}-warm"
    shutil.copytree(template.path, home)
    emulator, url = start_emulator(work, f"emulator-{home.name}", "--accept-any-token")
    try:
        env = clean_env(MOTION_META_HOME=str(home), META_GRAPH_URL=url)
        command = [sys.executable, "-m", "motion_meta_cli", "fetch", "--customer", _name(0)]
        done = subprocess.run(command, env=env, cwd=work, capture_output=True, timeout=60, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"warming the home failed (exit {done.returncode}):\n{tail(done.stderr.decode())}")
    finally:
        kill(emulator)
    return Seeded(home, template.customers, template.seconds, template.how)


def _throughput(template: Seeded, work: Path, args: argparse.Namespace) -> None:
    n, c = template.customers, args.concurrency
    print(
        f"1. one cycle over {n} customers at concurrency {c}, emulator without limits, latency "
        f"{args.latency_s:g} ± {args.latency_jitter_s:g} s ({args.runs} runs)"
    )
    target = RATIO_TARGET if args.latency_s > 0 else RATIO_TARGET_NO_LATENCY
    warm = _warm(template, work)
    runs: list[tuple[str, PollRun, PollRun, PlainRun]] = []
    for index in range(args.runs):
        latency = ["--latency-s", str(args.latency_s), "--latency-jitter-s", str(args.latency_jitter_s)]
        emulator, url = start_emulator(work, f"emulator-t{index}", "--accept-any-token", *latency)
        try:
            order = ["cold", "warm", "plain"][index % 3 :] + ["cold", "warm", "plain"][: index % 3]
            done: dict[str, Any] = {}
            for which in order:
                emulator_reset(url)
                if which == "plain":
                    done[which] = _plain(url, n, c)
                else:
                    home = _fresh_home(template if which == "cold" else warm, work, f"{which}-t{index}")
                    done[which] = _poll_once(home, url, work, f"poll-{which}-t{index}", n, args)
            runs.append((order[0], done["cold"], done["warm"], done["plain"]))
        finally:
            kill(emulator)
    print(
        f"   {'run':<5}{'first':<7}{'poll cold':>18}{'poll warm':>18}{'plain':>18}"
        f"{'cold/plain':>12}{'warm/plain':>12}{'wall/plain':>12}{'poll RSS':>10}"
    )
    for index, (first, cold, hot, q) in enumerate(runs):
        cold_rate, warm_rate, plain_rate = n / cold.cycle_s, n / hot.cycle_s, n / q.seconds
        print(
            f"   {index + 1:<5}{first:<7}"
            f"{cold.cycle_s:>7.2f} s {cold_rate:>6.0f}/s{hot.cycle_s:>7.2f} s {warm_rate:>6.0f}/s"
            f"{q.seconds:>7.2f} s {plain_rate:>6.0f}/s{cold_rate / plain_rate:>12.2f}{warm_rate / plain_rate:>12.2f}"
            f"{n / cold.wall_s / plain_rate:>12.2f}{cold.rss_mb:>7.0f} MB"
        )
    cold_med = statistics.median(n / cold.cycle_s for _, cold, _, _ in runs)
    warm_med = statistics.median(n / hot.cycle_s for _, _, hot, _ in runs)
    wall_med = statistics.median(n / cold.wall_s for _, cold, _, _ in runs)
    plain_med = statistics.median(n / q.seconds for *_, q in runs)
    print(
        f"   {'median':<12}{'':>9}{cold_med:>6.0f}/s{'':>10}{warm_med:>6.0f}/s{'':>10}{plain_med:>6.0f}/s"
        f"{cold_med / plain_med:>12.2f}{warm_med / plain_med:>12.2f}{wall_med / plain_med:>12.2f}"
    )
    per_k = 1000 / n
    cpu = {
        "cold": statistics.median(cold.cpu_s for _, cold, _, _ in runs) * per_k,
        "warm": statistics.median(hot.cpu_s for _, _, hot, _ in runs) * per_k,
        "plain": statistics.median(q.cpu_s for *_, q in runs) * per_k,
    }
    print(
        "   CPU seconds per 1,000 customers (medians; poll's include its start-up): "
        + ", ".join(f"{label} {seconds:.2f} s" for label, seconds in cpu.items())
    )
    for label, rate in (("cold", cold_med), ("warm", warm_med)):
        ratio = rate / plain_med
        verdict = "ok" if ratio >= target else "MISSED"
        print(f"   target {label}/plain (cycle, medians) ≥ {target}: {ratio:.2f}  {verdict}")
    print("   emulator saw (requests, 200s, peak concurrency):")
    for index, (_, cold, hot, q) in enumerate(runs):
        seen = [(label, run.emulator) for label, run in (("cold", cold), ("warm", hot))] + [("plain", q.emulator)]
        print(
            f"     run {index + 1}: "
            + "; ".join(
                f"{label} {e['requests']}, {e['by_status'].get('200', 0)}, peak {e['peak_concurrency']}"
                for label, e in seen
            )
        )
        if q.ok != n:
            print(f"       plain: {q.ok}/{n} answered 200 with a user")
        for label, run in (("cold", cold), ("warm", hot)):
            for note in run.notes:
                print(f"       poll {label}: {note}")
    print(
        "   poll runs with pacing on (its default). Cold: a fresh home, whose first request goes alone to learn\n"
        "   the app's budget (this emulator sends no X-App-Usage, so it is then 'unmetered'). Warm: the budget\n"
        "   is known, as in every cycle after an instance's first (it lasts ten windows)."
    )


def _memory(small: Seeded, big: Seeded, work: Path, args: argparse.Namespace) -> None:
    print(f"2. peak RSS of one `poll --once --concurrency {args.concurrency}`")
    runs: list[tuple[Seeded, PollRun]] = []
    emulator, url = start_emulator(work, "emulator-m", "--accept-any-token")
    try:
        for template in (small, big):
            emulator_reset(url)
            home = _fresh_home(template, work, f"m{template.customers}")
            runs.append(
                (template, _poll_once(home, url, work, f"poll-m{template.customers}", template.customers, args))
            )
    finally:
        kill(emulator)
    print(f"   {'customers':>10}{'seeding':>10}{'cycle':>11}{'wall':>11}{'customers/s':>13}{'peak RSS':>11}  tokens")
    for template, run in runs:
        print(
            f"   {template.customers:>10}{template.seconds:>8.1f} s{run.cycle_s:>9.2f} s{run.wall_s:>9.2f} s"
            f"{template.customers / run.cycle_s:>13.0f}{run.rss_mb:>8.0f} MB  {template.how}"
        )
    (_, low), (_, high) = runs
    scale = high.customers / low.customers
    rss_ratio = high.rss_mb / low.rss_mb if low.maxrss_kb else float("nan")
    time_ratio = high.cycle_s / low.cycle_s
    print(
        f"   {high.customers} / {low.customers} ({scale:g}× the customers): "
        f"RSS {rss_ratio:.2f}×, cycle {time_ratio:.1f}×"
    )
    print(f"   target RSS sub-linear: {rss_ratio:.2f}× < {scale:g}×  {'ok' if rss_ratio < scale else 'MISSED'}")
    print(
        f"   target RSS under {RSS_TARGET_MB:.0f} MB at {high.customers}: {high.rss_mb:.0f} MB  "
        f"{'ok' if high.rss_mb < RSS_TARGET_MB else 'MISSED'}"
    )
    for template, run in runs:
        for note in run.notes:
            print(f"     {template.customers}: {note}")


def _shared(template: Seeded, work: Path, args: argparse.Namespace) -> None:
    n = template.customers
    print(
        f"3. three `poll --interval {args.shared_interval:g} --cycles {args.shared_cycles} --concurrency 8` "
        f"on one Redis, {n} customers"
    )
    port = free_port()
    redis_proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        cwd=work,
    )
    emulator: subprocess.Popen[bytes] | None = None
    procs: list[subprocess.Popen[bytes]] = []
    try:
        wait_for_port(port)
        emulator, url = start_emulator(work, "emulator-s", "--accept-any-token")
        home = _fresh_home(template, work, "shared")
        env = clean_env(
            MOTION_META_HOME=str(home), META_GRAPH_URL=url, MOTION_META_CACHE_URL=f"redis://127.0.0.1:{port}/0"
        )
        command = [sys.executable, "-m", "motion_meta_cli", "poll", "--interval", str(args.shared_interval)]
        command += ["--cycles", str(args.shared_cycles), "--concurrency", "8", "--json"]
        files = [(work / f"shared{i}.out", work / f"shared{i}.err") for i in range(3)]
        for out_path, err_path in files:
            with out_path.open("wb") as out, err_path.open("wb") as err:
                procs.append(subprocess.Popen(command, stdout=out, stderr=err, env=env, cwd=work))
        deadline = time.monotonic() + SHARED_TIMEOUT_S
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            time.sleep(0.05)
        timed_out = [i for i, p in enumerate(procs) if p.poll() is None]
        for proc in procs:
            kill(proc)
        stats = emulator_stats(url)
    finally:
        for proc in procs:
            kill(proc)
        if emulator is not None:
            kill(emulator)
        kill(redis_proc)

    names = {_name(i) for i in range(n)}
    outputs = [(out.read_text(errors="replace"), err.read_text(errors="replace")) for out, err in files]
    reports = [[json.loads(line) for line in out.splitlines() if line.startswith("{")] for out, _ in outputs]
    rows = slot_coverage(reports, names, args.shared_interval)
    print(
        f"   {'slot':>10}{'fetched by 1/2/3':>20}{'fetched':>9}{'distinct':>10}"
        f"{'duplicates':>12}{'misses':>8}{'failed':>8}"
    )
    for row in rows:
        print(
            f"   {row.slot:>10}{row.split:>20}{row.fetched:>9}{row.distinct:>10}{row.duplicates:>12}"
            f"{'n/a' if row.misses is None else row.misses:>8}{row.failed:>8}"
        )
    total_fetched = sum(row.fetched for row in rows)
    total_dups = sum(row.duplicates for row in rows)
    total_misses = sum(row.misses or 0 for row in rows)
    total_failed = sum(row.failed for row in rows)
    covered_slots = sum(1 for row in rows if row.misses is not None)
    print(
        f"   {'total':>10}{'':>20}{total_fetched:>9}{'':>10}{total_dups:>12}{total_misses:>8}{total_failed:>8}"
        f"   ({covered_slots} of {len(rows)} slots covered by all three)"
    )
    per_user = stats["per_user"]
    print(
        f"   emulator: {stats['requests']} requests, per_user total {sum(per_user.values())} over "
        f"{len(per_user)} users; instances reported {total_fetched} fetched + {total_failed} failed  "
        f"{'agree' if sum(per_user.values()) == total_fetched + total_failed else 'DISAGREE'}"
    )
    ok = total_dups == 0 and total_misses == 0 and covered_slots > 0
    print(f"   target duplicates 0 and misses 0: {total_dups} and {total_misses}  {'ok' if ok else 'MISSED'}")
    for i, (proc, (_, err)) in enumerate(zip(procs, outputs, strict=True)):
        notes = []
        if i in timed_out:
            notes.append(f"killed after {SHARED_TIMEOUT_S:.0f} s")
        elif proc.returncode != 0:
            notes.append(f"exit {proc.returncode}")
        if len(reports[i]) != args.shared_cycles:
            notes.append(f"{len(reports[i])} reports, expected {args.shared_cycles}")
        overruns = [_overrun(r, args.shared_interval) for r in reports[i] if r["overrun"]]
        if overruns:
            notes.append("overrun: " + "; ".join(overruns))
        if err.strip():
            notes.append(f"stderr:\n{tail(err)}")
        for note in notes:
            print(f"     instance {i + 1}: {note}")


def _overrun(report: dict[str, Any], interval_s: float) -> str:
    """Which cycle overran (took longer than the interval), how late into its slot it started, how long it took."""
    started = datetime.fromisoformat(report["started_at"]).timestamp()
    into_slot_s = started - int(report["slot"]) * interval_s
    return f"cycle {report['cycle']} started {into_slot_s:.2f} s into its slot, took {report['duration_s']:.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1000, help="customers for 1 and the small run of 2")
    parser.add_argument("--big", type=int, default=10000, help="customers for the large run of 2")
    parser.add_argument("--runs", type=int, default=5, help="throughput runs (median reported)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency-s", type=float, default=0.1, help="emulator latency for 1 (0: a CPU race)")
    parser.add_argument("--latency-jitter-s", type=float, default=0.05)
    parser.add_argument("--shared-customers", type=int, default=300)
    parser.add_argument("--shared-interval", type=float, default=2.0)
    parser.add_argument("--shared-cycles", type=int, default=4)
    parser.add_argument("--poll-timeout", type=float, default=300.0, help="seconds before a poll --once is killed")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-shared", action="store_true")
    args = parser.parse_args()
    if min(args.customers, args.big, args.runs, args.concurrency, args.shared_customers) < 1:
        parser.error("sizes, runs and concurrency must be at least 1")

    for key in [k for k in os.environ if k.startswith(("META_", "MOTION_META_"))]:
        del os.environ[key]  # the in-process seeding must not follow the caller's configuration
    work = Path(tempfile.mkdtemp(prefix="motion-meta-poll-"))
    started = time.monotonic()
    try:
        small = _seed(work / "template-small", args.customers)
        print(f"seeded {args.customers} customers in {small.seconds:.1f} s ({small.how})")
        if not args.skip_throughput:
            print()
            _throughput(small, work, args)
        if not args.skip_memory:
            big = _seed(work / "template-big", args.big)
            print()
            print(f"seeded {args.big} customers in {big.seconds:.1f} s ({big.how})")
            _memory(small, big, work, args)
        if not args.skip_shared:
            shared = _seed(work / "template-shared", args.shared_customers)
            print()
            _shared(shared, work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(f"total {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
