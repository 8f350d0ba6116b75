"""Scaling: four `poll` instances over 20,000 customers on DynamoDB and Secrets Manager, sharing one Redis and
then a 3-node Redis Cluster. Per cycle: duration, duplicates, misses, Redis commands and AWS calls per customer,
memory and CPU per instance.

    python benchmarks/scale.py [--customers 20000] [--instances 4] [--concurrency 32] [--interval S]
                               [--cycles 2] [--latency-s 0.05] [--latency-jitter-s 0.1]
                               [--setups single,cluster] [--timeout S] [--walk-timeout S]

Every server is a child process on 127.0.0.1, on a free port, killed on every way out:

- the emulator (`motion-meta emulator --accept-any-token`, no rate limit), answering each request after
  --latency-s plus a uniform draw of up to --latency-jitter-s: 50-150 ms by default, Meta's 100 ± 50 ms;
- ONE moto server (`python -m moto.server`'s `main`) for DynamoDB and Secrets Manager, reached only through a
  counting proxy (a thread of this script, `http.server`) that counts requests by `X-Amz-Target`
  (`DynamoDB_20120810.BatchWriteItem`, `secretsmanager.BatchGetSecretValue`, ...; retries included, as AWS bills
  them) and forwards them one at a time: moto is not thread-safe (TransactWriteItems replaces whole tables). The
  time moto spends on them is summed ("moto busy"): where it nears a cycle's duration, moto bounded that cycle.
  A request moto answers after boto3 gave up waiting for it (10 s) is counted again when boto3 retries it, and
  shown as abandoned. Three of moto's costs that grow with the data are cut in its process, because at this size
  they, not motion-meta, would set the pace; none changes an answer (see MOTO_LAUNCHER);
- per setup, a redis-server (`redis://127.0.0.1:PORT/0`) or a 3-master Redis Cluster
  (`redis+cluster://127.0.0.1:PORT`), as the integration tests start them (`_support.start_redis_cluster`).

Seeding (once, shared by both setups, not counted): `store init`'s own `DynamoCustomerStore.create_table`, then
--customers customers `c000000`, ... written with BatchWriteItem in the shape `customers add` writes (`pk=CUSTOMERS,
sk=<name>, active, added_at`) and one secret each, `motion-meta/scale/<name>` = `{"access_token": "EAA..."}` as
`credentials set` creates it (CreateSecret: Secrets Manager has no batch write). They are read back through the
app's own store classes, and a `poll --once --customers` of three of them (its own SQLite cache) must fetch all
three before anything is measured.

Each setup starts --instances `motion-meta poll --interval I --cycles 2 --concurrency C --json` processes at once,
each with its own MOTION_META_HOME and all with the same cache, store and secrets URLs. Long-running `poll`,
not `poll --once` per cycle: the container image runs it that way, and only a process that lives on holds tokens
in memory from one cycle to the next, which is what makes a cycle warm. (A cron `poll --once` is a new process
every time: each of its cycles reads every token it fetches, like the cold one here, less the marker writes.)
Cycles run on wall-clock slots of I seconds; I is --interval adjusted by a few microseconds so that a slot begins
as the instances start, so the first (cold) cycle starts on time rather than late, and the second (warm) starts
on the next slot's boundary. --interval must exceed the cold cycle (the script says so when it does not).

  cold: fresh Redis, new processes: no validity marker, no token held, moderation learns the app's budget
        (its first request goes alone), start-up included (the customer list, Redis Cluster discovery);
  warm: the next slot, the same processes: markers current, tokens held for the customers each instance
        fetched in the cold cycle. Which instance fetches whom is decided by per-slot leases; each instance
        claims first the customers it took in the cold cycle.

Per cycle: wall duration (first instance's start to last instance's end); customers fetched, duplicates
(fetched by more than one instance in the slot) and misses (fetched by none), by `_support.slot_coverage` over the
instances' JSON reports, as `benchmarks/poll.py` counts them, cross-checked against the emulator's per-user
counts; Redis commands per customer (`INFO commandstats` deltas summed over every node, this script's INFO calls
left out); AWS calls per 1,000 customers by API (the proxy); each instance's peak RSS (VmHWM from /proc when it
prints the cycle's report, so the warm figure is the peak over both cycles) and CPU per customer (/proc utime +
stime); CPU seconds of the emulator, moto and Redis. The figures are deltas between the moments every instance
has printed a cycle's report; instances are idle between cycles.

Then one more instance: a `poll --once` in the slot the instances just covered, which finds every lease taken and
fetches nobody. What it costs (its cycle's duration, CPU and peak RSS from its own rusage, Redis commands and AWS
calls) is what every further instance adds to every cycle: listing the customers and claiming each of them. Its
CPU less that of the same run over one customer (`--customers c000000`) is the cost per customer walked.

The machine is small and shared (two cores here): the four instances, the emulator, moto and Redis compete for
the same CPUs, so durations are this machine's, not an instance's; the counts per customer are not.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from _support import (
    RedisServer,
    clean_env,
    emulator_reset,
    emulator_stats,
    free_port,
    kill,
    kill_group,
    slot_coverage,
    start_emulator,
    start_redis_cluster,
    tail,
    wait_for_port,
)

from motion_meta_cli.models import iso_utc, utc_now

TABLE = "motion-meta-scale"
SECRETS_PREFIX = "motion-meta/scale/"
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailers", "transfer-encoding", "upgrade"}
)
CLK_TCK = os.sysconf("SC_CLK_TCK")
MOTO_LAUNCHER = r'''
"""moto's server (`python -m moto.server -H 127.0.0.1 -p PORT`) with four costs that grow with the table or the
number of secrets cut down. None changes an answer:

- Secrets Manager finds a secret by scanning every secret for a matching name or ARN, on every read: 20,000
  secrets × 20,000 reads per cycle. A name that is a key of its dict is what that scan finds (an ARN has a
  colon, a name cannot), so that case is looked up directly; anything else still scans.
- TransactWriteItems backs up the whole table with copy.deepcopy once per item of the transaction, to roll back
  on failure: seconds per call at 20,000 customers. For transactions of Puts only (all motion-meta writes), the
  items they replace are remembered instead (moto replaces an item, never changes it in place) and put back on
  failure; the table copy is skipped.
- Query walks every item of the table to find those of the partition asked for (20,000 customers beside 40,000
  snapshots and history items and more each cycle), for every page. A Query of the table itself (no index) now
  walks that partition's items only: the same items, sorted and paged as before.
- A Query's answer goes through moto's generic serializer, about 0.3 ms per item (several seconds for the list of
  20,000 customers, longer than boto3 waits). It is plain JSON already, so it is sent as `json.dumps` makes it
  (the same document); an answer with binary attributes, which would need base64, still takes moto's way.
"""
import copy, json, sys, types
from moto.dynamodb import models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table
from moto.dynamodb.responses import DynamoHandler
from moto.secretsmanager.models import SecretsStore
from moto.server import main


def _direct(name):
    slow = getattr(SecretsStore, name)

    def lookup(self, key, *rest):
        if isinstance(key, str) and dict.__contains__(self, key):
            return True if name == "__contains__" else dict.__getitem__(self, key)
        return slow(self, key, *rest)

    setattr(SecretsStore, name, lookup)


for _name in ("__getitem__", "__contains__", "get"):
    _direct(_name)

_transact = DynamoDBBackend.transact_write_items
_NO_TABLE_COPY = types.SimpleNamespace(deepcopy=lambda table, memo=None: table)


def transact_write_items(self, transact_items):
    try:
        replaced = []
        for entry in transact_items:
            ((kind, op),) = entry.items()
            if kind != "Put":
                return _transact(self, transact_items)
            table = self.get_table(op["TableName"])
            hash_value = DynamoType(op["Item"][table.hash_key_attr])
            range_value = DynamoType(op["Item"][table.range_key_attr]) if table.range_key_attr else None
            replaced.append((table, hash_value, range_value, table.get_item(hash_value, range_value)))
    except Exception:
        return _transact(self, transact_items)  # let moto answer whatever is wrong with it
    dynamodb_models.copy = _NO_TABLE_COPY
    try:
        return _transact(self, transact_items)
    except Exception:
        for table, hash_value, range_value, item in reversed(replaced):
            if item is None:
                table.delete_item(hash_value, range_value)
            elif range_value is not None:
                table.items[hash_value][range_value] = item
            else:
                table.items[hash_value] = item
        raise
    finally:
        dynamodb_models.copy = copy


DynamoDBBackend.transact_write_items = transact_write_items
_query = Table.query


def query(self, hash_key, *args, **kwargs):
    index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
    if index_name is not None or hash_key is None or not self.range_key_attr:
        return _query(self, hash_key, *args, **kwargs)
    partition = self.items.get(hash_key, {})
    self.all_items = lambda: list(partition.values())  # shadows the method for this call only
    try:
        return _query(self, hash_key, *args, **kwargs)
    finally:
        del self.all_items


Table.query = query
_handler_query = DynamoHandler.query


def handler_query(self):
    answer = _handler_query(self)
    try:
        return json.dumps(answer.result)
    except TypeError:
        return answer


DynamoHandler.query = handler_query
main(["-H", "127.0.0.1", "-p", sys.argv[1]])
'''


def _name(n: int) -> str:
    return f"c{n:06d}"


def _token(n: int) -> str:
    return f"EAAscale{n:06d}xxxxxxxxxx"


# --- processes ---------------------------------------------------------------------------------------------------


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of `pid` so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime: fields 14 and 15 of stat(5)


def proc_hwm_kb(pid: int) -> int:
    """Peak resident set size (VmHWM) of `pid` so far, in KB (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def start_moto(work: Path) -> tuple[subprocess.Popen[bytes], int]:
    """moto's server with MOTO_LAUNCHER's patches, in its own process group; its port once it answers."""
    port = free_port()
    with (work / "moto.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", MOTO_LAUNCHER, str(port)], stdout=log, stderr=log, start_new_session=True
        )
    try:
        wait_for_port(port)
        deadline = time.monotonic() + 30
        while True:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            try:
                connection.request("GET", "/moto-api/")
                connection.getresponse().read()
                return proc, port
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
            finally:
                connection.close()
    except BaseException:
        kill_group(proc)
        raise


class CountingProxy:
    """HTTP on a free port that forwards every request to moto one at a time, counting them by `X-Amz-Target`.

    proxy = CountingProxy(moto_port); proxy.start()
    calls, busy_s = proxy.snapshot()      # by target: requests, and seconds moto spent on them
    """

    def __init__(self, upstream_port: int) -> None:
        self._upstream_port = upstream_port
        self._lock = threading.Lock()
        self._connection: http.client.HTTPConnection | None = None
        self.calls: Counter[str] = Counter()
        self.busy_s: Counter[str] = Counter()
        """Time moto spent answering, by target (requests go one at a time, so this is moto's busy time)."""
        self.longest_wait_s = 0.0
        """The longest a request queued for its turn."""
        self.abandoned: Counter[str] = Counter()
        """Requests whose client had given up (boto3's 10 s read timeout) when moto answered; it sends them again,
        and both are counted in `calls`."""
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                target = self.headers.get("X-Amz-Target") or f"{self.command} {self.path.split('?')[0]}"
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                status, answer_headers, data = proxy.forward(target, self.command, self.path, headers, body)
                self.send_response(status)
                for key, value in answer_headers:
                    if key.lower() not in HOP_BY_HOP | {"content-length", "server", "date"}:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                try:
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True
                    with proxy._lock:
                        proxy.abandoned[target] += 1

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = relay

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="aws-proxy", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._connection is not None:
            self._connection.close()

    def snapshot(self) -> tuple[Counter[str], Counter[str], Counter[str]]:
        """The requests counted so far, moto's busy seconds, and requests abandoned by their client, by target."""
        with self._lock:
            return Counter(self.calls), Counter(self.busy_s), Counter(self.abandoned)

    def forward(
        self, target: str, method: str, path: str, headers: dict[str, str], body: bytes | None
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        queued = time.monotonic()
        with self._lock:
            started = time.monotonic()
            self.longest_wait_s = max(self.longest_wait_s, started - queued)
            for attempt in range(2):
                connection = self._connection or http.client.HTTPConnection(
                    "127.0.0.1", self._upstream_port, timeout=300
                )
                self._connection = connection
                try:
                    connection.request(method, path, body, headers)
                    response = connection.getresponse()
                    data = response.read()
                    break
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                    connection.close()  # a kept-alive connection moto had closed: nothing reached it
                    self._connection = None
                    if attempt:
                        raise
            if response.getheader("Connection", "").lower() == "close":
                connection.close()
                self._connection = None
            self.calls[target] += 1
            self.busy_s[target] += time.monotonic() - started
            return response.status, response.getheaders(), data


# --- seeding -----------------------------------------------------------------------------------------------------


def seed(moto_url: str, count: int) -> float:
    """The table (as `store init` makes it), `count` customers and their secrets, straight into moto; seconds."""
    import boto3

    from motion_meta_cli.storage.aws import aws_client
    from motion_meta_cli.storage.aws_secrets import TOKEN_KEY, AwsSecretsStore
    from motion_meta_cli.storage.dynamodb_store import WRITE_BATCH, DynamoCustomerStore

    start = time.perf_counter()
    os.environ.update(AWS_ENV, AWS_ENDPOINT_URL=moto_url)
    dynamodb, secrets = aws_client("dynamodb"), aws_client("secretsmanager")
    store, secrets_store = DynamoCustomerStore(TABLE, client=dynamodb), AwsSecretsStore(SECRETS_PREFIX, client=secrets)
    store.create_table()
    added_at = iso_utc(utc_now())
    for first in range(0, count, WRITE_BATCH):
        requests: list[Any] = [
            {
                "PutRequest": {
                    "Item": {
                        "pk": {"S": "CUSTOMERS"},
                        "sk": {"S": _name(n)},
                        "active": {"BOOL": True},
                        "added_at": {"S": added_at},
                    }
                }
            }
            for n in range(first, min(count, first + WRITE_BATCH))
        ]
        while requests:
            response = dynamodb.batch_write_item(RequestItems={TABLE: requests})
            requests = response.get("UnprocessedItems", {}).get(TABLE, [])
    raw = boto3.session.Session().client("secretsmanager")  # one call per secret: no retries needed
    for n in range(count):
        raw.create_secret(Name=SECRETS_PREFIX + _name(n), SecretString=json.dumps({TOKEN_KEY: _token(n)}))
    raw.close()
    listed = store.list_customers()
    if [c.name for c in listed] != [_name(n) for n in range(count)] or not all(c.active for c in listed):
        raise RuntimeError(f"seeded {count} customers, but {len(listed)} list back as the store reads them")
    sample = sorted({0, count // 2, count - 1})
    records = secrets_store.get_secrets([_name(n) for n in sample])
    if {c: r.token.get_secret_value() for c, r in records.items()} != {_name(n): _token(n) for n in sample}:
        raise RuntimeError("seeded secrets do not read back through AwsSecretsStore")
    store.close()
    secrets_store.close()
    for name in ("AWS_ENDPOINT_URL", *AWS_ENV):
        os.environ.pop(name, None)
    return time.perf_counter() - start


def app_env(home: Path, graph_url: str, cache_url: str, aws_url: str) -> dict[str, str]:
    """What a motion-meta process gets: nothing of the caller's META_/MOTION_META_ settings, these backends."""
    return clean_env(
        MOTION_META_HOME=str(home),
        META_GRAPH_URL=graph_url,
        MOTION_META_CACHE_URL=cache_url,
        MOTION_META_STORE_URL=f"dynamodb://{TABLE}",
        MOTION_META_SECRETS_URL=f"aws-secretsmanager://{SECRETS_PREFIX}",
        AWS_ENDPOINT_URL=aws_url,
        **AWS_ENV,
    )


def preflight(work: Path, graph_url: str, moto_url: str, count: int) -> None:
    """`poll --once --customers` of the first, a middle and the last seeded customer (its own SQLite cache) must
    fetch all three: the app sees the seeded customers and secrets as its own."""
    names = sorted({_name(0), _name(count // 2), _name(count - 1)})
    env = app_env(work / "home-preflight", graph_url, f"sqlite:///{work / 'preflight-cache.db'}", moto_url)
    command = [sys.executable, "-m", "motion_meta_cli", "poll", "--once", "--json", "--customers", ",".join(names)]
    done = subprocess.run(command, env=env, cwd=work, capture_output=True, timeout=120, check=False)
    reports = [json.loads(line) for line in done.stdout.decode().splitlines() if line.startswith("{")]
    if done.returncode != 0 or len(reports) != 1 or reports[0]["customers"] != names:
        raise RuntimeError(
            f"poll --once over {names} did not fetch them (exit {done.returncode}):\n"
            f"{tail(done.stdout.decode())}\n{tail(done.stderr.decode())}"
        )


# --- one setup ---------------------------------------------------------------------------------------------------


@dataclass
class Instance:
    """One `poll` process and what it printed: a report per cycle, with its peak RSS and CPU at that moment."""

    index: int
    proc: subprocess.Popen[bytes]
    err_path: Path
    reports: list[dict[str, Any]] = field(default_factory=list)
    hwm_kb: list[int] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    other_lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    def read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").strip()
            if not line.startswith("{"):
                self.other_lines.append(line)
                continue
            hwm, cpu = proc_hwm_kb(self.proc.pid), proc_cpu_s(self.proc.pid)
            self.reports.append(json.loads(line))
            self.hwm_kb.append(hwm)
            self.cpu_s.append(cpu)


@dataclass
class Snapshot:
    """Counters at one moment: Redis commands and CPU per node, AWS calls and moto's busy time by target, CPU of
    the emulator and moto."""

    redis: dict[int, Counter[str]]
    redis_cpu_s: dict[int, float]
    aws: Counter[str]
    moto_busy_s: Counter[str]
    aws_abandoned: Counter[str]
    cpu_s: dict[str, float]


@dataclass
class Cycle:
    """What one cycle of every instance did, from two snapshots and the instances' reports."""

    label: str
    wall_s: float
    fetched: int
    split: str
    duplicates: int
    misses: int | None
    failed: int
    redis: Counter[str]
    """Commands, summed over the nodes."""
    redis_busiest: Counter[str]
    """Commands of the node that ran the most."""
    redis_cpu_s: float
    redis_busiest_cpu_s: float
    aws: Counter[str]
    moto_busy_s: Counter[str]
    aws_abandoned: Counter[str]
    """AWS requests moto answered after their client had given up (each also counted in `aws`, with its retry)."""
    cpu_s: dict[str, float]
    hwm_mb: list[float]
    instance_cpu_s: list[float]
    notes: list[str] = field(default_factory=list)


@dataclass
class Setup:
    """One Redis setup's cycles, and what went wrong."""

    name: str
    interval_s: float
    cycles: list[Cycle]
    notes: list[str]
    walks: list[Walk] = field(default_factory=list)
    """The extra `poll --once` runs after the last cycle: over one customer, then over all."""


@dataclass
class Walk:
    """One `poll --once` late in a slot whose every lease is taken: it fetches nobody, so what it costs is what
    one more instance costs every cycle, start-up aside: the customer list, a claim of every customer."""

    customers: int
    report: dict[str, Any] | None
    returncode: int
    cpu_s: float
    rss_mb: float
    redis: Counter[str]
    aws: Counter[str]
    moto_busy_s: Counter[str]
    aws_abandoned: Counter[str]


def redis_calls(port: int) -> Counter[str]:
    """Calls per command since the server on `port` started (this script's INFO calls left out)."""
    import redis

    calls: Counter[str] = Counter()
    with redis.Redis(port=port) as client:
        for key, stats in client.info("commandstats").items():
            command = key.removeprefix("cmdstat_")
            if command != "info":
                calls[command] += int(stats["calls"])
    return calls


@contextmanager
def redis_for(kind: str, work: Path) -> Iterator[tuple[str, list[int], list[int]]]:
    """A fresh redis-server or 3-node cluster: its cache URL, its ports, its pids."""
    if kind == "single":
        server = RedisServer(port=free_port(), workdir=work)
        server.start()
        try:
            assert server.process is not None
            yield f"redis://127.0.0.1:{server.port}/0", [server.port], [server.process.pid]
        finally:
            server.stop()
    else:
        cluster = start_redis_cluster(work)
        try:
            pids = [node.process.pid for node in cluster.nodes if node.process is not None]
            yield f"redis+cluster://127.0.0.1:{cluster.nodes[0].port}", [n.port for n in cluster.nodes], pids
        finally:
            cluster.stop()


def aligned_interval(interval_s: float, slot_start: float) -> float:
    """The interval nearest above `interval_s` (by at most interval_s² / slot_start, microseconds) whose slots
    begin at `slot_start`, so that a cycle started just after it is on time, not late."""
    return slot_start / math.floor(slot_start / interval_s)


def run_setup(
    kind: str,
    work: Path,
    graph_url: str,
    proxy: CountingProxy,
    servers: dict[str, int],
    args: argparse.Namespace,
) -> Setup:
    name = {"single": "one Redis", "cluster": "Redis Cluster (3)"}[kind]
    folder = work / kind
    folder.mkdir()
    notes: list[str] = []
    instances: list[Instance] = []
    with redis_for(kind, folder) as (cache_url, ports, redis_pids):
        emulator_reset(graph_url)

        def snapshot() -> Snapshot:
            aws, busy, abandoned = proxy.snapshot()
            return Snapshot(
                redis={port: redis_calls(port) for port in ports},
                redis_cpu_s={port: proc_cpu_s(pid) for port, pid in zip(ports, redis_pids, strict=True)},
                aws=aws,
                moto_busy_s=busy,
                aws_abandoned=abandoned,
                cpu_s={label: proc_cpu_s(pid) for label, pid in servers.items()},
            )

        snapshots = [snapshot()]
        slot_start = time.time() - 0.5
        interval_s = aligned_interval(args.interval, slot_start)
        command = [sys.executable, "-m", "motion_meta_cli", "poll", "--interval", repr(interval_s)]
        command += ["--cycles", str(args.cycles), "--concurrency", str(args.concurrency), "--json"]
        try:
            for index in range(args.instances):
                home = folder / f"home-{index}"
                err_path = folder / f"poll-{index}.err"
                with err_path.open("wb") as err:
                    proc = subprocess.Popen(
                        command,
                        stdout=subprocess.PIPE,
                        stderr=err,
                        env=app_env(home, graph_url, cache_url, proxy.url),
                        cwd=folder,
                        start_new_session=True,
                    )
                instance = Instance(index, proc, err_path)
                instance.reader = threading.Thread(target=instance.read, name=f"poll-{index}", daemon=True)
                instance.reader.start()
                instances.append(instance)
            deadline = time.monotonic() + args.timeout
            for cycle in range(1, args.cycles + 1):
                while not all(len(i.reports) >= cycle or i.proc.poll() is not None for i in instances):
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{name}: cycle {cycle} not done after {args.timeout:.0f} s")
                    time.sleep(0.05)
                snapshots.append(snapshot())
                print(f"  {name}: cycle {cycle} done ({time.time() - slot_start:.0f} s after start)", flush=True)
            for instance in instances:
                try:
                    instance.proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    notes.append(f"instance {instance.index + 1} still ran 60 s after its last cycle; killed")
        except TimeoutError as exc:
            notes.append(str(exc))
        finally:
            for instance in instances:
                kill_group(instance.proc)
            for instance in instances:
                if instance.reader is not None:
                    instance.reader.join(timeout=10)
        stats = emulator_stats(graph_url)
        env = app_env(folder / "home-walk", graph_url, cache_url, proxy.url)
        walks = [walk(folder, env, count, interval_s, snapshot, args.walk_timeout) for count in (1, args.customers)]
        last_slots = {int(i.reports[-1]["slot"]) for i in instances if i.reports}
        walked_slots = {int(w.report["slot"]) for w in walks if w.report is not None}
        if len(last_slots | walked_slots) != 1:
            notes.append(f"the extra runs left the last cycle's slot: {sorted(last_slots | walked_slots)}")

    for instance in instances:
        if instance.proc.returncode not in (0, None):
            notes.append(f"instance {instance.index + 1} exited {instance.proc.returncode}")
        err = instance.err_path.read_text(errors="replace")
        if err.strip():
            notes.append(f"instance {instance.index + 1} stderr:\n{tail(err, 4)}")
    per_user_total = sum(stats["per_user"].values())
    reported = sum(int(r["fetched"]) + int(r["failed"]) for i in instances for r in i.reports)
    if per_user_total != reported:
        notes.append(f"the emulator counted {per_user_total} user requests, the instances reported {reported}")
    return Setup(name, interval_s, cycles_of(instances, snapshots, args, interval_s), notes, walks)


def walk(
    folder: Path,
    env: dict[str, str],
    customers: int,
    interval_s: float,
    snapshot: Callable[[], Snapshot],
    timeout_s: float,
) -> Walk:
    """`poll --once --json` over the first `customers` customers, in the slot the instances just covered; its CPU and
    peak RSS from its own rusage (wait4; NaN when it was killed after `timeout_s`), the Redis commands and AWS calls
    it made."""
    command = [sys.executable, "-m", "motion_meta_cli", "poll", "--once", "--json", "--interval", repr(interval_s)]
    if customers == 1:
        command += ["--customers", _name(0)]
    before = snapshot()
    with (folder / f"walk-{customers}.err").open("wb") as err:
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=err, env=env, cwd=folder, start_new_session=True
        )
    output: list[bytes] = []
    reader = threading.Thread(target=lambda: output.append(proc.stdout.read() if proc.stdout else b""), daemon=True)
    reader.start()
    cpu_s = rss_mb = float("nan")
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                cpu_s, rss_mb = usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024
                break
            time.sleep(0.05)
    finally:
        kill_group(proc)
        reader.join(timeout=10)
    after = snapshot()
    reports = [json.loads(line) for line in b"".join(output).decode(errors="replace").splitlines() if line[:1] == "{"]
    return Walk(
        customers=customers,
        report=reports[0] if len(reports) == 1 else None,
        returncode=proc.returncode,
        cpu_s=cpu_s,
        rss_mb=rss_mb,
        redis=sum((after.redis[port] - before.redis[port] for port in after.redis), Counter[str]()),
        aws=after.aws - before.aws,
        moto_busy_s=_minus(after.moto_busy_s, before.moto_busy_s),
        aws_abandoned=after.aws_abandoned - before.aws_abandoned,
    )


def cycles_of(
    instances: Sequence[Instance], snapshots: Sequence[Snapshot], args: argparse.Namespace, interval_s: float
) -> list[Cycle]:
    names = [_name(n) for n in range(args.customers)]
    coverage = {row.slot: row for row in slot_coverage([i.reports for i in instances], names, interval_s)}
    cycles = []
    for number in range(1, len(snapshots)):
        before, after = snapshots[number - 1], snapshots[number]
        reports = [(i, i.reports[number - 1]) for i in instances if len(i.reports) >= number]
        if not reports:
            break
        starts = [_epoch(r["started_at"]) for _, r in reports]
        ends = [start + float(r["duration_s"]) for start, (_, r) in zip(starts, reports, strict=True)]
        slots = {int(r["slot"]) for _, r in reports}
        notes = []
        if len(slots) != 1:
            notes.append(f"instances ran this cycle in different slots: {sorted(slots)}")
        row = coverage[min(slots)]
        if any(r["overrun"] for _, r in reports):
            notes.append(f"overrun: a cycle took longer than the {interval_s:.0f} s interval (raise --interval)")
        if number > 1:
            previous_end = max(
                _epoch(i.reports[number - 2]["started_at"]) + float(i.reports[number - 2]["duration_s"])
                for i in instances
                if len(i.reports) >= number - 1
            )
            if min(starts) < previous_end:
                notes.append("it began before every instance had ended the cycle before: counts overlap")
        nodes = {port: after.redis[port] - before.redis[port] for port in after.redis}
        busiest = max(nodes.values(), key=lambda calls: sum(calls.values()))
        redis_cpu = {port: after.redis_cpu_s[port] - before.redis_cpu_s[port] for port in after.redis_cpu_s}
        cycles.append(
            Cycle(
                label="cold" if number == 1 else "warm" if number == 2 else f"cycle {number}",
                wall_s=max(ends) - min(starts),
                fetched=row.fetched,
                split=row.split,
                duplicates=row.duplicates,
                misses=row.misses,
                failed=row.failed,
                redis=sum(nodes.values(), Counter[str]()),
                redis_busiest=busiest,
                redis_cpu_s=sum(redis_cpu.values()),
                redis_busiest_cpu_s=max(redis_cpu.values()),
                aws=after.aws - before.aws,
                moto_busy_s=_minus(after.moto_busy_s, before.moto_busy_s),
                aws_abandoned=after.aws_abandoned - before.aws_abandoned,
                cpu_s={k: after.cpu_s[k] - before.cpu_s[k] for k in after.cpu_s},
                hwm_mb=[instance.hwm_kb[number - 1] / 1024 for instance, _ in reports],
                instance_cpu_s=[
                    instance.cpu_s[number - 1] - (instance.cpu_s[number - 2] if number > 1 else 0.0)
                    for instance, _ in reports
                ],
                notes=notes,
            )
        )
    return cycles


def _minus(after: Counter[str], before: Counter[str]) -> Counter[str]:
    """`after - before` for counters of floats (Counter's own `-` drops what rounds to zero or below)."""
    return Counter({key: after[key] - before[key] for key in after})


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


# --- report ------------------------------------------------------------------------------------------------------


def _api(target: str) -> str:
    """`DynamoDB_20120810.BatchWriteItem` → `DynamoDB BatchWriteItem`; `secretsmanager.X` → `Secrets Manager X`."""
    service, _, api = target.partition(".")
    if service.startswith("DynamoDB"):
        return f"DynamoDB {api}"
    if service == "secretsmanager":
        return f"Secrets Manager {api}"
    return target


def print_table(setups: Sequence[Setup], customers: int) -> None:
    """Every cycle of every setup side by side: counts per customer (or per 1,000), time, memory and CPU."""
    columns = [cycle for setup in setups for cycle in setup.cycles]
    width = 20
    per_k = 1000 / customers

    def line(label: str, values: Sequence[str]) -> None:
        print(f"{label:<40}" + "".join(f"{value:>{width}}" for value in values))

    def breakdown(per_cycle: Sequence[Counter[str]], scale: float, digits: int, name: Callable[[str], str]) -> None:
        """One line per key that shows at `digits`, most frequent first; the rest summed as `other`."""
        keys = Counter[str]()
        for counts in per_cycle:
            keys.update(counts)
        shown = [key for key, n in keys.most_common() if n * scale / len(per_cycle) >= 0.5 * 10**-digits]
        for key in shown:
            line(f"  {name(key)}", [f"{counts[key] * scale:.{digits}f}" for counts in per_cycle])
        rest = [key for key in keys if key not in shown]
        if rest:
            line("  other", [f"{sum(counts[key] for key in rest) * scale:.{digits}f}" for counts in per_cycle])

    print()
    line("", [setup.name for setup in setups for _ in setup.cycles])
    line("", [cycle.label for cycle in columns])
    line("wall duration, s", [f"{c.wall_s:.1f}" for c in columns])
    line(f"customers fetched (of {customers})", [str(c.fetched) for c in columns])
    line("  by instance", [c.split for c in columns])
    line("duplicates", [str(c.duplicates) for c in columns])
    line("misses", ["n/a" if c.misses is None else str(c.misses) for c in columns])
    line("failed", [str(c.failed) for c in columns])
    line("Redis commands per customer", [f"{sum(c.redis.values()) / customers:.2f}" for c in columns])
    breakdown([c.redis for c in columns], 1 / customers, 2, str)
    line("  on the busiest node", [f"{sum(c.redis_busiest.values()) / customers:.2f}" for c in columns])
    line("Redis CPU per customer, µs", [f"{1e6 * c.redis_cpu_s / customers:.0f}" for c in columns])
    line("  on the busiest node", [f"{1e6 * c.redis_busiest_cpu_s / customers:.0f}" for c in columns])
    line("AWS calls per 1,000 customers", [f"{sum(c.aws.values()) * per_k:.1f}" for c in columns])
    breakdown([c.aws for c in columns], per_k, 1, _api)
    line(
        "  abandoned by boto3 and sent again",
        [f"{sum(c.aws_abandoned.values()) * per_k:.1f}" for c in columns],
    )
    line("moto busy (one call at a time), s", [f"{sum(c.moto_busy_s.values()):.1f}" for c in columns])
    for target in sorted({t for c in columns for t in c.aws}, key=_api):
        line(
            f"  ms per {_api(target).split()[-1]}",
            [f"{1000 * c.moto_busy_s[target] / c.aws[target]:.1f}" if c.aws[target] else "-" for c in columns],
        )
    line("peak RSS per instance, MB: max", [f"{max(c.hwm_mb):.0f}" for c in columns])
    line("                           min", [f"{min(c.hwm_mb):.0f}" for c in columns])
    line(
        "instance CPU per customer fetched, ms",
        [f"{1000 * sum(c.instance_cpu_s) / max(1, c.fetched):.2f}" for c in columns],
    )
    line("CPU s: the instances (sum)", [f"{sum(c.instance_cpu_s):.0f}" for c in columns])
    for server in ("emulator", "moto"):
        line(f"       {server}", [f"{c.cpu_s.get(server, 0.0):.0f}" for c in columns])
    line("       Redis (all nodes)", [f"{c.redis_cpu_s:.0f}" for c in columns])
    walked = [setup for setup in setups if len(setup.walks) == 2]
    if walked:
        print()
        print("one more instance: `poll --once` late in the last slot, every lease taken (it fetches nobody)")
        line("", [setup.name for setup in walked])
        pairs = [(setup.walks[0], setup.walks[1]) for setup in walked]
        line("cycle duration, s", [f"{w.report['duration_s']:.1f}" if w.report else "-" for _, w in pairs])
        line("  moto answering the Query (list), s", [f"{_query_s(w):.1f}" for _, w in pairs])
        line(
            "  customers claimed per second, the rest",
            [f"{w.customers / (w.report['duration_s'] - _query_s(w)):.0f}" if w.report else "-" for _, w in pairs],
        )
        line("  taken elsewhere", [str(w.report["taken_elsewhere"]) if w.report else "-" for _, w in pairs])
        line("  fetched", [str(w.report["fetched"]) if w.report else "-" for _, w in pairs])
        line("CPU s: over all (over one customer)", [f"{w.cpu_s:.1f} ({one.cpu_s:.1f})" for one, w in pairs])
        line(
            "CPU per customer walked, ms",
            [f"{1000 * (w.cpu_s - one.cpu_s) / max(1, w.customers - 1):.3f}" for one, w in pairs],
        )
        line("Redis commands per customer walked", [f"{sum(w.redis.values()) / w.customers:.2f}" for _, w in pairs])
        breakdown([w.redis for _, w in pairs], 1 / customers, 2, str)
        line("AWS calls", [str(sum(w.aws.values())) for _, w in pairs])
        breakdown([w.aws for _, w in pairs], 1, 0, _api)
        line("  of them abandoned by the client", [str(sum(w.aws_abandoned.values())) for _, w in pairs])
        line("peak RSS, MB", [f"{w.rss_mb:.0f}" for _, w in pairs])
        line("exit code", [str(w.returncode) for _, w in pairs])
    print()
    for setup in setups:
        print(f"{setup.name}: interval {setup.interval_s:.6f} s")
        for cycle in setup.cycles:
            for note in cycle.notes:
                print(f"  {cycle.label}: {note}")
        for note in setup.notes:
            print(f"  {note}")


def _query_s(walk: Walk) -> float:
    return sum(seconds for target, seconds in walk.moto_busy_s.items() if target.endswith(".Query"))


# --- main --------------------------------------------------------------------------------------------------------


def _terminate_on_sigterm() -> Callable[[], None]:
    """SIGTERM unwinds like Ctrl-C, so that every `finally` kills what it started."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, previous)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=20000)
    parser.add_argument("--instances", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=32, help="customers each instance fetches at once")
    parser.add_argument(
        "--interval", type=float, default=None, help="poll interval, s (default: customers / 80, at least 30)"
    )
    parser.add_argument("--cycles", type=int, default=2, help="cycles per setup: cold, warm, ...")
    parser.add_argument("--latency-s", type=float, default=0.05)
    parser.add_argument("--latency-jitter-s", type=float, default=0.1)
    parser.add_argument("--setups", default="single,cluster", help="comma-separated: single, cluster")
    parser.add_argument("--timeout", type=float, default=None, help="per setup, s (default: 3 intervals + 300)")
    parser.add_argument("--walk-timeout", type=float, default=300.0, help="s before the extra `poll --once` is killed")
    args = parser.parse_args()
    setups = [s.strip() for s in args.setups.split(",") if s.strip()]
    if min(args.customers, args.instances, args.concurrency, args.cycles) < 1:
        parser.error("--customers, --instances, --concurrency and --cycles must be at least 1")
    if not setups or set(setups) - {"single", "cluster"}:
        parser.error("--setups takes single and/or cluster")
    if args.interval is None:
        args.interval = max(30.0, args.customers / 80)
    if args.timeout is None:
        args.timeout = (args.cycles + 1) * args.interval + 300

    restore = _terminate_on_sigterm()
    work = Path(tempfile.mkdtemp(prefix="motion-meta-scale-"))
    started = time.monotonic()
    moto: subprocess.Popen[bytes] | None = None
    emulator: subprocess.Popen[bytes] | None = None
    proxy: CountingProxy | None = None
    try:
        moto, moto_port = start_moto(work)
        emulator, graph_url = start_emulator(
            work, "emulator", "--accept-any-token", "--latency-s", str(args.latency_s),
            "--latency-jitter-s", str(args.latency_jitter_s),
        )  # fmt: skip
        moto_url = f"http://127.0.0.1:{moto_port}"
        print(
            f"{args.customers} customers, {args.instances} instances × concurrency {args.concurrency}, "
            f"emulator latency {args.latency_s * 1000:.0f}-{(args.latency_s + args.latency_jitter_s) * 1000:.0f} ms, "
            f"no rate limit; interval {args.interval:g} s; {os.cpu_count()} CPUs"
        )
        seconds = seed(moto_url, args.customers)
        print(f"seeded {args.customers} customers and secrets into moto in {seconds:.0f} s", flush=True)
        preflight(work, graph_url, moto_url, args.customers)
        print("poll --once fetched 3 seeded customers: the app reads the seeded shape", flush=True)
        proxy = CountingProxy(moto_port)
        proxy.start()
        servers = {"emulator": emulator.pid, "moto": moto.pid}
        results = [run_setup(kind, work, graph_url, proxy, servers, args) for kind in setups]
        print_table(results, args.customers)
        print(f"longest wait of an AWS request for its turn at moto: {proxy.longest_wait_s:.2f} s")
    finally:
        if proxy is not None:
            proxy.stop()
        if emulator is not None:
            kill(emulator)
        if moto is not None:
            kill_group(moto)
        shutil.rmtree(work, ignore_errors=True)
        restore()
    print(f"total {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
