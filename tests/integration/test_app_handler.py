"""AppHandler and the Lambda entry point against the emulator over HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest

from motion_meta_cli.app import AppHandler
from motion_meta_cli.config import Settings
from motion_meta_cli.emulator import DEMO_TOKEN, EmulatorConfig, GraphEmulator, default_directory
from motion_meta_cli.errors import UnknownCustomerError, UsageError
from motion_meta_cli.lambda_handler import handler

pytestmark = pytest.mark.integration


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


def test_lambda_handler_uses_the_environment(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with GraphEmulator(EmulatorConfig()) as server:
        monkeypatch.setenv("META_GRAPH_URL", server.url)
        monkeypatch.setenv("META_ACCESS_TOKEN", DEMO_TOKEN)
        out = handler({"customers": ["motion_test_user"]}, None)
    assert (out["fetched"], out["failed"], out["skipped"]) == (["motion_test_user"], {}, [])
    assert out["results"][0]["name"] == "Motion Test User"
    with pytest.raises(UsageError):
        handler({"customers": "motion_test_user"})
