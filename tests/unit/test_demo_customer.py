"""The demo customer (`motion_test_user`) exists only where META_ACCESS_TOKEN seeds it, is added once, and
never takes back what the user did: a removal stands, and a token set with `credentials set` wins."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from motion_meta_cli.cli.main import app

Invoke = Callable[..., Result]
DEMO = "motion_test_user"
ENV_TOKEN = "EAAdemoFromTheEnvironment0001"


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Iterator[Invoke]:
    logger = logging.getLogger("motion_meta_cli")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    runner = CliRunner()

    def invoke(*args: str, token: str | None = ENV_TOKEN, stdin: str | None = None) -> Result:
        env = {"COLUMNS": "200", "META_ACCESS_TOKEN": token}
        return runner.invoke(app, list(args), env=env, input=stdin)

    yield invoke
    logger.handlers[:], logger.level, logger.propagate = saved


def _customers(cli: Invoke, token: str | None = ENV_TOKEN) -> list[str]:
    run = cli("customers", "list", "--json", token=token)
    assert run.exit_code == 0, run.output
    return [entry["name"] for entry in json.loads(run.stdout)["customers"]]


def _stored_token(home: Path, customer: str) -> str:
    return str(json.loads((home / "secrets.json").read_text())[customer]["token"])


def test_without_meta_access_token_there_is_no_demo_customer(cli: Invoke) -> None:
    assert _customers(cli, token=None) == []
    assert cli("customers", "add", "acme", token=None).exit_code == 0
    assert _customers(cli, token=None) == ["acme"]


def test_the_environment_seeds_the_demo_customer_once_and_a_removal_stands(cli: Invoke) -> None:
    assert _customers(cli) == [DEMO]
    assert cli("customers", "remove", DEMO).exit_code == 0
    assert _customers(cli) == [], "the next command with META_ACCESS_TOKEN set did not add it back"
    assert _customers(cli, token="EAAanotherEnvironmentToken01") == [], "nor does a new token"


def test_a_token_set_by_hand_wins_over_the_environment(cli: Invoke, home: Path) -> None:
    assert _customers(cli) == [DEMO]
    assert _stored_token(home, DEMO) == ENV_TOKEN
    by_hand = "EAAsetByHandWithCredentialsSet1"
    assert cli("credentials", "set", "--customer", DEMO, stdin=by_hand + "\n").exit_code == 0
    assert _customers(cli) == [DEMO]
    assert _stored_token(home, DEMO) == by_hand, "the environment's unchanged token did not come back"
    run = cli("customers", "list", token="EAAaNewTokenInTheEnvironment1")
    assert _stored_token(home, DEMO) == by_hand, "a changed environment token does not replace it either"
    assert "set with `credentials set`" in run.stderr


def test_a_changed_environment_token_replaces_the_one_it_seeded(cli: Invoke, home: Path) -> None:
    assert _customers(cli) == [DEMO]
    newer = "EAAaNewerEnvironmentToken0001"
    assert _customers(cli, token=newer) == [DEMO]
    assert _stored_token(home, DEMO) == newer


def test_the_store_notes_a_fingerprint_never_the_token(cli: Invoke, home: Path) -> None:
    assert _customers(cli) == [DEMO]
    for name in ("store.db", "cache.db"):
        assert ENV_TOKEN.encode() not in (home / name).read_bytes(), name


def test_a_missing_token_names_the_command_that_fixes_it(cli: Invoke) -> None:
    assert cli("customers", "add", "acme", token=None).exit_code == 0
    run = cli("fetch", "--customer", "acme", token=None)
    assert run.exit_code == 3
    assert "run `motion-meta credentials set --customer acme`" in run.stderr
    assert "META_ACCESS_TOKEN" not in run.stderr, "that variable is the demo customer's token only"


def test_a_lost_demo_token_is_stored_again_from_the_environment(cli: Invoke, home: Path) -> None:
    assert _customers(cli) == [DEMO]
    (home / "secrets.json").unlink()
    assert _customers(cli) == [DEMO]
    assert _stored_token(home, DEMO) == ENV_TOKEN


def test_the_first_command_of_a_fresh_home_may_be_any_that_names_the_demo_customer(cli: Invoke) -> None:
    run = cli("credentials", "show", "--customer", DEMO, "--json")
    assert run.exit_code == 0, run.output
    assert json.loads(run.stdout)["credentials"][0]["stored"] is True
