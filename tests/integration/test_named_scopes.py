"""Scopes Meta names are shared: a business use case throttled for one customer holds every customer of that
business, checked at the emulator over HTTP (the CLI runs in-process)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from motion_meta_cli.cli.main import app
from motion_meta_cli.emulator import EmulatorConfig, GraphEmulator, default_directory

pytestmark = pytest.mark.integration

TOKENS = {"alpha": "EAAbusinessalpha000000000000", "beta": "EAAbusinessbeta0000000000000"}


@pytest.fixture
def emulator() -> Iterator[GraphEmulator]:
    # Every user belongs to the emulator's one business; its ads_management use case allows 4 calls a minute.
    config = EmulatorConfig(users=default_directory(accept_any_token=True), buc_limit=4, window_s=60)
    with GraphEmulator(config) as server:
        yield server


def test_a_business_use_case_throttled_for_one_customer_holds_the_others(emulator: GraphEmulator) -> None:
    runner = CliRunner()
    env = {"META_GRAPH_URL": emulator.url, "META_RATE_WINDOW_S": "60", "META_PLATFORM__THROTTLE__PACING": "false"}
    for customer, token in TOKENS.items():
        assert runner.invoke(app, ["customers", "add", customer], env=env).exit_code == 0
        assert runner.invoke(app, ["credentials", "set", "--customer", customer], env=env, input=token).exit_code == 0
        first = runner.invoke(app, ["fetch", "--customer", customer], env=env)
        assert first.exit_code == 0, first.output  # its answer named the business use case
    impatient = {**env, "META_PLATFORM__THROTTLE__GIVE_UP_AFTER_S": "0"}
    for _ in range(5):  # alpha runs into the business's limit
        run = runner.invoke(app, ["fetch", "--customer", "alpha"], env=impatient)
        if run.exit_code == 5:
            break
        assert run.exit_code == 0, run.output
    assert emulator.stats()["throttled_by_code"] == {"80004": 1}
    shown = runner.invoke(app, ["moderation", "show", "--json"], env=env)
    assert "buc:1234567890:ads_management" in shown.stdout

    sent, blocked = emulator.stats()["requests"], emulator.stats()["blocked_arrivals_by_scope"]["business_use_case"]
    beta = runner.invoke(app, ["fetch", "--customer", "beta"], env=impatient)
    assert beta.exit_code == 5, beta.output
    assert "buc:1234567890:ads_management" in beta.stderr
    assert emulator.stats()["requests"] == sent, "beta sent nothing into the block it shares"
    assert emulator.stats()["blocked_arrivals_by_scope"]["business_use_case"] == blocked == 1, "alpha's one"
