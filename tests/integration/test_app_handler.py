"""AppHandler and the Lambda entry point against the emulator over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from motion_meta_cli import lambda_handler
from motion_meta_cli.app import AppHandler
from motion_meta_cli.config import Settings
from motion_meta_cli.emulator import DEMO_TOKEN, EmulatorConfig, GraphEmulator, default_directory
from motion_meta_cli.errors import UnknownCustomerError, UsageError
from motion_meta_cli.lambda_handler import handler
from motion_meta_cli.moderation.rules import INSTANCES

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def fresh_execution_environment() -> Iterator[None]:
    """Each test is a new Lambda execution environment: the AppHandler it builds is closed afterwards."""
    yield
    if lambda_handler._app is not None:
        lambda_handler._app.close()
        lambda_handler._app = None


class Context:
    """The part of Lambda's context object the handler reads."""

    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def test_handle_request_fetches_every_active_customer(home: Path) -> None:
    with GraphEmulator(EmulatorConfig(users=default_directory(accept_any_token=True))) as server:
        settings = Settings(meta_graph_url=server.url, meta_access_token=DEMO_TOKEN, motion_meta_home=home)
        with AppHandler(settings) as app:
            for n in range(5):
                app.store.add_customer(f"customer{n}")
                app.secrets.put_secret(f"customer{n}", f"EAAcustomer{n:02d}-token-xxxxxxxx")
            app.store.add_customer("no_token")
            report = app.handle_request()
            assert set(report.fetched) == {f"customer{n}" for n in range(5)} | {"motion_test_user"}
            assert list(report.failed) == ["no_token"]
            assert {r.customer for r in report.results} == set(report.fetched) | {"no_token"}
            assert len(set(server.stats()["per_user"])) == 6, "each customer was fetched with its own token"
            assert app.store.latest("customer3") is not None
            with pytest.raises(UnknownCustomerError):
                app.handle_request(["ghost"])


def test_an_instance_announces_itself_while_it_works_and_not_while_it_rests(home: Path) -> None:
    """A Lambda environment frozen between invocations must not look like an instance cut off (the others
    would hold its share of the budgets for a window)."""
    with GraphEmulator(EmulatorConfig(users=default_directory(accept_any_token=True))) as server:
        settings = Settings(meta_graph_url=server.url, meta_access_token=DEMO_TOKEN, motion_meta_home=home)
        with AppHandler(settings) as app:

            def instances() -> set[str]:
                return set(app.moderator.state.read([INSTANCES])[1].get(INSTANCES, {}).get("instances", {}))

            assert app.handle_request().fetched == ["motion_test_user"]
            assert instances() == {app.moderator.presence.me}
            app.rest()
            assert instances() == set()
            app.handle_request()
            assert instances() == {app.moderator.presence.me}, "the next invocation announces it again"
        with AppHandler(settings) as other:
            assert INSTANCES not in other.moderator.state.read([INSTANCES])[1], "it left when it closed"


def test_lambda_handler_uses_the_environment(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with GraphEmulator(EmulatorConfig()) as server:
        monkeypatch.setenv("META_GRAPH_URL", server.url)
        monkeypatch.setenv("META_ACCESS_TOKEN", DEMO_TOKEN)
        out = handler({"customers": ["motion_test_user"]}, None)
    assert (out["fetched"], out["failed"], out["skipped"]) == (["motion_test_user"], {}, [])
    assert out["results"][0]["name"] == "Motion Test User"
    with pytest.raises(UsageError):
        handler({"customers": "motion_test_user"})


def test_warm_invocations_reuse_one_app_handler_and_a_pause_longer_than_the_invocation_is_deferred(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with GraphEmulator(EmulatorConfig(users=default_directory(accept_any_token=True))) as server:
        monkeypatch.setenv("META_GRAPH_URL", server.url)
        monkeypatch.setenv("META_ACCESS_TOKEN", DEMO_TOKEN)
        first = handler({}, Context(60_000))
        built = lambda_handler._app
        assert (first["fetched"], first["warm"]) == (["motion_test_user"], False)
        assert built is not None
        # Meta paused the app for ten minutes; this invocation has 20 s left.
        built.moderator.state.update(
            "app",
            lambda record, now: {**(record or {}), "cooldown_until_ms": now + 600_000, "expires_ms": now + 600_000},
        )
        second = handler({}, Context(20_000))
    assert second["warm"] is True and lambda_handler._app is built, "the same AppHandler served both"
    assert second["fetched"] == [] and second["failed"] == {}
    assert 590 < second["deferred"]["motion_test_user"] <= 600, "deferred with its wait, not slept on"
