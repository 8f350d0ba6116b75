"""Commands over the embedded SQLite files, in-process (CliRunner), as a user meets them: failures included."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from motion_meta_cli.cli.main import app
from motion_meta_cli.credentials import REJECTED_PREFIX, Marker, marker_key
from motion_meta_cli.storage import sqlite
from motion_meta_cli.storage.local_secrets import LocalSecretsStore
from motion_meta_cli.storage.sqlite_cache import SQLiteCache
from motion_meta_cli.storage.sqlite_store import SQLiteCustomerStore

Invoke = Callable[..., Result]


@pytest.fixture
def cli() -> Iterator[Invoke]:
    """Run `motion-meta ARGS` in this process; the logging the command sets up is undone afterwards."""
    logger = logging.getLogger("motion_meta_cli")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    runner = CliRunner()
    yield lambda *args: runner.invoke(app, list(args), env={"COLUMNS": "200"})
    logger.handlers[:], logger.level, logger.propagate = saved


def test_a_store_locked_by_another_process_still_reads_and_a_write_exits_8_with_one_line(
    cli: Invoke, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite, "BUSY_TIMEOUT_S", 0.05)
    SQLiteCustomerStore(home / "store.db").close()
    other = sqlite3.connect(home / "store.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        listed = cli("customers", "list")
        run = cli("customers", "add", "acme")
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert listed.exit_code == 0, "a read goes on beside another process's write (WAL)"
    assert run.exit_code == 8
    assert run.stderr.splitlines() == [
        f"error: the SQLite file {home / 'store.db'} is locked by another process (waited 0.05 s); "
        "try again once that process is done"
    ]
    assert "Traceback" not in run.output
    assert cli("customers", "add", "acme").exit_code == 0, "the same command works once the lock is gone"


def test_a_store_that_is_not_a_database_exits_3_saying_how_to_recover(cli: Invoke, home: Path) -> None:
    home.mkdir()
    (home / "store.db").write_text("not a database\n" * 100)
    run = cli("customers", "add", "acme")
    assert run.exit_code == 3
    assert len(run.stderr.splitlines()) == 1
    assert run.stderr.startswith(f"error: the SQLite file {home / 'store.db'} is not a usable database")
    assert "move it aside and run `motion-meta store init`" in run.stderr


def test_credentials_list_and_show_say_rejected(cli: Invoke, home: Path) -> None:
    store = SQLiteCustomerStore(home / "store.db")
    store.add_customer("acme")
    store.close()
    secrets = LocalSecretsStore(home / "secrets.json")
    version = secrets.put_secret("acme", "EAABacmeSecretToken0123456789abcd4f2c")
    cache = SQLiteCache(home / "cache.db")
    cache.set(marker_key("acme"), Marker(version, None).dump())
    cache.set(REJECTED_PREFIX + "acme", version)  # what poll records when Meta rejects this version
    cache.close()

    listed = cli("credentials", "list", "--json")
    assert listed.exit_code == 0, listed.output
    markers = {row["customer"]: row["marker"] for row in json.loads(listed.stdout)["credentials"]}
    assert markers == {"acme": "rejected"}
    shown = cli("credentials", "show", "--customer", "acme")
    assert shown.exit_code == 0, shown.output
    row = next(line for line in shown.stdout.splitlines() if "acme" in line)
    assert "rejected" in row and "EAAB…4f2c" in row


def test_local_state_is_private_under_any_umask(cli: Invoke, home: Path) -> None:
    import stat

    old = os.umask(0)
    try:
        assert cli("customers", "add", "acme").exit_code == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    for name in ("store.db", "cache.db"):
        if (home / name).exists():
            assert stat.S_IMODE((home / name).stat().st_mode) == 0o600, name


def test_an_empty_store_file_is_said_to_be_new(cli: Invoke, home: Path) -> None:
    home.mkdir(mode=0o700)
    (home / "store.db").write_bytes(b"")
    an_hour_ago = time.time() - 3600  # emptied long ago, not just made by another process starting too
    os.utime(home / "store.db", (an_hour_ago, an_hour_ago))
    run = cli("customers", "list")
    assert run.exit_code == 0
    assert "store.db was an empty file (0 bytes)" in run.stderr


def test_customers_remove_is_safe_to_repeat_like_add(cli: Invoke) -> None:
    assert cli("customers", "add", "acme").exit_code == 0
    assert cli("customers", "remove", "acme").stdout.strip() == "removed acme"
    again = cli("customers", "remove", "acme")
    assert again.exit_code == 0
    assert again.stdout.strip() == "acme is not a customer; nothing to remove"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("poll", "--once", "--customers", ""), "--customers names nobody"),
        (("poll", "--once", "--customers", ",,"), "--customers names nobody"),
        (("poll", "--once", "--cycles", "3"), "--once runs one cycle"),
    ],
)
def test_poll_refuses_options_that_cannot_mean_what_they_say(cli: Invoke, args: tuple[str, ...], message: str) -> None:
    run = cli(*args)
    assert run.exit_code == 2, run.output
    assert message in run.stderr


@pytest.mark.parametrize(
    ("args", "start"),
    [
        (("fetch", "--bogus"), "error: No such option: --bogus (see `motion-meta fetch --help`)"),
        (("poll", "--interval", "-1"), "error: Invalid value for '--interval'"),
        (("nonsense",), "error: No such command 'nonsense'"),
    ],
)
def test_a_usage_error_is_one_line_with_exit_2(cli: Invoke, args: tuple[str, ...], start: str) -> None:
    run = cli(*args)
    assert run.exit_code == 2
    assert len(run.stderr.splitlines()) == 1, run.stderr
    assert run.stderr.startswith(start), run.stderr


def test_show_prints_the_stored_snapshot_and_history_also_after_a_removal(cli: Invoke, home: Path) -> None:
    from datetime import UTC, datetime

    from motion_meta_cli.errors import NetworkError
    from motion_meta_cli.models import FetchResult, MetaUser

    store = SQLiteCustomerStore(home / "store.db")
    store.add_customer("acme")
    first = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    store.save_result(FetchResult(customer="acme", fetched_at=first, user=MetaUser(id="1", name="Ada")))
    failed = FetchResult(customer="acme", fetched_at=first.replace(hour=13), error=NetworkError("timed out"))
    store.save_result(failed)
    store.close()

    shown = cli("show", "--customer", "acme", "--json")
    assert shown.exit_code == 0, shown.output
    payload = json.loads(shown.stdout)
    assert payload["status"] == "active"
    assert payload["snapshot"]["user"]["name"] == "Ada"
    assert [entry["ok"] for entry in payload["history"]] == [False, True], "newest first"
    assert payload["history"][0]["error_kind"] == "network"
    table = cli("show", "--customer", "acme")
    assert "Ada" in table.stdout and "timed out" in table.stdout

    assert cli("customers", "remove", "acme").exit_code == 0
    removed = json.loads(cli("show", "--customer", "acme", "--json", "--history", "1").stdout)
    assert removed["status"] == "removed" and len(removed["history"]) == 1
    unknown = cli("show", "--customer", "ghost")
    assert unknown.exit_code == 3 and "unknown customer 'ghost'" in unknown.stderr


def test_customers_import_adds_customers_and_tokens_in_one_write(cli: Invoke, home: Path) -> None:
    lines = [json.dumps({"customer": f"c{n:03d}", "token": f"EAAimported{n:03d}token000000"}) for n in range(300)]
    lines.append(json.dumps({"customer": "no_token_yet"}))
    runner = CliRunner()
    run = runner.invoke(app, ["customers", "import"], input="\n".join(lines) + "\n")
    assert run.exit_code == 0, run.output
    assert run.stdout.strip() == "imported 301 customer(s), 300 token(s)"
    assert "EAAimported" not in run.output
    stored = json.loads((home / "secrets.json").read_text())
    assert stored["c042"]["token"] == "EAAimported042token000000" and "no_token_yet" not in stored
    listed = json.loads(cli("customers", "list", "--json").stdout)["customers"]
    assert len(listed) == 301


@pytest.mark.parametrize(
    ("stdin", "message"),
    [
        ('{"customer": "ok", "token": "EAAfine000000000000"}\nEAAnotJSON\n', "stdin line 2 is not JSON"),
        ('{"customer": "a b"}\n', "stdin line 1: invalid customer name"),
        ('{"customer": "acme", "token": "EAA with spaces"}\n', "stdin line 1: the token contains whitespace"),
        ('["acme"]\n', "stdin line 1 is not an object"),
        ("\n", "no customers on stdin"),
    ],
)
def test_customers_import_checks_every_line_before_writing(cli: Invoke, home: Path, stdin: str, message: str) -> None:
    run = CliRunner().invoke(app, ["customers", "import"], input=stdin)
    assert run.exit_code == 2, run.output
    assert message in run.stderr
    assert "EAAfine" not in run.stderr and "EAAnot" not in run.stderr and "with spaces" not in run.stderr
    assert not (home / "secrets.json").exists(), "nothing was written"
