"""`motion-meta fetch`, `--version` and `demo` run as a user would: child processes against real servers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from motion_meta_cli.emulator import DEMO_TOKEN, EXPIRED_DEMO_TOKEN, EmulatorConfig, GraphEmulator
from tests.integration.conftest import free_port
from tests.integration.helpers import invoke_cli, json_reply, run_cli, stand_in_server

pytestmark = pytest.mark.integration

NO_RETRY = {"META_PLATFORM__RETRY__MAX_ATTEMPTS": "1"}


@pytest.fixture
def emulator() -> Iterator[GraphEmulator]:
    with GraphEmulator(EmulatorConfig()) as server:
        yield server


def _env(emulator: GraphEmulator, token: str = DEMO_TOKEN, **extra: str) -> dict[str, str]:
    return {"META_GRAPH_URL": emulator.url, "META_ACCESS_TOKEN": token, **extra}


def test_fetch_json_prints_one_object_and_stores_it(tmp_path: Path, emulator: GraphEmulator) -> None:
    run = invoke_cli("fetch", "--customer", "motion_test_user", "--json", env=_env(emulator))
    assert run.code == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    assert len(lines) == 1
    payload = json.loads(lines[0])
    assert payload["customer"] == "motion_test_user"
    assert payload["id"] == "10000000000000001"
    assert payload["name"] == "Motion Test User"
    assert payload["fetched_at"].endswith("Z")
    assert datetime.fromisoformat(payload["fetched_at"]).utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    stats = emulator.stats()
    assert stats["requests"] == 1
    assert stats["token_in_query"] == 0
    assert (tmp_path / "home" / "store.db").exists()


def test_fetch_requested_fields_are_kept(tmp_path: Path, emulator: GraphEmulator) -> None:
    run = invoke_cli("fetch", "--fields", "first_name,last_name", "--json", env=_env(emulator))
    assert run.code == 0, run.stderr
    payload = json.loads(run.stdout)
    assert (payload["first_name"], payload["last_name"]) == ("Motion", "User")


def test_fetch_renders_a_table_for_people(tmp_path: Path, emulator: GraphEmulator) -> None:
    run = invoke_cli("fetch", env=_env(emulator))
    assert run.code == 0, run.stderr
    assert "Motion Test User" in run.stdout
    assert "fetched_at" in run.stdout


def test_version(tmp_path: Path) -> None:
    run = run_cli("--version", cwd=tmp_path)
    assert run.code == 0
    assert run.stdout.startswith("motion-meta ")


def test_unknown_option_is_a_usage_error(tmp_path: Path) -> None:
    run = invoke_cli("fetch", "--bogus")
    assert run.code == 2


@pytest.mark.parametrize(
    ("args", "env", "code", "message"),
    [
        (("fetch",), {}, 3, "the demo customer is added once META_ACCESS_TOKEN is set"),
        (("fetch",), {"META_ACCESS_TOKEN": ""}, 3, "META_ACCESS_TOKEN is empty"),
        (("fetch", "--customer", "ghost"), {"META_ACCESS_TOKEN": "EAAx"}, 3, "unknown customer 'ghost'"),
        (("fetch",), {"META_GRAPH_URL": "graph.facebook.com"}, 3, "META_GRAPH_URL"),
        (("fetch", "--fields", "id;drop"), {}, 2, "invalid field 'id;drop'"),
        (("fetch", "--customer", "a b"), {}, 3, "unknown customer 'a b'"),
    ],
)
def test_bad_input_gets_one_line_and_its_exit_code(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str], code: int, message: str
) -> None:
    run = invoke_cli(*args, env={"META_GRAPH_URL": f"http://127.0.0.1:{free_port()}", **env})
    assert run.code == code, run.stderr
    assert run.stderr.startswith("error: ")
    assert message in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    assert "Traceback" not in run.stderr


def test_unreachable_host_is_a_network_error(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    run = invoke_cli("fetch", env={"META_GRAPH_URL": url, "META_ACCESS_TOKEN": "EAAx", **NO_RETRY})
    assert run.code == 6
    assert f"{url} refused the connection" in run.stderr


def test_expired_token_is_reported_as_rejected(tmp_path: Path, emulator: GraphEmulator) -> None:
    run = invoke_cli("fetch", env=_env(emulator, EXPIRED_DEMO_TOKEN))
    assert run.code == 4, run.stderr
    assert "Meta rejected the access token of customer 'motion_test_user'" in run.stderr
    assert EXPIRED_DEMO_TOKEN not in run.stderr


def test_throttled_fetch_gives_up_with_exit_code_5(tmp_path: Path) -> None:
    with GraphEmulator(EmulatorConfig(app_limit=1, window_s=60)) as server:
        env = _env(server, META_PLATFORM__THROTTLE__GIVE_UP_AFTER_S="0", META_RATE_WINDOW_S="60")
        unpaced = {**env, "META_PLATFORM__THROTTLE__PACING": "false"}
        assert invoke_cli("fetch", env=unpaced).code == 0
        run = invoke_cli("fetch", env=unpaced)
        assert server.stats()["requests"] == 2, "one throttled call, no retries into the block"
        assert run.code == 5, run.stderr
        assert "still rate limited by Meta on app" in run.stderr
        again = invoke_cli("fetch", env=env)
        assert again.code == 5
        assert server.stats()["requests"] == 2, "the next process knows the pause from the shared cache"


def test_pacing_keeps_a_known_full_budget_from_being_spent(tmp_path: Path) -> None:
    with GraphEmulator(EmulatorConfig(app_limit=1, window_s=60)) as server:
        env = _env(server, META_PLATFORM__THROTTLE__GIVE_UP_AFTER_S="0", META_RATE_WINDOW_S="60")
        assert invoke_cli("fetch", env=env).code == 0  # X-App-Usage: 100 % after one call
        run = invoke_cli("fetch", env=env)
        assert run.code == 5, run.stderr
        assert server.stats()["throttled"] == 0, "the second process waited instead of drawing a throttle"


def test_an_html_error_page_is_an_upstream_failure(tmp_path: Path) -> None:
    page = b"<html><head><title>Facebook | Error</title></head><body>Sorry, something went wrong.</body></html>"
    with stand_in_server(lambda path, headers: (502, {"Content-Type": "text/html"}, page)) as url:
        run = invoke_cli("fetch", env={"META_GRAPH_URL": url, "META_ACCESS_TOKEN": "EAAx", **NO_RETRY})
    assert run.code == 6
    assert "HTTP 502" in run.stderr
    assert "<html>" not in run.stderr


def test_a_200_that_is_not_a_user_is_an_upstream_failure(tmp_path: Path) -> None:
    with stand_in_server(lambda path, headers: json_reply(200, {"data": []})) as url:
        run = invoke_cli("fetch", env={"META_GRAPH_URL": url, "META_ACCESS_TOKEN": "EAAx"})
    assert run.code == 6
    assert "not a user profile" in run.stderr


def test_malformed_usage_headers_do_not_fail_a_fetch(tmp_path: Path) -> None:
    headers = {"X-App-Usage": "{not json", "X-Business-Use-Case-Usage": '{"1": "nope"}'}
    user = {"id": "5", "name": "Lenient"}
    with stand_in_server(lambda path, h: json_reply(200, user, headers)) as url:
        run = invoke_cli("fetch", "--json", env={"META_GRAPH_URL": url, "META_ACCESS_TOKEN": "EAAx"})
    assert run.code == 0, run.stderr
    assert json.loads(run.stdout)["name"] == "Lenient"


def test_demo_shows_a_fetched_profile(tmp_path: Path) -> None:
    run = invoke_cli("demo")
    assert run.code == 0, run.stderr
    assert "Motion Test User" in run.stdout
    assert "fetch: motion_test_user" in run.stdout
    assert "cycle 3: fetched 6, failed 0" in run.stdout
    assert "240/240 succeeded" in run.stdout
    assert DEMO_TOKEN not in run.stdout + run.stderr
    assert not (tmp_path / "home").exists(), "the demo leaves the user's own state alone"
