"""The Graph API emulator over real HTTP, started in-process on a free port: answers, limits, faults, stats."""

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
from tests.unit.test_emulator_limiter import FakeClock

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


def customer_token(n: int) -> str:
    """A token `accept_any_token` answers with a user of its own."""
    return f"EAAcustomer{n:04d}" + "x" * 20


def any_token_config(**settings: Any) -> EmulatorConfig:
    return EmulatorConfig(users=default_directory(accept_any_token=True), **settings)


def buc_usage(response: requests.Response, business_id: str = "1234567890") -> dict[str, Any]:
    value: dict[str, list[dict[str, Any]]] = json.loads(response.headers["X-Business-Use-Case-Usage"])
    assert list(value) == [business_id]
    [entry] = value[business_id]
    return entry


class TestTokenLimit:
    def test_code_17_for_the_token_over_its_limit_and_no_header_reveals_it(self, session: requests.Session) -> None:
        with GraphEmulator(any_token_config(token_limit=2, window_s=60.0)) as emulator:
            allowed = [get_me(session, emulator, customer_token(1)) for _ in range(2)]
            refused = get_me(session, emulator, customer_token(1))
            other = get_me(session, emulator, customer_token(2))

            assert [r.status_code for r in allowed] == [200, 200]
            assert error_of(refused) == {
                "message": "(#17) User request limit reached",
                "type": "OAuthException",
                "is_transient": True,
                "code": 17,
                "fbtrace_id": refused.headers["x-fb-trace-id"],
            }
            assert other.status_code == 200
            for response in (*allowed, refused, other):
                assert not {name.lower() for name in response.headers} & {"x-app-usage", "x-page-usage"}

    def test_calls_while_blocked_count_and_show_in_stats(self, session: requests.Session) -> None:
        with GraphEmulator(any_token_config(token_limit=1, window_s=60.0)) as emulator:
            codes = [get_me(session, emulator, customer_token(1)).status_code for _ in range(4)]

            stats = emulator.stats()
            assert codes == [200, 400, 400, 400]
            assert stats["throttled_by_code"] == {"17": 3}
            assert stats["blocked_arrivals"] == 3
            assert stats["blocked_arrivals_by_scope"] == {"app": 0, "page": 0, "token": 3, "business_use_case": 0}
            assert stats["token_limit"] == 1

    def test_a_token_with_no_user_is_answered_190_not_17(self, session: requests.Session) -> None:
        with GraphEmulator(EmulatorConfig(token_limit=1)) as emulator:
            codes = [error_of(get_me(session, emulator, "EAAnotauser" + "x" * 30))["code"] for _ in range(3)]

            assert codes == [190, 190, 190]


class TestPageLimit:
    def test_code_32_without_a_usage_header(self, session: requests.Session) -> None:
        with GraphEmulator(EmulatorConfig(page_limit=2, window_s=60.0)) as emulator:
            allowed = [get_me(session, emulator) for _ in range(2)]
            refused = get_me(session, emulator)

            assert [r.status_code for r in allowed] == [200, 200]
            assert error_of(refused) == {
                "message": "(#32) Page request limit reached",
                "type": "OAuthException",
                "code": 32,
                "fbtrace_id": refused.headers["x-fb-trace-id"],
            }
            assert "X-Page-Usage" not in refused.headers
            stats = emulator.stats()
            assert (stats["page_limit"], stats["page_usage_pct"]) == (2, 150)
            assert stats["throttled_by_code"] == {"32": 1}

    def test_every_token_shares_the_page_limit(self, session: requests.Session) -> None:
        with GraphEmulator(EmulatorConfig(page_limit=1, window_s=60.0)) as emulator:
            get_me(session, emulator)

            assert error_of(get_me(session, emulator, token=EXPIRED_DEMO_TOKEN))["code"] == 32


class TestBusinessUseCase:
    def test_header_on_every_response_and_80004_with_eta(self, session: requests.Session) -> None:
        clock = FakeClock()
        config = EmulatorConfig(buc_limit=2, window_s=1.0, buc_block_minutes=2.0, time_scale=1 / 60)
        with GraphEmulator(config, clock=clock) as emulator:
            allowed = [get_me(session, emulator) for _ in range(2)]
            refused = get_me(session, emulator)

            assert [buc_usage(r)["call_count"] for r in allowed] == [50, 100]
            assert buc_usage(allowed[0]) == {
                "type": "ads_management",
                "call_count": 50,
                "total_cputime": 12,
                "total_time": 25,
                "estimated_time_to_regain_access": 0,
                "ads_api_access_tier": "development_access",
            }
            assert error_of(refused) == {
                "message": (
                    "(#80004) There have been too many calls to this ad-account. Wait a bit and try again. For more "
                    "info, please refer to https://developers.facebook.com/docs/graph-api/overview/rate-limiting."
                ),
                "type": "OAuthException",
                "code": 80004,
                "error_subcode": 2446079,
                "fbtrace_id": refused.headers["x-fb-trace-id"],
            }
            assert buc_usage(refused)["estimated_time_to_regain_access"] == 2
            assert buc_usage(refused)["call_count"] == 150
            assert buc_usage(get_me(session, emulator, token=None))["estimated_time_to_regain_access"] == 2
            assert "X-App-Usage" not in refused.headers

            clock.advance(1.5)  # half a minute left, rounded up to one
            late = get_me(session, emulator)
            assert error_of(late)["code"] == 80004
            assert buc_usage(late)["estimated_time_to_regain_access"] == 1

            clock.advance(0.5)  # the block ends at +2 s whatever was called meanwhile
            assert get_me(session, emulator).status_code == 200
            stats = emulator.stats()
            assert stats["throttled_by_code"] == {"80004": 2}
            assert stats["blocked_arrivals_by_scope"]["business_use_case"] == 2
            assert (stats["buc_limit"], stats["buc_regain_access_minutes"]) == (2, 0)

    def test_business_id_and_type_are_configurable(self, session: requests.Session) -> None:
        config = EmulatorConfig(buc_limit=10, buc_business_id="66782684", buc_type="pages")
        with GraphEmulator(config) as emulator:
            entry = buc_usage(get_me(session, emulator), business_id="66782684")

            assert entry["type"] == "pages"
            assert "ads_api_access_tier" not in entry


class TestCheckOrder:
    def test_app_then_page_then_token_then_business(self, session: requests.Session) -> None:
        config = EmulatorConfig(app_limit=4, page_limit=3, token_limit=2, buc_limit=1, window_s=60.0)
        with GraphEmulator(config) as emulator:
            codes = [get_me(session, emulator) for _ in range(6)]

            assert [r.status_code for r in codes] == [200, 400, 400, 400, 400, 400]
            assert [r.json()["error"]["code"] for r in codes[1:]] == [80004, 17, 32, 4, 4]
            assert all("X-App-Usage" in r.headers and "X-Business-Use-Case-Usage" in r.headers for r in codes)
            stats = emulator.stats()
            assert stats["throttled_by_code"] == {"4": 2, "17": 1, "32": 1, "80004": 1}
            assert stats["blocked_arrivals"] == 5
            assert stats["blocked_arrivals_by_scope"] == {"app": 2, "page": 3, "token": 4, "business_use_case": 5}


class TestFaults:
    def test_500_unknown_error(self, session: requests.Session) -> None:
        with GraphEmulator(EmulatorConfig(fault_500_rate=1.0, app_limit=10)) as emulator:
            response = get_me(session, emulator)

            assert response.status_code == 500
            assert response.json() == {
                "error": {
                    "message": "An unknown error occurred",
                    "type": "OAuthException",
                    "is_transient": True,
                    "code": 1,
                    "error_subcode": 99,
                    "fbtrace_id": response.headers["x-fb-trace-id"],
                }
            }
            assert app_usage(response)["call_count"] == 10  # Graph answered: its headers come along

    def test_transient_code_2(self, session: requests.Session) -> None:
        with GraphEmulator(EmulatorConfig(fault_transient_rate=1.0)) as emulator:
            response = get_me(session, emulator)

            assert error_of(response) == {
                "message": "(#2) Service temporarily unavailable",
                "type": "OAuthException",
                "is_transient": True,
                "code": 2,
                "fbtrace_id": response.headers["x-fb-trace-id"],
            }

    def test_html_error_page(self, session: requests.Session) -> None:
        with GraphEmulator(EmulatorConfig(fault_html_rate=1.0, app_limit=10)) as emulator:
            response = get_me(session, emulator)

            assert response.status_code == 502
            assert response.headers["Content-Type"] == "text/html; charset=utf-8"
            assert "<title>Facebook | Error</title>" in response.text
            assert "X-App-Usage" not in response.headers and "x-fb-trace-id" not in response.headers
            with pytest.raises(ValueError):
                response.json()

    def test_malformed_usage_header_on_an_otherwise_normal_answer(self, session: requests.Session) -> None:
        config = EmulatorConfig(fault_malformed_usage_rate=1.0, app_limit=10, buc_limit=10)
        with GraphEmulator(config) as emulator:
            response = get_me(session, emulator)

            assert response.status_code == 200
            assert response.json()["id"] == "10000000000000001"
            for header in ("X-App-Usage", "X-Business-Use-Case-Usage"):
                with pytest.raises(json.JSONDecodeError):
                    json.loads(response.headers[header])
            assert emulator.stats()["faults"]["malformed_usage"] == 1

    def test_string_numbers_in_usage_headers(self, session: requests.Session) -> None:
        config = EmulatorConfig(fault_string_numbers_rate=1.0, app_limit=10, buc_limit=10)
        with GraphEmulator(config) as emulator:
            response = get_me(session, emulator)

            assert response.status_code == 200
            assert json.loads(response.headers["X-App-Usage"]) == {
                "call_count": "10",
                "total_cputime": "2",
                "total_time": "5",
            }
            assert buc_usage(response)["estimated_time_to_regain_access"] == "0"

    def test_dropped_connection(self, session: requests.Session) -> None:
        with GraphEmulator(EmulatorConfig(fault_drop_rate=1.0, app_limit=10)) as emulator:
            with pytest.raises(requests.ConnectionError):
                get_me(session, emulator)

            stats = emulator.stats()
            assert (stats["requests"], stats["by_status"], stats["faults"]["dropped"]) == (1, {}, 1)
            assert stats["app_usage_pct"] == 10  # it reached Meta, so it counted

    def test_faulted_requests_count_and_hide_the_throttle(self, session: requests.Session) -> None:
        with GraphEmulator(EmulatorConfig(fault_500_rate=1.0, app_limit=2, window_s=60.0)) as emulator:
            statuses = [get_me(session, emulator).status_code for _ in range(3)]

            stats = emulator.stats()
            assert statuses == [500, 500, 500]
            assert stats["app_usage_pct"] == 150
            assert stats["throttled"] == 0  # the third was throttled, but the client saw a 500
            assert stats["blocked_arrivals_by_scope"]["app"] == 1
            assert stats["faults"]["500"] == 3

    def test_rate_zero_never_faults(self, session: requests.Session, emulator: GraphEmulator) -> None:
        assert {get_me(session, emulator).status_code for _ in range(20)} == {200}
        assert set(emulator.stats()["faults"].values()) == {0}

    def test_a_seed_gives_a_stable_mix(self, session: requests.Session) -> None:
        config = EmulatorConfig(fault_500_rate=0.5, seed=2024)
        runs = []
        for _ in range(2):
            with GraphEmulator(config) as emulator:
                runs.append([get_me(session, emulator).status_code for _ in range(20)])

        assert runs[0] == runs[1]
        assert set(runs[0]) == {200, 500}

    def test_latency_and_jitter_delay_each_request(self, session: requests.Session) -> None:
        with GraphEmulator(EmulatorConfig(latency_s=0.02, latency_jitter_s=0.03, seed=1)) as emulator:
            for _ in range(3):
                started = time.monotonic()
                get_me(session, emulator)
                assert time.monotonic() - started >= 0.02


class TestStatsAdditions:
    def test_first_throttle_time_and_no_tokens(self, session: requests.Session) -> None:
        clock = FakeClock()
        with GraphEmulator(any_token_config(token_limit=1, window_s=60.0), clock=clock) as emulator:
            assert emulator.stats()["first_throttle_at_s"] is None
            get_me(session, emulator, customer_token(7))
            clock.advance(12.5)
            get_me(session, emulator, customer_token(7))

            response = session.get(f"{emulator.url}/__stats", timeout=TIMEOUT_S)

            stats = response.json()
            assert stats["first_throttle_at_s"] == 12.5
            assert customer_token(7) not in response.text
            assert len(stats["per_user"]) == 1

            session.post(f"{emulator.url}/__reset", timeout=TIMEOUT_S)
            after = emulator.stats()
            assert after["first_throttle_at_s"] is None
            assert get_me(session, emulator, customer_token(7)).status_code == 200  # the token limit was reset too
