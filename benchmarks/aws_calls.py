"""AWS calls per cycle: how many Secrets Manager and DynamoDB requests one `poll` cycle makes per 1,000 customers.

    python benchmarks/aws_calls.py [--customers 1000] [--concurrency 32]
    PYTHONPATH=/path/to/an/older/checkout python benchmarks/aws_calls.py    # the same, for that code

moto's server (AWS over HTTP) on a free port holds the customers (DynamoDB table) and their tokens (one
secret each); an in-process emulator without limits answers `/me`; the cache is a fresh SQLite file. Two
cycles run through `Poller` in this process, each in a fresh slot: cold (nothing held: every token is read)
and warm (tokens held, markers current). Every call the boto3 clients motion-meta makes is counted by API
(botocore's `before-call` event), seeding excluded. Which motion-meta is measured is whichever `import
motion_meta_cli` finds, so an older checkout on PYTHONPATH gives the "before" column.
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import motion_meta_cli
from motion_meta_cli.app import AppHandler
from motion_meta_cli.config import Settings
from motion_meta_cli.emulator import EmulatorConfig, GraphEmulator, default_directory
from motion_meta_cli.poller import Poller
from motion_meta_cli.storage import aws_secrets, dynamodb_store

INTERVAL_S = 3600.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _counting(calls: Counter[str], make: Any) -> Any:
    def client(service: str, **kwargs: Any) -> Any:
        made = make(service, **kwargs)
        made.meta.events.register("before-call", lambda model, **_: calls.update([f"{service}:{model.name}"]))
        return made

    return client


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()

    from moto.server import ThreadedMotoServer

    port = _free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    os.environ.update(
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )
    calls: Counter[str] = Counter()
    aws_secrets.aws_client = _counting(calls, aws_secrets.aws_client)  # type: ignore[attr-defined]
    dynamodb_store.aws_client = _counting(calls, dynamodb_store.aws_client)  # type: ignore[attr-defined]
    home = Path(tempfile.mkdtemp(prefix="motion-meta-aws-calls-"))
    config = EmulatorConfig(users=default_directory(accept_any_token=True))
    try:
        with GraphEmulator(config) as emulator:
            settings = Settings(
                _env_file=None,
                motion_meta_home=home,
                meta_graph_url=emulator.url,
                motion_meta_store_url="dynamodb://motion-meta-bench",
                motion_meta_secrets_url="aws-secretsmanager://motion-meta/bench/",
                motion_meta_concurrency=args.concurrency,
            )
            names = [f"c{n:06d}" for n in range(args.customers)]
            with AppHandler(settings) as app:
                app.store.initialize()
                for name in names:
                    app.store.add_customer(name)
                app.secrets.put_secrets({name: f"EAAawscalls{n:06d}xxxxxxxxxx" for n, name in enumerate(names)})
            print(f"motion-meta {motion_meta_cli.__version__} from {Path(motion_meta_cli.__file__).parent}")
            print(f"{args.customers} customers, concurrency {args.concurrency}; AWS calls per 1,000 customers")
            with AppHandler(settings) as app:
                now = [0.0]  # each cycle starts at its slot's start, as an instance on time does
                poller = Poller(app, interval_s=INTERVAL_S, wall=lambda: now[0])
                for label, slot in (("cold", 1), ("warm", 2)):
                    now[0] = slot * INTERVAL_S
                    calls.clear()
                    report = poller.run_cycle(slot, slot, threading.Event())
                    per = 1000 / args.customers
                    shown = ", ".join(f"{api} {count * per:.0f}" for api, count in sorted(calls.items()))
                    print(f"  {label}: fetched {len(report.fetched)}; {sum(calls.values()) * per:.0f} calls: {shown}")
    finally:
        moto.stop()


if __name__ == "__main__":
    main()
