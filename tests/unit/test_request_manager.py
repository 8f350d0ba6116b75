from __future__ import annotations

import json
from typing import Any

import pytest
import requests
import responses
from pydantic import SecretStr

from motion_meta_cli.config import MetaPlatformConfig
from motion_meta_cli.errors import (
    CredentialsRejectedError,
    NetworkError,
    RequestRefusedError,
    ThrottledError,
    UpstreamError,
)
from motion_meta_cli.moderation.rules import Scope
from motion_meta_cli.request_manager import MetaRequestManager

BASE = "https://graph.test"
ME = f"{BASE}/v25.0/me"
TOKEN = SecretStr("EAAunitCanaryToken0123456789")


class Clock:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _error(code: int, message: str = "boom", **extra: Any) -> dict[str, Any]:
    return {"error": {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "A1", **extra}}


def _manager(clock: Clock, **platform: Any) -> MetaRequestManager:
    config = MetaPlatformConfig().merged(
        {
            "retry": {"max_attempts": 3, "backoff_base_s": 1, "jitter_ratio": 0},
            "throttle": {"pause_floor_s": 10, "pause_cap_s": 40, "give_up_after_s": 100},
            **platform,
        }
    )
    return MetaRequestManager(
        graph_url=BASE,
        api_version="v25.0",
        config_for=lambda _endpoint: config,
        sleep=clock.sleep,
        clock=clock,
        random=lambda: 0.0,
    )


@responses.activate
def test_token_travels_in_the_authorization_header_only() -> None:
    responses.get(ME, json={"id": "1", "name": "Ada"}, headers={"X-App-Usage": '{"call_count": 7}'})
    response = _manager(Clock()).get("me", TOKEN, params={"fields": "id,name"}, customer="acme")
    sent = responses.calls[0].request
    assert sent.headers["Authorization"] == f"Bearer {TOKEN.get_secret_value()}"
    assert TOKEN.get_secret_value() not in (sent.url or "")
    assert sent.url == f"{ME}?fields=id%2Cname"
    assert response.data == {"id": "1", "name": "Ada"}
    assert response.usage.app is not None and response.usage.app.call_count_pct == 7
    assert response.attempts == 1


@responses.activate
def test_transient_failures_are_retried_with_growing_backoff() -> None:
    responses.get(ME, json=_error(2, "(#2) Service temporarily unavailable", is_transient=True), status=400)
    responses.get(ME, body="<html>Facebook | Error</html>", status=502, content_type="text/html")
    responses.get(ME, json={"id": "1", "name": "Ada"})
    clock = Clock()
    response = _manager(clock).get("me", TOKEN)
    assert response.attempts == 3
    assert clock.sleeps == [1.0, 2.0]


@responses.activate
def test_transient_failures_give_up_after_max_attempts() -> None:
    for _ in range(3):
        responses.get(ME, json=_error(1, "An unknown error occurred"), status=500)
    with pytest.raises(UpstreamError, match="gave up after 3 attempts"):
        _manager(Clock()).get("me", TOKEN)
    assert len(responses.calls) == 3


@responses.activate
def test_a_throttle_pauses_the_scope_then_retries() -> None:
    responses.get(ME, json=_error(4, "(#4) Application request limit reached", is_transient=True), status=400)
    responses.get(ME, json={"id": "1", "name": "Ada"})
    clock = Clock()
    manager = _manager(clock)
    assert manager.get("me", TOKEN, customer="acme").data["id"] == "1"
    assert clock.sleeps == [10.0], "no ETA: the pause floor"


@responses.activate
def test_consecutive_throttles_double_the_pause() -> None:
    for _ in range(3):
        responses.get(ME, json=_error(17, "(#17) User request limit reached"), status=400)
    responses.get(ME, json={"id": "1", "name": "Ada"})
    clock = Clock()
    _manager(clock).get("me", TOKEN, customer="acme")
    assert clock.sleeps == [10.0, 20.0, 40.0]


@responses.activate
def test_a_throttle_eta_from_the_headers_is_waited_out_exactly() -> None:
    buc = {"42": [{"type": "ads_management", "call_count": 100, "estimated_time_to_regain_access": 1}]}
    responses.get(
        ME,
        json=_error(80004, "(#80004) There have been too many calls to this ad-account.", error_subcode=2446079),
        status=400,
        headers={"X-Business-Use-Case-Usage": json.dumps(buc)},
    )
    responses.get(ME, json={"id": "1", "name": "Ada"})
    clock = Clock()
    manager = _manager(clock, throttle={"give_up_after_s": 120})
    manager.get("me", TOKEN)
    assert clock.sleeps == [60.0]


@responses.activate
def test_gives_up_when_the_pause_outlasts_the_budget_and_keeps_the_pause() -> None:
    buc = {"42": [{"type": "ads_management", "call_count": 100, "estimated_time_to_regain_access": 19}]}
    responses.get(ME, json=_error(80004), status=400, headers={"X-Business-Use-Case-Usage": json.dumps(buc)})
    clock = Clock()
    manager = _manager(clock)
    with pytest.raises(ThrottledError) as caught:
        manager.get("me", TOKEN)
    assert caught.value.retry_after_s == pytest.approx(19 * 60)
    assert caught.value.exit_code == 5
    assert clock.sleeps == []
    assert manager.moderator.cooldowns() == {"buc:42:ads_management": pytest.approx(1140)}


@responses.activate
def test_a_known_pause_is_waited_out_before_sending() -> None:
    responses.get(ME, json={"id": "1", "name": "Ada"})
    clock = Clock()
    manager = _manager(clock)
    manager.moderator.state.update("user:acme", lambda r, now: Scope(cooldown_until_ms=now + 30_000).dump())
    manager.get("me", TOKEN, customer="acme")
    assert clock.sleeps == [30.0]
    manager.get("me", TOKEN, customer="other")
    assert clock.sleeps == [30.0], "another customer's token pause does not apply"


@responses.activate
def test_auth_errors_are_not_retried() -> None:
    responses.get(ME, json=_error(190, "Error validating access token", error_subcode=463), status=400)
    with pytest.raises(CredentialsRejectedError, match="Error validating access token"):
        _manager(Clock()).get("me", TOKEN)
    assert len(responses.calls) == 1


@responses.activate
def test_invalid_requests_are_refused_without_retry() -> None:
    responses.get(ME, json=_error(100, "(#100) Tried accessing nonexisting field (foo)"), status=400)
    with pytest.raises(RequestRefusedError) as caught:
        _manager(Clock()).get("me", TOKEN)
    assert caught.value.exit_code == 7
    assert len(responses.calls) == 1


@responses.activate
def test_a_token_echoed_by_the_server_is_redacted() -> None:
    responses.get(ME, json=_error(100, f"bad token {TOKEN.get_secret_value()}"), status=400)
    with pytest.raises(RequestRefusedError) as caught:
        _manager(Clock()).get("me", TOKEN)
    assert TOKEN.get_secret_value() not in str(caught.value)


@responses.activate
def test_a_2xx_body_that_is_not_json_is_an_upstream_error() -> None:
    responses.get(ME, body="hello", status=200, content_type="text/plain")
    with pytest.raises(UpstreamError):
        _manager(Clock()).get("me", TOKEN)


@responses.activate
def test_transport_errors_are_retried_then_raised_without_the_url_query() -> None:
    leaky = requests.ConnectionError(
        f"Max retries exceeded with url: /v25.0/me?access_token={TOKEN.get_secret_value()}"
    )
    for _ in range(3):
        responses.get(ME, body=leaky)
    clock = Clock()
    with pytest.raises(NetworkError) as caught:
        _manager(clock).get("me", TOKEN, params={"fields": "id,name"})
    text = str(caught.value)
    assert "https://graph.test" in text
    assert "?" not in text and "fields" not in text
    assert TOKEN.get_secret_value() not in text
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert clock.sleeps == [1.0, 2.0]


@responses.activate
def test_read_timeouts_are_named() -> None:
    responses.get(ME, body=requests.ReadTimeout("read timed out"))
    with pytest.raises(NetworkError, match="sent no answer within 30 s"):
        _manager(Clock(), retry={"max_attempts": 1}).get("me", TOKEN)
