from __future__ import annotations

from pathlib import Path

import pytest
import responses

from motion_meta_cli.agent import MetaUserAgent, normalize_fields, parse_fields
from motion_meta_cli.config import MetaPlatformConfig
from motion_meta_cli.credentials import CredentialsManager
from motion_meta_cli.errors import InvalidFieldsError, UpstreamError
from motion_meta_cli.request_manager import MetaRequestManager
from motion_meta_cli.service import MetaUserService
from motion_meta_cli.storage.local_secrets import LocalSecretsStore
from motion_meta_cli.storage.sqlite_cache import SQLiteCache
from motion_meta_cli.storage.sqlite_store import SQLiteCustomerStore

ME = "https://graph.test/v25.0/me"


@pytest.fixture
def parts(tmp_path: Path) -> tuple[MetaUserAgent, SQLiteCustomerStore, LocalSecretsStore]:
    secrets = LocalSecretsStore(tmp_path / "secrets.json")
    config = MetaPlatformConfig().merged({"retry": {"max_attempts": 1}})
    manager = MetaRequestManager(graph_url="https://graph.test", api_version="v25.0", config_for=lambda _: config)
    agent = MetaUserAgent(manager, CredentialsManager(secrets, SQLiteCache(tmp_path / "cache.db")))
    return agent, SQLiteCustomerStore(tmp_path / "store.db"), secrets


def test_fields_always_include_id_and_name_first() -> None:
    assert normalize_fields(["email", "name", " email "]) == ("id", "name", "email")
    assert parse_fields("picture{url,width},email") == ("id", "name", "picture{url,width}", "email")
    assert parse_fields("picture.type(large)") == ("id", "name", "picture.type(large)")


@pytest.mark.parametrize("bad", ["id;drop", "na me", "email'", "../x", "a{b"])
def test_fields_meta_would_reject_are_refused(bad: str) -> None:
    with pytest.raises(InvalidFieldsError, match="invalid field"):
        parse_fields(bad)


@responses.activate
def test_fetch_me_returns_a_validated_user_with_extra_fields(parts: tuple) -> None:
    agent, _, secrets = parts
    secrets.put_secret("acme", "EAAacme")
    responses.get(ME, json={"id": "7", "name": "Ada", "email": "ada@example.com"})
    user = agent.fetch_me("acme", ("email",))
    assert (user.id, user.name, user.fields()["email"]) == ("7", "Ada", "ada@example.com")
    assert responses.calls[0].request.params == {"fields": "id,name,email"}


@pytest.mark.parametrize("body", [{"id": "7"}, {"name": "x"}, {"id": "", "name": "x"}, ["not", "a", "user"]])
@responses.activate
def test_a_200_that_is_not_a_user_is_an_upstream_error(parts: tuple, body: object) -> None:
    agent, _, secrets = parts
    secrets.put_secret("acme", "EAAacme")
    responses.get(ME, json=body)
    with pytest.raises(UpstreamError, match="not a user profile"):
        agent.fetch_me("acme")


@responses.activate
def test_a_cycle_fetches_everyone_and_one_failure_does_not_stop_the_others(parts: tuple) -> None:
    agent, store, secrets = parts
    for name in ("a", "b", "c"):
        store.add_customer(name)
    secrets.put_secret("a", "EAAtokenA")
    secrets.put_secret("c", "EAAtokenC")  # b has no token
    responses.get(ME, json={"id": "1", "name": "One"})
    service = MetaUserService(agent, store, max_workers=3)
    report = service.run_cycle(["a", "b", "c"])
    results = sorted(report.results, key=lambda r: r.customer)
    assert report.fetched and sorted(report.failed) == ["b"] and not report.complete
    assert [r.customer for r in results] == ["a", "b", "c"]
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error is not None and results[1].error.kind == "missing_credentials"
    assert store.latest("a") is not None and store.latest("c") is not None
    assert store.latest("b") is None
    assert store.history("b")[0]["error_kind"] == "missing_credentials"


def test_an_unexpected_bug_costs_one_customer_only(parts: tuple) -> None:
    _, store, _ = parts

    class Broken:
        def fetch_me(self, customer: str, fields: object) -> object:
            if customer == "b":
                raise KeyError("bug")
            raise InvalidFieldsError("x")

    report = MetaUserService(Broken(), store).run_cycle(["a", "b"])  # type: ignore[arg-type]
    results = sorted(report.results, key=lambda r: r.customer)
    assert [r.error.kind for r in results if r.error] == ["invalid_fields", "internal"]


@responses.activate
def test_when_meta_asks_for_less_data_the_agent_asks_for_id_and_name_only(parts: tuple) -> None:
    agent, _, secrets = parts
    secrets.put_secret("acme", "EAAacme")
    reduce = {
        "error": {
            "message": "Please reduce the amount of data you're asking for, then retry your request",
            "code": 1,
            "type": "OAuthException",
        }
    }
    responses.get(ME, json=reduce, status=500)
    responses.get(ME, json={"id": "1", "name": "Ada"})
    user = agent.fetch_me("acme", ("id", "name", "picture{url}", "email"))
    assert user.name == "Ada"
    assert [call.request.params["fields"] for call in responses.calls] == ["id,name,picture{url},email", "id,name"]
