"""`poll --interval` riding out what it depends on: DynamoDB (moto in its own process) killed mid-cycle, and
SQLite files it cannot write."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from typer.testing import CliRunner

from motion_meta_cli.app import AppHandler
from motion_meta_cli.cli.main import app as cli
from motion_meta_cli.config import Settings
from tests.integration.conftest import free_port
from tests.integration.helpers import emulator_process, invoke_cli

pytestmark = pytest.mark.integration

TABLE = "poll-outage"


class MotoProcess:
    """moto's server in a child process, so that a test can kill it and start it again on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                requests.get(f"{self.url}/moto-api/", timeout=1)
                return
            except requests.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("moto did not start")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@pytest.fixture
def moto(monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoProcess]:
    server = MotoProcess()
    server.start()
    env = {"AWS_ENDPOINT_URL": server.url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    for name, value in {**env, "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    yield server
    server.kill()


def _history_rows(url: str) -> int:
    import boto3

    client = boto3.client("dynamodb", endpoint_url=url, region_name="us-east-1")
    pages = client.get_paginator("scan").paginate(
        TableName=TABLE,
        FilterExpression="begins_with(sk, :h)",
        ExpressionAttributeValues={":h": {"S": "HISTORY#"}},
    )
    return sum(page["Count"] for page in pages)


def test_dynamodb_killed_mid_cycle_polling_goes_on_and_every_result_is_stored_or_counted(
    tmp_path: Path, moto: MotoProcess
) -> None:
    home = tmp_path / "home"
    env = {"MOTION_META_HOME": str(home), "MOTION_META_STORE_URL": f"dynamodb://{TABLE}"}
    assert invoke_cli("store", "init", env=env).code == 0
    with AppHandler(Settings(motion_meta_home=home, motion_meta_store_url=f"dynamodb://{TABLE}")) as app:
        for n in range(20):
            app.store.add_customer(f"c{n:02d}")
            app.secrets.put_secret(f"c{n:02d}", f"EAAoutagecustomer{n:02d}xxxxxxxx")
    with emulator_process("--accept-any-token", "--latency-s", "0.3") as url:
        poll = subprocess.Popen(
            [sys.executable, "-m", "motion_meta_cli", "poll", "--interval", "2", "--concurrency", "4", "--json"],
            env={**os.environ, **env, "META_GRAPH_URL": url},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert poll.stdout is not None
            reports = [json.loads(poll.stdout.readline())]
            while not (reports[-1]["fetched"] == 20 and reports[-1]["unsaved"] == 0):  # a cycle fetched and stored
                reports.append(json.loads(poll.stdout.readline()))
            seen = requests.get(f"{url}/__stats", timeout=5).json()["requests"]
            while requests.get(f"{url}/__stats", timeout=5).json()["requests"] <= seen:  # the next cycle has begun
                time.sleep(0.01)
            moto.kill()  # before any of that cycle's answers could be stored
            killed = len(reports)
            while sum(r["fetched"] == 20 and r["unsaved"] > 0 for r in reports[killed:]) < 2:  # polling goes on
                reports.append(json.loads(poll.stdout.readline()))
            moto.start()  # empty, as a restarted moto is: the table comes back with `store init`
            assert invoke_cli("store", "init", env=env).code == 0
            while (report := json.loads(poll.stdout.readline()))["unsaved"] > 0:
                reports.append(report)
            reports.append(report)
            poll.send_signal(signal.SIGTERM)
            out, err = poll.communicate(timeout=60)
        finally:
            if poll.poll() is None:
                poll.kill()
            poll.communicate()  # closes the pipes however the test went
    assert poll.returncode == 0, err[-800:]
    reports += [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert "Traceback" not in err
    since_the_kill = reports[killed:]
    expected = sum(r["fetched"] + r["failed"] - r["lost"] for r in since_the_kill)
    assert expected >= 40
    assert _history_rows(moto.url) == expected, "every result fetched during the outage was stored"


def test_sqlite_files_that_cannot_be_written_end_poll_with_one_line_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import motion_meta_cli.storage.sqlite as sqlite_plumbing

    runner = CliRunner()
    with emulator_process("--accept-any-token") as url:
        env = {"META_GRAPH_URL": url, "META_ACCESS_TOKEN": "EAAsqlitelockedpoll000000"}
        assert runner.invoke(cli, ["poll", "--once"], env=env).exit_code == 0  # creates the files
        monkeypatch.setattr(sqlite_plumbing, "BUSY_TIMEOUT_S", 0.2)
        home = Path(os.environ["MOTION_META_HOME"])
        for name in ("store.db", "cache.db", "cache.moderation.db"):
            holder = sqlite3.connect(home / name, isolation_level=None)
            holder.execute("BEGIN IMMEDIATE")  # a write transaction held past the busy timeout
            try:
                run = runner.invoke(cli, ["poll", "--once", "--json"], env=env)
            finally:
                holder.execute("ROLLBACK")
                holder.close()
            assert run.exit_code in (0, 8), (name, run.exit_code, run.output)
            assert "Traceback" not in run.output and "unexpected" not in run.stderr, (name, run.stderr)
            if run.exit_code == 8:
                errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
                assert len(errors) == 1 and "locked" in errors[0], (name, run.stderr)


def test_a_locked_moderation_file_moves_moderation_in_process_and_the_cycle_fetches_all() -> None:
    runner = CliRunner()
    with emulator_process("--accept-any-token") as url:
        env = {"META_GRAPH_URL": url, "META_ACCESS_TOKEN": "EAAsqlitelockedmoderation00"}
        assert runner.invoke(cli, ["moderation", "show"], env=env).exit_code == 0  # creates the file
        path = Path(os.environ["MOTION_META_HOME"]) / "cache.moderation.db"
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # held by "another process" for the whole run
        try:
            run = runner.invoke(cli, ["poll", "--once", "--json"], env=env)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
    assert run.exit_code == 0, run.output
    assert json.loads(run.stdout)["fetched"] == 1
    assert "moderating in this process only" in run.stderr
