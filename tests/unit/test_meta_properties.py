"""Property tests: whatever Meta (or anything in between) sends, the usage-header parser, the error-body
parser and the classifier give an answer, and a request gives data or an error of the tree, never a crash.

Derandomized, so a failure found once is found on every run."""

from __future__ import annotations

import json
import math
from typing import Any

import responses
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from motion_meta_cli.config import MetaPlatformConfig, ThrottleHandling
from motion_meta_cli.errors import MotionMetaError
from motion_meta_cli.meta import (
    Classification,
    ErrorKind,
    Usage,
    UsageHeaderNames,
    classify_response,
    parse_error_body,
    parse_usage,
)
from motion_meta_cli.moderation.rules import estimate_budget, pause_s
from motion_meta_cli.request_manager import MetaRequestManager

PROPERTY = settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
NAMES = UsageHeaderNames()
HEADERS = (NAMES.app, NAMES.business_use_case, NAMES.ad_account, NAMES.insights, NAMES.page)

# JSON as Python's json module reads it: huge integers, and the NaN and Infinity it accepts.
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20,
)
# Keys Meta uses, so that values of every type reach the code that reads them.
meta_keys = st.sampled_from(
    [
        "call_count",
        "total_cputime",
        "total_time",
        "type",
        "estimated_time_to_regain_access",
        "acc_id_util_pct",
        "reset_time_duration",
        "ads_api_access_tier",
        "app_id_util_pct",
        "code",
        "error_subcode",
        "message",
        "is_transient",
        "error_user_msg",
        "fbtrace_id",
        "error_data",
    ]
)
meta_shaped = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(meta_keys | st.text(max_size=6), inner, max_size=6),
    max_leaves=25,
)


def _dumped(value: Any) -> str:
    return json.dumps(value)  # NaN and Infinity come out as the bare words json.loads accepts


# The shapes Meta sends, with any value where a number or a string belongs: an object of counters
# (X-App-Usage, X-Page-Usage, X-Ad-Account-Usage, X-FB-Ads-Insights-Throttle), or business IDs to lists of them.
counters = st.dictionaries(meta_keys, scalars, max_size=6)
shaped = counters | st.dictionaries(st.text(max_size=8), st.lists(counters, max_size=3), max_size=3)
header_values = st.text(max_size=60) | json_values.map(_dumped) | meta_shaped.map(_dumped) | shaped.map(_dumped)
headers = st.dictionaries(st.sampled_from(HEADERS) | st.text(min_size=1, max_size=10), header_values, max_size=6)
bodies = (
    st.binary(max_size=200)
    | json_values.map(lambda v: _dumped(v).encode())
    | meta_shaped.map(lambda v: _dumped({"error": v}).encode())
    | st.text(max_size=80).map(str.encode)
)
statuses = st.integers(min_value=100, max_value=599)


def _finite_numbers(value: object) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, tuple | list):
        return all(_finite_numbers(item) for item in value)
    if hasattr(value, "__dataclass_fields__"):
        return all(_finite_numbers(getattr(value, name)) for name in value.__dataclass_fields__)
    return True


@PROPERTY
@given(headers=headers)
def test_any_usage_headers_parse_to_usage_with_only_finite_numbers(headers: dict[str, str]) -> None:
    usage = parse_usage(headers, NAMES)
    assert isinstance(usage, Usage)
    assert _finite_numbers(usage)
    assert usage.max_pct is None or math.isfinite(usage.max_pct)
    eta = usage.max_eta_s()
    assert eta is None or (math.isfinite(eta) and eta > 0)


@PROPERTY
@given(body=bodies)
def test_any_body_parses_to_a_meta_error_or_none(body: bytes) -> None:
    error = parse_error_body(body)
    assert error is None or isinstance(error.message, str)


@PROPERTY
@given(status=statuses, body=bodies, headers=headers)
def test_any_answer_is_classified_and_what_moderation_makes_of_it_is_bounded(
    status: int, body: bytes, headers: dict[str, str]
) -> None:
    usage = parse_usage(headers, NAMES)
    verdict = classify_response(status, body, usage)
    if verdict is None:
        assert 200 <= status < 300, "only a 2xx can be a success"
        return
    assert isinstance(verdict, Classification)
    assert verdict.kind in ErrorKind
    assert isinstance(verdict.reason, str) and "\n" not in verdict.reason
    assert len(verdict.reason) < 1000, "a reason is a line, not the body"
    if verdict.kind is ErrorKind.THROTTLED:
        handling = ThrottleHandling()
        assert verdict.scope is not None
        assert verdict.eta_s is None or math.isfinite(verdict.eta_s)
        duration, _clamped = pause_s(1, verdict.eta_s, handling, jitter=1.0)
        assert 0 < duration <= handling.max_s
    pct = usage.max_pct
    if pct is not None:
        budget = estimate_budget(10, pct)
        assert budget is None or budget >= 1


MANAGER_CONFIG = MetaPlatformConfig().merged(
    {"retry": {"max_attempts": 2, "backoff_base_s": 0.001, "backoff_cap_s": 0.001}, "throttle": {"give_up_after_s": 0}}
)


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(status=statuses, body=bodies, headers=headers)
def test_a_request_gives_data_or_an_error_of_the_tree_whatever_comes_back(
    status: int, body: bytes, headers: dict[str, str]
) -> None:
    manager = MetaRequestManager(
        graph_url="https://graph.test",
        api_version="v25.0",
        config_for=lambda _endpoint: MANAGER_CONFIG,
        sleep=lambda _s: None,
    )
    token = "EAApropertyToken0123456789"
    safe_headers = {name: value.encode("latin-1", "replace").decode("latin-1") for name, value in headers.items()}
    safe_headers = {name: value for name, value in safe_headers.items() if "\n" not in value and "\r" not in value}
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get("https://graph.test/v25.0/me", status=status, body=body, headers=safe_headers)
        try:
            response = manager.get("me", SecretStr(token), customer="acme")
        except MotionMetaError as exc:
            assert token not in str(exc)
            assert "\n" not in str(exc)
        else:
            assert 200 <= response.http_status < 300
    manager.close()
