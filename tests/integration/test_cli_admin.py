"""`customers`, `credentials` and `store` commands on the embedded defaults, as a user runs them."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from motion_meta_cli.emulator import DEMO_TOKEN, EmulatorConfig, GraphEmulator, default_directory
from tests.integration.helpers import invoke_cli

pytestmark = pytest.mark.integration

TOKEN = "EAABacmeSecretToken0123456789abcd4f2c"


@pytest.fixture
def emulator() -> Iterator[GraphEmulator]:
    with GraphEmulator(EmulatorConfig(users=default_directory(accept_any_token=True))) as server:
        yield server


def test_customers_add_list_remove(tmp_path: Path) -> None:
    assert invoke_cli("customers", "add", "acme").code == 0
    listed = invoke_cli("customers", "list", "--json")
    assert listed.code == 0
    assert [c["name"] for c in json.loads(listed.stdout)["customers"]] == ["acme"], "no demo without its token"
    table = invoke_cli("customers", "list")
    assert "acme" in table.stdout
    assert invoke_cli("customers", "remove", "acme").code == 0
    gone = invoke_cli("customers", "remove", "acme")
    assert (gone.code, gone.stdout.strip()) == (0, "acme is not a customer; nothing to remove"), "safe to repeat"
    bad = invoke_cli("customers", "add", "a b")
    assert bad.code == 2 and "invalid customer name" in bad.stderr


def test_credentials_set_show_list_expire_never_print_the_token(tmp_path: Path, emulator: GraphEmulator) -> None:
    env = {"META_GRAPH_URL": emulator.url}
    invoke_cli("customers", "add", "acme")
    invoke_cli("customers", "add", "globex")  # no token stored
    stored = invoke_cli("credentials", "set", "--customer", "acme", input=TOKEN + "\n")
    assert stored.code == 0, stored.stderr
    secrets_file = tmp_path / "home" / "secrets.json"
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    shown = invoke_cli("credentials", "show", "--customer", "acme", "--json")
    status = json.loads(shown.stdout)["credentials"][0]
    assert (status["stored"], status["token"], status["marker"]) == (True, "EAAB…4f2c", "missing")
    checked = invoke_cli("credentials", "check", "--customer", "acme", env=env)
    assert checked.code == 0, checked.stderr
    assert checked.stdout.startswith("valid: acme's token belongs to Emulated User")
    listed = json.loads(invoke_cli("credentials", "list", "--json").stdout)["credentials"]
    by_name = {row["customer"]: row for row in listed}
    assert by_name["acme"]["marker"] == "current"
    assert by_name["globex"]["stored"] is False
    table = invoke_cli("credentials", "list")
    assert "EAAB…4f2c" in table.stdout and "none stored" in table.stdout
    expired = invoke_cli("credentials", "expire", "--customer", "acme")
    assert expired.stdout.strip() == "expired 1 marker(s) of 1 customer(s)"
    assert invoke_cli("credentials", "expire", "--all").code == 0
    outputs = [stored, shown, checked, table, expired]
    assert all(TOKEN not in run.stdout + run.stderr for run in outputs)
    for path in (tmp_path / "home").iterdir():
        if path.name != "secrets.json":
            assert TOKEN.encode() not in path.read_bytes()


def test_credentials_check_reports_a_rejected_token(tmp_path: Path) -> None:
    with GraphEmulator(EmulatorConfig()) as strict:  # knows only the demo users
        invoke_cli("customers", "add", "acme")
        invoke_cli("credentials", "set", "--customer", "acme", input=TOKEN)
        run = invoke_cli("credentials", "check", "--customer", "acme", env={"META_GRAPH_URL": strict.url})
    assert run.code == 4
    assert "Meta rejected the access token of customer 'acme'" in run.stderr


@pytest.mark.parametrize(
    ("args", "stdin", "code", "message"),
    [
        (("credentials", "set", "--customer", "acme"), "", 2, "the token is empty"),
        (("credentials", "set", "--customer", "acme"), "EAA with spaces", 2, "whitespace"),
        (("credentials", "set", "--customer", "ghost"), TOKEN, 3, "unknown customer 'ghost'"),
        (("credentials", "expire"), None, 2, "exactly one of --customer NAME or --all"),
        (("credentials", "show", "--customer", "ghost"), None, 3, "unknown customer 'ghost'"),
        (("credentials", "set", "--customer", "acme", TOKEN), None, 2, "must not be passed as an argument"),
    ],
)
def test_credentials_bad_input(
    tmp_path: Path, args: tuple[str, ...], stdin: str | None, code: int, message: str
) -> None:
    invoke_cli("customers", "add", "acme")
    run = invoke_cli(*args, input=stdin)
    assert run.code == code, run.stderr
    assert message in run.stderr
    assert TOKEN not in run.stderr + run.stdout
    assert "with spaces" not in run.stderr


def test_store_init_is_safe_to_run_twice(tmp_path: Path) -> None:
    first = invoke_cli("store", "init")
    second = invoke_cli("store", "init")
    assert (first.code, second.code) == (0, 0)
    assert first.stdout.startswith("created SQLite store")
    assert "already exists" in second.stdout


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("MOTION_META_CACHE_URL", "memcached://x", "MOTION_META_CACHE_URL 'memcached://x' is not a supported URL"),
        ("MOTION_META_STORE_URL", "dynamodb://", "MOTION_META_STORE_URL 'dynamodb://' names no valid table"),
        ("MOTION_META_SECRETS_URL", "aws-secretsmanager://", "names no valid secret prefix"),
        ("MOTION_META_CACHE_URL", "sqlite://", "names no file"),
    ],
)
def test_bad_backend_urls_fail_at_start_up(tmp_path: Path, variable: str, value: str, message: str) -> None:
    run = invoke_cli("customers", "list", env={variable: value})
    assert run.code == 3
    assert message in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_demo_token_from_the_environment_is_seeded(tmp_path: Path) -> None:
    run = invoke_cli(
        "credentials",
        "show",
        "--customer",
        "motion_test_user",
        "--json",
        env={"META_ACCESS_TOKEN": DEMO_TOKEN},
    )
    assert json.loads(run.stdout)["credentials"][0]["stored"] is True
