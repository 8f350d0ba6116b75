"""The Graph API emulator over real HTTP, started in-process on a free port."""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from motion_meta_cli.emulator import (
    DEMO_TOKEN,
    EXPIRED_DEMO_TOKEN,
    EmulatorConfig,
    GraphEmulator,
    default_directory,
)

pytestmark = pytest.mark.integration

BEARER = {"Authorization": f"Bearer {DEMO_TOKEN}"}
TIMEOUT_S = 10.0


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@pytest.fixture
def emulator() -> Iterator[GraphEmulator]:
    with GraphEmulator() as emulator:
        yield emulator


def get_me(
    session: requests.Session, emulator: GraphEmulator, token: str | None = DEMO_TOKEN, **params: str
) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return session.get(f"{emulator.url}/v25.0/me", headers=headers, params=params, timeout=TIMEOUT_S)


def error_of(response: requests.Response) -> dict[str, Any]:
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/json; charset=UTF-8"
    error: dict[str, Any] = response.json()["error"]
    assert error["fbtrace_id"] == response.headers["x-fb-trace-id"]
    return error


def app_usage(response: requests.Response) -> dict[str, int]:
    usage: dict[str, int] = json.loads(response.headers["X-App-Usage"])
    return usage


class TestMe:
    def test_default_fields_are_name_and_id(self, session: requests.Session, emulator: GraphEmulator) -> None:
        response = get_me(session, emulator)

        assert response.status_code == 200
        assert response.headers["Content-Type"] == "application/json; charset=UTF-8"
        assert response.headers["x-fb-trace-id"]
        assert list(response.json().items()) == [("name", "Motion Test User"), ("id", "10000000000000001")]

    def test_requested_fields_come_back_in_order(self, session: requests.Session, emulator: GraphEmulator) -> None:
        response = get_me(session, emulator, fields="id,first_name,last_name,short_name,email,picture")

        body = response.json()
        assert list(body) == ["id", "first_name", "last_name", "short_name", "email", "picture"]
        assert (body["first_name"], body["last_name"]) == ("Motion", "User")
        assert body["picture"]["data"]["url"].startswith("https://")

    def test_id_is_always_included(self, session: requests.Session, emulator: GraphEmulator) -> None:
        assert get_me(session, emulator, fields="name").json() == {
            "name": "Motion Test User",
            "id": "10000000000000001",
        }

    def test_field_modifiers_are_accepted(self, session: requests.Session, emulator: GraphEmulator) -> None:
        response = get_me(session, emulator, fields="id,picture.type(large){url}")

        assert response.status_code == 200
        assert "picture" in response.json()

    def test_token_in_query_works_and_is_counted(self, session: requests.Session, emulator: GraphEmulator) -> None:
        response = session.get(f"{emulator.url}/v25.0/me", params={"access_token": DEMO_TOKEN}, timeout=TIMEOUT_S)
        get_me(session, emulator)

        assert response.status_code == 200
        assert emulator.stats()["token_in_query"] == 1

    def test_accept_any_token_serves_derived_users(self, session: requests.Session) -> None:
        config = EmulatorConfig(users=default_directory(accept_any_token=True))
        with GraphEmulator(config) as emulator:
            ids = {get_me(session, emulator, f"EAAcustomer{n:04d}" + "x" * 20).json()["id"] for n in range(3)}

            assert len(ids) == 3
            assert set(emulator.stats()["per_user"]) == ids

    def test_keep_alive_serves_several_requests_on_one_connection(self, emulator: GraphEmulator) -> None:
        connection = http.client.HTTPConnection(emulator.host, emulator.port, timeout=TIMEOUT_S)
        try:
            for _ in range(3):
                connection.request("GET", "/v25.0/me", headers=BEARER)
                response = connection.getresponse()
                assert response.version == 11
                assert json.loads(response.read())["id"] == "10000000000000001"
            assert connection.sock is not None  # never closed between requests
        finally:
            connection.close()

    def test_no_usage_header_when_unlimited(self, session: requests.Session, emulator: GraphEmulator) -> None:
        assert "X-App-Usage" not in get_me(session, emulator).headers


class TestErrors:
    def test_missing_token(self, session: requests.Session, emulator: GraphEmulator) -> None:
        error = error_of(get_me(session, emulator, token=None))

        assert error["code"] == 2500
        assert error["type"] == "OAuthException"
        assert error["message"] == ("An active access token must be used to query information about the current user.")

    def test_invalid_token(self, session: requests.Session, emulator: GraphEmulator) -> None:
        error = error_of(get_me(session, emulator, token="EAAnotatoken" + "x" * 30))

        assert (error["code"], error["type"]) == (190, "OAuthException")
        assert "error_subcode" not in error
        assert error["message"] == "Invalid OAuth access token - Cannot parse access token"

    def test_expired_token(self, session: requests.Session, emulator: GraphEmulator) -> None:
        error = error_of(get_me(session, emulator, token=EXPIRED_DEMO_TOKEN))

        assert (error["code"], error["error_subcode"], error["type"]) == (190, 463, "OAuthException")
        assert error["message"].startswith("Error validating access token: Session has expired on ")

    def test_trace_ids_differ_between_requests(self, session: requests.Session, emulator: GraphEmulator) -> None:
        first = error_of(get_me(session, emulator, token=None))
        second = error_of(get_me(session, emulator, token=None))

        assert first["fbtrace_id"] != second["fbtrace_id"]

    def test_unknown_field(self, session: requests.Session, emulator: GraphEmulator) -> None:
        error = error_of(get_me(session, emulator, fields="id,foo"))

        assert error["code"] == 100
        assert error["message"] == "(#100) Tried accessing nonexisting field (foo) on node type (User)"

    @pytest.mark.parametrize(("fields", "position"), [("id name", 2), ("id;name", 2), ("picture{url", 11)])
    def test_malformed_fields(
        self, session: requests.Session, emulator: GraphEmulator, fields: str, position: int
    ) -> None:
        error = error_of(get_me(session, emulator, fields=fields))

        assert error["code"] == 2500
        assert error["message"].startswith('Syntax error "Expected ')
        assert error["message"].endswith(f"at character {position}: {fields}")

    @pytest.mark.parametrize("path", ["/v25/me", "/25.0/me", "/me"])
    def test_bad_version(self, session: requests.Session, emulator: GraphEmulator, path: str) -> None:
        error = error_of(session.get(emulator.url + path, headers=BEARER, timeout=TIMEOUT_S))

        assert error["code"] == 2500
        assert error["message"].startswith("Unknown path components: ")

    def test_other_node_under_a_version(self, session: requests.Session, emulator: GraphEmulator) -> None:
        response = session.get(f"{emulator.url}/v25.0/somebody", headers=BEARER, timeout=TIMEOUT_S)

        error = error_of(response)
        assert error["code"] == 803
        assert error["message"] == "(#803) Some of the aliases you requested do not exist: somebody"

    def test_unknown_top_level_path_is_a_json_404(self, session: requests.Session, emulator: GraphEmulator) -> None:
        response = session.get(f"{emulator.url}/favicon.ico", timeout=TIMEOUT_S)

        assert response.status_code == 404
        assert "message" in response.json()["error"]

    def test_post_to_me_is_unsupported(self, session: requests.Session, emulator: GraphEmulator) -> None:
        response = session.post(f"{emulator.url}/v25.0/me", headers=BEARER, data="x=1", timeout=TIMEOUT_S)

        assert (error_of(response)["code"], error_of(response)["error_subcode"]) == (100, 33)


class TestAppLimit:
    def test_code_4_with_usage_headers_on_success_and_error(self, session: requests.Session) -> None:
        with GraphEmulator(EmulatorConfig(app_limit=3, window_s=60.0)) as emulator:
            allowed = [get_me(session, emulator) for _ in range(3)]
            refused = get_me(session, emulator)

            assert [r.status_code for r in allowed] == [200, 200, 200]
            assert [app_usage(r)["call_count"] for r in allowed] == [33, 66, 100]
            assert all(app_usage(r)["total_time"] < app_usage(r)["call_count"] for r in allowed)
            error = error_of(refused)
            assert error == {
                "message": "(#4) Application request limit reached",
                "type": "OAuthException",
                "is_transient": True,
                "code": 4,
                "fbtrace_id": refused.headers["x-fb-trace-id"],
            }
            assert app_usage(refused)["call_count"] == 133
            assert app_usage(get_me(session, emulator, token=None))["call_count"] == 133

    def test_every_token_shares_the_app_limit(self, session: requests.Session) -> None:
        with GraphEmulator(EmulatorConfig(app_limit=1, window_s=60.0)) as emulator:
            get_me(session, emulator)

            assert error_of(get_me(session, emulator, token=EXPIRED_DEMO_TOKEN))["code"] == 4

    def test_calls_while_blocked_extend_the_block(self, session: requests.Session) -> None:
        window_s = 0.6
        with GraphEmulator(EmulatorConfig(app_limit=2, window_s=window_s)) as emulator:
            started = time.monotonic()
            assert [get_me(session, emulator).status_code for _ in range(2)] == [200, 200]

            # Keep probing past the point where the first two calls left the window.
            probes = []
            while time.monotonic() - started < window_s + 0.4:
                probes.append(get_me(session, emulator))
                time.sleep(0.05)
            assert {error_of(r)["code"] for r in probes} == {4}

            time.sleep(window_s + 0.1)  # silence for a whole window lifts the block
            assert get_me(session, emulator).status_code == 200

            stats = emulator.stats()
            assert stats["throttled_by_code"] == {"4": len(probes)}
            assert stats["blocked_arrivals"] == len(probes)


class TestControlEndpoints:
    def test_stats_and_reset(self, session: requests.Session) -> None:
        with GraphEmulator(EmulatorConfig(app_limit=1, window_s=60.0)) as emulator:
            get_me(session, emulator)
            get_me(session, emulator)
            get_me(session, emulator, token="EAAunknown" + "x" * 30)

            response = session.get(f"{emulator.url}/__stats", timeout=TIMEOUT_S)
            stats = response.json()
            assert stats == emulator.stats()
            assert DEMO_TOKEN not in response.text
            assert stats["requests"] == 3
            assert stats["succeeded"] == 1
            assert stats["by_status"] == {"200": 1, "400": 2}
            assert stats["throttled"] == 2
            assert stats["per_user"] == {"10000000000000001": 2}
            assert stats["app_usage_pct"] == 300
            assert (stats["app_limit"], stats["window_s"]) == (1, 60.0)
            assert stats["in_flight"] == 0

            reset = session.post(f"{emulator.url}/__reset", timeout=TIMEOUT_S)

            assert reset.status_code == 200
            after = emulator.stats()
            assert (after["requests"], after["throttled"], after["app_usage_pct"]) == (0, 0, 0)
            assert after["per_user"] == {}
            assert get_me(session, emulator).status_code == 200

    def test_reset_needs_post(self, session: requests.Session, emulator: GraphEmulator) -> None:
        assert session.get(f"{emulator.url}/__reset", timeout=TIMEOUT_S).status_code == 405


class TestServer:
    def test_holds_500_concurrent_connections(self) -> None:
        clients = 500
        barrier = threading.Barrier(clients, timeout=TIMEOUT_S)

        def one_client() -> int:
            # A fresh connection per client: nothing is pooled or reused.
            connection = http.client.HTTPConnection(emulator.host, emulator.port, timeout=TIMEOUT_S)
            try:
                barrier.wait()
                connection.request("GET", "/v25.0/me", headers=BEARER)
                response = connection.getresponse()
                response.read()
                return response.status
            finally:
                connection.close()

        with (
            GraphEmulator(EmulatorConfig(latency_s=0.2)) as emulator,
            ThreadPoolExecutor(max_workers=clients) as pool,
        ):
            statuses = list(pool.map(lambda _: one_client(), range(clients)))

            assert statuses == [200] * clients
            stats = emulator.stats()
            assert stats["succeeded"] == clients
            assert stats["peak_concurrency"] > 1

    def test_tokens_never_reach_stderr_or_logs(
        self, emulator: GraphEmulator, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG, logger="motion_meta_cli.emulator")

        requests.get(f"{emulator.url}/v25.0/me", params={"access_token": DEMO_TOKEN}, timeout=TIMEOUT_S)
        requests.get(f"{emulator.url}/v25.0/me", params={"access_token": "EAAbad"}, timeout=TIMEOUT_S)

        assert DEMO_TOKEN not in capfd.readouterr().err
        assert "EAAbad" not in caplog.text
        assert DEMO_TOKEN not in caplog.text

    def test_stop_drops_kept_alive_connections_and_frees_the_port(self, session: requests.Session) -> None:
        emulator = GraphEmulator().start()
        get_me(session, emulator)  # leaves an idle keep-alive connection in the session's pool

        started = time.monotonic()
        emulator.stop()

        assert time.monotonic() - started < 2.0
        with pytest.raises(requests.ConnectionError):
            get_me(session, emulator)
        emulator.stop()  # a second stop is harmless

    def test_port_is_known_before_start_and_runs_only_once(self) -> None:
        emulator = GraphEmulator()
        try:
            assert emulator.port > 0
            assert emulator.url == f"http://127.0.0.1:{emulator.port}"
        finally:
            emulator.stop()
        with pytest.raises(RuntimeError, match="create a new GraphEmulator"):
            emulator.start()
