"""parse_error_body, classify_error and classify_response against reference sections 2 and 3."""

from __future__ import annotations

import json
from typing import Any

import pytest

from motion_meta_cli.meta import (
    DEFAULT_THROTTLE_RULES,
    EMPTY_USAGE,
    AdAccountUsage,
    BusinessUseCaseUsage,
    Classification,
    ErrorKind,
    MetaError,
    ScopeKind,
    ThrottleRules,
    ThrottleScope,
    Usage,
    classify_error,
    classify_response,
    parse_error_body,
    parse_usage,
)

THROTTLED = ErrorKind.THROTTLED
TRANSIENT = ErrorKind.TRANSIENT
AUTH = ErrorKind.AUTH
PERMISSION = ErrorKind.PERMISSION
POLICY_BLOCK = ErrorKind.POLICY_BLOCK
INVALID_REQUEST = ErrorKind.INVALID_REQUEST
UNKNOWN = ErrorKind.UNKNOWN

BUC_USE_CASES = {
    80000: "ads_insights",
    80001: "pages",
    80002: "instagram",
    80003: "custom_audience",
    80004: "ads_management",
    80005: "leadgen",
    80006: "messenger",
    80008: "whatsapp_business_management",
    80009: "catalog_management",
    80014: "catalog_batch",
}

REFERENCE_80004_BODY = (
    '{"error":{"message":"(#80004) There have been too many calls to this ad-account. '
    'Wait a bit and try again.",'
    '"type":"OAuthException","code":80004,"error_subcode":2446079,"fbtrace_id":"AFm-w0VSqFxo"}}'
)


def error_body(
    code: object = None,
    subcode: object = None,
    message: str | None = "",
    is_transient: object = None,
    **extra: Any,
) -> str:
    """A Graph error body; arguments left as None are omitted, as Meta omits them."""
    error: dict[str, Any] = {"type": "OAuthException", "fbtrace_id": "Atrace"}
    for key, value in (
        ("code", code),
        ("error_subcode", subcode),
        ("message", message),
        ("is_transient", is_transient),
    ):
        if value is not None:
            error[key] = value
    error.update(extra)
    return json.dumps({"error": error})


def meta_error(
    code: int | None, subcode: int | None = None, message: str = "", is_transient: bool | None = None
) -> MetaError:
    return MetaError(code, subcode, message, "OAuthException", is_transient, "Atrace")


def buc_usage(*entries: tuple[str, str, float | None, float | None]) -> Usage:
    """Usage with BUC entries given as (business_id, type, call_count_pct, eta_s)."""
    return Usage(
        business_use_cases=tuple(
            BusinessUseCaseUsage(business_id, use_case, pct, None, None, eta_s, None)
            for business_id, use_case, pct, eta_s in entries
        )
    )


# --- parse_error_body -------------------------------------------------------------------------------------


def test_parse_error_body_reads_the_reference_sample() -> None:
    assert parse_error_body(REFERENCE_80004_BODY) == MetaError(
        code=80004,
        subcode=2446079,
        message="(#80004) There have been too many calls to this ad-account. Wait a bit and try again.",
        type="OAuthException",
        is_transient=None,
        fbtrace_id="AFm-w0VSqFxo",
    )


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(REFERENCE_80004_BODY, id="str"),
        pytest.param(REFERENCE_80004_BODY.encode(), id="bytes"),
        pytest.param(b"\xef\xbb\xbf" + REFERENCE_80004_BODY.encode(), id="bytes-with-bom"),
        pytest.param("\n  " + REFERENCE_80004_BODY + "\n", id="surrounding-whitespace"),
    ],
)
def test_parse_error_body_accepts_str_and_bytes(body: bytes | str) -> None:
    error = parse_error_body(body)

    assert error is not None
    assert (error.code, error.subcode) == (80004, 2446079)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param(
            {"code": "17", "error_subcode": "2446079"},
            MetaError(17, 2446079, "", None, None, None),
            id="codes-as-strings",
        ),
        pytest.param({"code": 4.0}, MetaError(4, None, "", None, None, None), id="code-as-whole-float"),
        pytest.param({"code": 4.5}, MetaError(None, None, "", None, None, None), id="code-as-fraction"),
        pytest.param({"code": "abc"}, MetaError(None, None, "", None, None, None), id="code-not-a-number"),
        pytest.param({"code": True}, MetaError(None, None, "", None, None, None), id="code-boolean"),
        pytest.param({"code": [4]}, MetaError(None, None, "", None, None, None), id="code-list"),
        pytest.param({}, MetaError(None, None, "", None, None, None), id="empty-error-object"),
        pytest.param({"message": "boom"}, MetaError(None, None, "boom", None, None, None), id="message-only"),
        pytest.param(
            {"code": 2, "is_transient": True},
            MetaError(2, None, "", None, True, None),
            id="is-transient-true",
        ),
        pytest.param(
            {"code": 17, "is_transient": False},
            MetaError(17, None, "", None, False, None),
            id="is-transient-false",
        ),
        pytest.param(
            {"code": 2, "is_transient": "true"},
            MetaError(2, None, "", None, True, None),
            id="is-transient-string",
        ),
        pytest.param(
            {"code": 2, "is_transient": "maybe"},
            MetaError(2, None, "", None, None, None),
            id="is-transient-junk",
        ),
        pytest.param(
            {"code": 100, "error_data": '{"blame_field_specs":[["fields"]]}'},
            MetaError(100, None, "", None, None, None),
            id="error-data-as-string",
        ),
        pytest.param(
            {"code": 100, "error_data": {"blame_field_specs": [["fields"]]}},
            MetaError(100, None, "", None, None, None),
            id="error-data-as-dict",
        ),
        pytest.param(
            {
                "code": 190,
                "error_subcode": 463,
                "type": "OAuthException",
                "message": "Error validating access token",
                "error_user_title": "Session expired",
                "error_user_msg": "Log in again",
                "fbtrace_id": "Ax1",
            },
            MetaError(190, 463, "Error validating access token", "OAuthException", None, "Ax1"),
            id="all-documented-fields",
        ),
    ],
)
def test_parse_error_body_is_tolerant(fields: dict[str, Any], expected: MetaError) -> None:
    assert parse_error_body(json.dumps({"error": fields})) == expected


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(None, id="none"),
        pytest.param("", id="empty"),
        pytest.param(b"", id="empty-bytes"),
        pytest.param("<html><title>Facebook | Error</title></html>", id="html"),
        pytest.param("Service Unavailable", id="plain-text"),
        pytest.param("{not json", id="broken-json"),
        pytest.param(b"\xff\xfe\x00garbage", id="binary"),
        pytest.param('[{"error": {"code": 4}}]', id="json-list"),
        pytest.param('{"id": "1", "name": "x"}', id="no-error-key"),
        pytest.param('{"error": null}', id="error-null"),
        pytest.param('{"error": "invalid_token"}', id="error-is-a-string"),
        pytest.param('{"error": [4]}', id="error-is-a-list"),
        pytest.param('{"result": {"error": {"code": 4}}, "status": "FAILED"}', id="async-job-wrapper"),
        pytest.param("[" * 100_000, id="nested-too-deep"),
    ],
)
def test_parse_error_body_returns_none_without_an_error_object(body: bytes | str | None) -> None:
    assert parse_error_body(body) is None


@pytest.mark.parametrize(
    ("message", "secret"),
    [
        pytest.param(
            "Malformed access token EAAGtP3OOrS4BAKz4z6ZCq204miQUcFdxzAGZAuDN4BZCqea5l4Ai5FiKZCkdh3UJ",
            "EAAGtP3OOrS4BAKz4z6ZCq204miQUcFdxzAGZAuDN4BZCqea5l4Ai5FiKZCkdh3UJ",
            id="user-token",
        ),
        pytest.param(
            "Invalid OAuth access token: IGQVJYbm9tYXJlYWx0b2tlbmJ1dGxvbmdlbm91Z2g",
            "IGQVJYbm9tYXJlYWx0b2tlbmJ1dGxvbmdlbm91Z2g",
            id="instagram-token",
        ),
        pytest.param(
            "Bad token 1234567890123|AbCdEfGhIjKlMnOpQrStUvWx given",
            "AbCdEfGhIjKlMnOpQrStUvWx",
            id="app-token",
        ),
    ],
)
def test_tokens_echoed_by_meta_are_redacted(message: str, secret: str) -> None:
    # Meta echoes a malformed token in its 190 message, and both message and reason end up in logs.
    body = error_body(190, message=message)

    error = parse_error_body(body)
    classification = classify_response(400, body, EMPTY_USAGE)

    assert error is not None and secret not in error.message
    assert "[redacted]" in error.message
    assert classification is not None and secret not in classification.reason
    assert classification.kind is AUTH


def test_ordinary_messages_are_not_redacted() -> None:
    message = "(#80004) There have been too many calls to this ad-account 66782684. Wait a bit and try again."

    error = parse_error_body(error_body(80004, message=message))

    assert error is not None and error.message == message


# --- reference section 3: every row, decided by code -----------------------------------------------------

SECTION_3_ROWS = [
    # throttle with ETA (without headers the ETA is simply unknown; see the ETA tests below)
    *[
        pytest.param(code, None, THROTTLED, f"business_use_case:{use_case}", id=f"{code}-buc-{use_case}")
        for code, use_case in BUC_USE_CASES.items()
    ],
    pytest.param(17, 2446079, THROTTLED, "ad_account", id="17/2446079-ad-account"),
    pytest.param(613, 1487742, THROTTLED, "ad_account", id="613/1487742-ad-account"),
    pytest.param(4, 1504022, THROTTLED, "app", id="4/1504022-app"),
    pytest.param(4, 1504039, THROTTLED, "app", id="4/1504039-app"),
    # throttle without ETA
    pytest.param(4, None, THROTTLED, "app", id="4-app"),
    pytest.param(17, None, THROTTLED, "user", id="17-user"),
    pytest.param(32, None, THROTTLED, "page", id="32-page"),
    pytest.param(341, None, THROTTLED, "app", id="341-app"),
    pytest.param(613, None, THROTTLED, "app", id="613-app"),
    pytest.param(613, 1996, THROTTLED, "app", id="613/1996-inconsistent-volume-app"),
    # transient
    pytest.param(1, None, TRANSIENT, None, id="1"),
    pytest.param(1, 99, TRANSIENT, None, id="1/99"),
    pytest.param(2, None, TRANSIENT, None, id="2"),
    pytest.param(2, 1504038, TRANSIENT, None, id="2/1504038"),
    pytest.param(2, 1504043, TRANSIENT, None, id="2/1504043"),
    pytest.param(960, None, TRANSIENT, None, id="960-batch-timeout"),
    # policy block
    pytest.param(368, None, POLICY_BLOCK, None, id="368"),
    # auth
    *[pytest.param(190, sub, AUTH, None, id=f"190/{sub}") for sub in (None, 458, 459, 460, 463, 464, 467)],
    pytest.param(102, None, AUTH, None, id="102-session"),
    pytest.param(492, None, AUTH, None, id="492-no-page-role"),
    # permission
    pytest.param(3, None, PERMISSION, None, id="3"),
    pytest.param(10, None, PERMISSION, None, id="10"),
    pytest.param(200, None, PERMISSION, None, id="200"),
    pytest.param(230, None, PERMISSION, None, id="230"),
    pytest.param(299, None, PERMISSION, None, id="299"),
    # invalid request
    pytest.param(100, None, INVALID_REQUEST, None, id="100"),
    pytest.param(100, 33, INVALID_REQUEST, None, id="100/33"),
    pytest.param(100, 1487124, INVALID_REQUEST, None, id="100/other-subcode"),
    pytest.param(506, None, INVALID_REQUEST, None, id="506"),
    pytest.param(803, None, INVALID_REQUEST, None, id="803"),
    pytest.param(1609005, None, INVALID_REQUEST, None, id="1609005"),
    pytest.param(2500, None, INVALID_REQUEST, None, id="2500"),
]


@pytest.mark.parametrize(("code", "subcode", "kind", "scope"), SECTION_3_ROWS)
@pytest.mark.parametrize("http_status", [400, 200, 403, 500])
def test_reference_table_rows_are_decided_by_code(
    code: int, subcode: int | None, kind: ErrorKind, scope: str | None, http_status: int
) -> None:
    # The status must not change the verdict for a known code, not even a 200 or a 5xx.
    body = error_body(code, subcode, message=f"(#{code}) something")

    classification = classify_response(http_status, body, EMPTY_USAGE)

    assert classification is not None
    assert classification.kind is kind
    assert classification.http_status == http_status
    assert (None if classification.scope is None else str(classification.scope)) == scope
    assert classification.error is not None and classification.error.code == code
    assert classification.error.subcode == subcode
    if kind is not THROTTLED:
        assert classification.eta_s is None


@pytest.mark.parametrize(
    ("code", "is_transient", "kind"),
    [
        pytest.param(17, True, THROTTLED, id="17-true-still-throttled"),
        pytest.param(4, True, THROTTLED, id="4-true-still-throttled"),
        pytest.param(80004, True, THROTTLED, id="80004-true-still-throttled"),
        pytest.param(190, True, AUTH, id="190-true-still-auth"),
        pytest.param(200, True, PERMISSION, id="200-true-still-permission"),
        pytest.param(100, True, INVALID_REQUEST, id="100-true-still-invalid"),
        pytest.param(368, True, POLICY_BLOCK, id="368-true-still-policy"),
        pytest.param(2, False, TRANSIENT, id="2-false-still-transient"),
        pytest.param(1, False, TRANSIENT, id="1-false-still-transient"),
    ],
)
def test_is_transient_is_ignored_for_known_codes(code: int, is_transient: bool, kind: ErrorKind) -> None:
    classification = classify_error(meta_error(code, is_transient=is_transient), 400, EMPTY_USAGE)

    assert classification.kind is kind


def test_17_2446079_with_is_transient_false_is_a_throttle() -> None:
    # Airbyte #86315 (2026): the ad-account throttle came with is_transient false.
    classification = classify_error(meta_error(17, 2446079, is_transient=False), 400, EMPTY_USAGE)

    assert classification.kind is THROTTLED
    assert classification.scope == ThrottleScope(ScopeKind.AD_ACCOUNT)


@pytest.mark.parametrize(
    ("code", "is_transient", "http_status", "kind"),
    [
        pytest.param(104, None, 400, UNKNOWN, id="104-not-listed"),
        pytest.param(9999, True, 400, TRANSIENT, id="unknown-is-transient-true"),
        pytest.param(9999, True, 200, TRANSIENT, id="unknown-is-transient-true-on-200"),
        pytest.param(9999, False, 400, UNKNOWN, id="unknown-is-transient-false"),
        pytest.param(9999, None, 400, UNKNOWN, id="unknown-no-flag-400"),
        pytest.param(9999, None, 404, UNKNOWN, id="unknown-no-flag-404"),
        pytest.param(9999, None, 200, UNKNOWN, id="unknown-no-flag-200"),
        pytest.param(9999, None, 500, TRANSIENT, id="unknown-500"),
        pytest.param(9999, False, 503, TRANSIENT, id="unknown-503-even-if-flag-false"),
        pytest.param(199, None, 400, UNKNOWN, id="199-just-below-permission-range"),
        pytest.param(300, None, 400, UNKNOWN, id="300-just-above-permission-range"),
        pytest.param(None, None, 400, UNKNOWN, id="no-code-400"),
        pytest.param(None, True, 400, TRANSIENT, id="no-code-is-transient"),
        pytest.param(None, None, 502, TRANSIENT, id="no-code-502"),
    ],
)
def test_unknown_codes_fall_back_to_is_transient_then_status(
    code: int | None, is_transient: bool | None, http_status: int, kind: ErrorKind
) -> None:
    classification = classify_error(meta_error(code, is_transient=is_transient), http_status, EMPTY_USAGE)

    assert classification.kind is kind
    assert classification.scope is None
    assert classification.eta_s is None


def test_unknown_code_with_429_is_an_app_throttle() -> None:
    classification = classify_error(meta_error(9999), 429, EMPTY_USAGE)

    assert classification.kind is THROTTLED
    assert classification.scope == ThrottleScope(ScopeKind.APP)


@pytest.mark.parametrize(
    ("code", "message", "reduce_request"),
    [
        pytest.param(
            1,
            "Please reduce the amount of data you're asking for, then retry your request",
            True,
            id="reduce",
        ),
        pytest.param(1, "PLEASE REDUCE THE AMOUNT OF DATA", True, id="reduce-any-case"),
        pytest.param(1, "An unknown error occurred", False, id="unknown-error"),
        pytest.param(2, "Please reduce the amount of data you're asking for", False, id="only-code-1"),
        pytest.param(100, "Please reduce the amount of data you're asking for", False, id="not-for-invalid"),
    ],
)
def test_reduce_request_only_for_code_1_asking_for_less_data(code: int, message: str, reduce_request: bool) -> None:
    classification = classify_error(meta_error(code, message=message), 500, EMPTY_USAGE)

    assert classification.reduce_request is reduce_request


# --- reference section 2: observed status pairings --------------------------------------------------------

SECTION_2_PAIRINGS = [
    pytest.param(
        400,
        error_body(80000, 2446079, "(#80000) There have been too many calls from this ad-account. Wait a bit."),
        THROTTLED,
        "business_use_case:ads_insights",
        False,
        id="400-80000/2446079",
    ),
    pytest.param(400, REFERENCE_80004_BODY, THROTTLED, "business_use_case:ads_management", False, id="400-80004"),
    pytest.param(400, error_body(17, None, "(#17) User request limit reached"), THROTTLED, "user", False, id="400-17"),
    pytest.param(
        400,
        error_body(
            17,
            2446079,
            "(#17) User request limit reached",
            is_transient=False,
            error_user_title="Ad Account Has Too Many API Calls",
        ),
        THROTTLED,
        "ad_account",
        False,
        id="400-17/2446079",
    ),
    pytest.param(
        400,
        error_body(2, None, "(#2) Service temporarily unavailable", is_transient=True),
        TRANSIENT,
        None,
        False,
        id="400-2-is-transient",
    ),
    *[
        pytest.param(
            400,
            error_body(190, sub, "Error validating access token: Session has expired"),
            AUTH,
            None,
            False,
            id=f"400-190/{sub}",
        )
        for sub in (458, 460, 463)
    ],
    pytest.param(400, error_body(100, None, "(#100) Missing permissions"), INVALID_REQUEST, None, False, id="400-100"),
    pytest.param(
        400,
        error_body(100, 33, "Unsupported get request. Object with ID 'x' does not exist"),
        INVALID_REQUEST,
        None,
        False,
        id="400-100/33",
    ),
    pytest.param(
        403,
        error_body(200, None, "(#200) Requires business_management permission to manage the object"),
        PERMISSION,
        None,
        False,
        id="403-200",
    ),
    pytest.param(500, error_body(1, None, "An unknown error occurred"), TRANSIENT, None, False, id="500-1"),
    pytest.param(500, error_body(1, 99, "An unknown error occurred"), TRANSIENT, None, False, id="500-1/99"),
    pytest.param(
        500,
        error_body(1, None, "Please reduce the amount of data you're asking for, then retry your request"),
        TRANSIENT,
        None,
        True,
        id="500-1-reduce",
    ),
    pytest.param(
        400,
        "<!DOCTYPE html><html><head><title>Facebook | Error</title></head><body>Sorry, something went wrong."
        "</body></html>",
        TRANSIENT,
        None,
        False,
        id="400-html-facebook-error",
    ),
    pytest.param(200, "Service Unavailable", TRANSIENT, None, False, id="200-service-unavailable"),
]


@pytest.mark.parametrize(("http_status", "body", "kind", "scope", "reduce_request"), SECTION_2_PAIRINGS)
def test_reference_status_pairings(
    http_status: int, body: str, kind: ErrorKind, scope: str | None, reduce_request: bool
) -> None:
    for raw in (body, body.encode()):
        classification = classify_response(http_status, raw, EMPTY_USAGE)

        assert classification is not None
        assert classification.kind is kind
        assert (None if classification.scope is None else str(classification.scope)) == scope
        assert classification.reduce_request is reduce_request
        assert classification.http_status == http_status


# --- throttle scope keys and ETAs ------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "use_case"), list(BUC_USE_CASES.items()))
def test_buc_throttle_takes_key_and_eta_from_the_matching_header_entry(code: int, use_case: str) -> None:
    usage = buc_usage(
        ("66782684", "some_other_type", 100.0, 50 * 60.0),
        ("66782684", use_case, 100.0, 19 * 60.0),
    )

    classification = classify_error(meta_error(code), 400, usage)

    assert classification.kind is THROTTLED
    assert classification.scope == ThrottleScope(ScopeKind.BUSINESS_USE_CASE, f"66782684:{use_case}")
    assert str(classification.scope) == f"business_use_case:66782684:{use_case}"
    assert classification.eta_s == 19 * 60.0


def test_buc_throttle_from_real_headers() -> None:
    headers = {
        "x-business-use-case-usage": json.dumps(
            {
                "66782684": [
                    {"type": "ads_insights", "call_count": 20, "estimated_time_to_regain_access": 0},
                    {"type": "ads_management", "call_count": "118", "estimated_time_to_regain_access": "47"},
                ]
            }
        )
    }

    classification = classify_response(400, REFERENCE_80004_BODY, parse_usage(headers))

    assert classification is not None
    assert str(classification.scope) == "business_use_case:66782684:ads_management"
    assert classification.eta_s == 47 * 60.0


@pytest.mark.parametrize(
    ("entries", "expected_key", "expected_eta_s"),
    [
        pytest.param(
            [("1", "ads_management", 100.0, 0.0), ("2", "ads_management", 40.0, 600.0)],
            "2:ads_management",
            600.0,
            id="prefer-entry-with-eta",
        ),
        pytest.param(
            [("1", "ads_management", 100.0, 300.0), ("2", "ads_management", 40.0, 600.0)],
            "2:ads_management",
            600.0,
            id="longest-eta-among-blocked",
        ),
        pytest.param(
            [
                ("1", "ads_management", 60.0, 0.0),
                ("2", "ads_management", 99.0, 0.0),
                ("3", "ads_management", None, None),
            ],
            "2:ads_management",
            None,
            id="no-eta-highest-pct",
        ),
        pytest.param(
            [("1", "ads_management", 99.0, 0.0), ("1", "ads_insights", 100.0, 1200.0)],
            "1:ads_management",
            None,
            id="other-use-case-eta-not-borrowed",
        ),
        pytest.param(
            [("1", "ads_management", None, None)],
            "1:ads_management",
            None,
            id="entry-without-numbers",
        ),
        pytest.param(
            [("1", "ads_insights", 100.0, 1200.0)],
            "ads_management",
            1200.0,
            id="no-matching-type-any-buc-eta",
        ),
        pytest.param([], "ads_management", None, id="no-header"),
    ],
)
def test_buc_entry_selection(
    entries: list[tuple[str, str, float | None, float | None]],
    expected_key: str,
    expected_eta_s: float | None,
) -> None:
    classification = classify_error(meta_error(80004), 400, buc_usage(*entries))

    assert classification.scope == ThrottleScope(ScopeKind.BUSINESS_USE_CASE, expected_key)
    assert classification.eta_s == expected_eta_s


def test_unmatched_buc_throttle_also_uses_ad_account_reset() -> None:
    usage = Usage(ad_account=AdAccountUsage(util_pct=100.0, reset_s=90.0, access_tier=None))

    classification = classify_error(meta_error(80000), 400, usage)

    assert classification.scope == ThrottleScope(ScopeKind.BUSINESS_USE_CASE, "ads_insights")
    assert classification.eta_s == 90.0


def test_matched_buc_throttle_ignores_ad_account_reset() -> None:
    usage = Usage(
        business_use_cases=buc_usage(("1", "ads_management", 100.0, 60.0)).business_use_cases,
        ad_account=AdAccountUsage(util_pct=100.0, reset_s=900.0, access_tier=None),
    )

    classification = classify_error(meta_error(80004), 400, usage)

    assert classification.eta_s == 60.0


def test_buc_code_wins_over_ad_account_subcode() -> None:
    # 80000/2446079 and 80004/2446079 carry the ad-account subcode but name a use case.
    classification = classify_error(meta_error(80004, 2446079), 400, buc_usage(("act", "ads_management", 1.0, 0.0)))

    assert classification.scope == ThrottleScope(ScopeKind.BUSINESS_USE_CASE, "act:ads_management")


@pytest.mark.parametrize(("code", "subcode"), [(17, 2446079), (613, 1487742)])
@pytest.mark.parametrize(
    ("usage", "expected_key", "expected_eta_s"),
    [
        pytest.param(EMPTY_USAGE, None, None, id="no-headers"),
        pytest.param(
            buc_usage(("66782684", "ads_management", 100.0, 19 * 60.0)),
            "66782684",
            19 * 60.0,
            id="one-buc-id",
        ),
        pytest.param(
            buc_usage(("66782684", "ads_management", 100.0, 0.0), ("66782684", "ads_insights", 10.0, 120.0)),
            "66782684",
            120.0,
            id="one-id-several-entries",
        ),
        pytest.param(
            buc_usage(("111", "ads_management", 100.0, 0.0), ("222", "ads_management", 10.0, 0.0)),
            None,
            None,
            id="several-ids-ambiguous",
        ),
        pytest.param(
            Usage(ad_account=AdAccountUsage(util_pct=100.0, reset_s=300.0, access_tier=None)),
            None,
            300.0,
            id="reset-time-duration-seconds",
        ),
        pytest.param(
            Usage(
                business_use_cases=buc_usage(("9", "ads_management", 100.0, 600.0)).business_use_cases,
                ad_account=AdAccountUsage(util_pct=100.0, reset_s=300.0, access_tier=None),
            ),
            "9",
            600.0,
            id="largest-of-buc-eta-and-reset",
        ),
        pytest.param(
            Usage(ad_account=AdAccountUsage(util_pct=100.0, reset_s=0.0, access_tier=None)),
            None,
            None,
            id="zero-reset-is-no-eta",
        ),
    ],
)
def test_ad_account_throttle_scope_and_eta(
    code: int, subcode: int, usage: Usage, expected_key: str | None, expected_eta_s: float | None
) -> None:
    classification = classify_error(meta_error(code, subcode), 400, usage)

    assert classification.kind is THROTTLED
    assert classification.scope == ThrottleScope(ScopeKind.AD_ACCOUNT, expected_key)
    assert classification.eta_s == expected_eta_s


@pytest.mark.parametrize(
    ("code", "subcode", "scope"),
    [
        pytest.param(4, 1504022, ThrottleScope(ScopeKind.APP), id="4/1504022"),
        pytest.param(4, 1504039, ThrottleScope(ScopeKind.APP), id="4/1504039"),
        pytest.param(4, None, ThrottleScope(ScopeKind.APP), id="4"),
        pytest.param(17, None, ThrottleScope(ScopeKind.USER), id="17"),
        pytest.param(32, None, ThrottleScope(ScopeKind.PAGE), id="32"),
        pytest.param(613, 1996, ThrottleScope(ScopeKind.APP), id="613/1996"),
    ],
)
@pytest.mark.parametrize(
    ("usage", "expected_eta_s"),
    [
        pytest.param(EMPTY_USAGE, None, id="no-headers"),
        pytest.param(buc_usage(("1", "pages", 100.0, 0.0)), None, id="buc-eta-zero"),
        pytest.param(buc_usage(("1", "pages", 100.0, 1140.0)), 1140.0, id="buc-eta"),
        pytest.param(Usage(ad_account=AdAccountUsage(None, 45.0, None)), 45.0, id="ad-account-reset"),
        pytest.param(
            Usage(
                business_use_cases=buc_usage(("1", "a", 1.0, 60.0), ("2", "b", 1.0, 180.0)).business_use_cases,
                ad_account=AdAccountUsage(None, 120.0, None),
            ),
            180.0,
            id="largest-known",
        ),
    ],
)
def test_non_buc_throttle_eta_comes_from_headers(
    code: int, subcode: int | None, scope: ThrottleScope, usage: Usage, expected_eta_s: float | None
) -> None:
    classification = classify_error(meta_error(code, subcode), 400, usage)

    assert classification.kind is THROTTLED
    assert classification.scope == scope
    assert classification.eta_s == expected_eta_s


def test_ad_account_subcode_on_a_non_throttle_code_changes_nothing() -> None:
    classification = classify_error(meta_error(100, 2446079), 400, EMPTY_USAGE)

    assert classification.kind is INVALID_REQUEST
    assert classification.scope is None


# --- classify_response: bodies that are not Meta errors ---------------------------------------------------


@pytest.mark.parametrize(
    ("http_status", "body", "kind", "reason"),
    [
        pytest.param(429, "<html>Too Many Requests</html>", THROTTLED, "HTTP 429 with an HTML body", id="429-html"),
        pytest.param(429, None, THROTTLED, "HTTP 429 with an empty body", id="429-empty"),
        pytest.param(500, "", TRANSIENT, "HTTP 500 with an empty body", id="500-empty"),
        pytest.param(502, "<html><body>Bad Gateway</body></html>", TRANSIENT, "HTTP 502 with an HTML body", id="502"),
        pytest.param(503, "Service Unavailable", TRANSIENT, "HTTP 503 with a non-JSON body", id="503-text"),
        pytest.param(504, b"\xff\xfe garbage", TRANSIENT, "HTTP 504 with a non-JSON body", id="504-binary"),
        pytest.param(
            400,
            "<html><title>Facebook | Error</title></html>",
            TRANSIENT,
            "HTTP 400 with an HTML body",
            id="400-html",
        ),
        pytest.param(400, None, TRANSIENT, "HTTP 400 with an empty body", id="400-empty"),
        pytest.param(200, "Service Unavailable", TRANSIENT, "HTTP 200: Service Unavailable", id="200-service-unav"),
        pytest.param(
            200,
            b"<html>503 Service Unavailable</html>",
            TRANSIENT,
            "HTTP 200: Service Unavailable",
            id="200-html-su",
        ),
        pytest.param(200, "garbage", UNKNOWN, "response body is not JSON", id="200-garbage"),
        pytest.param(200, "", UNKNOWN, "response body is not JSON", id="200-empty"),
        pytest.param(200, "{truncated", UNKNOWN, "response body is not JSON", id="200-truncated-json"),
        pytest.param(204, None, UNKNOWN, "response body is not JSON", id="204-none"),
        pytest.param(404, "<html>Not Found</html>", UNKNOWN, "HTTP 404 with an HTML body", id="404-html"),
        pytest.param(403, "Forbidden", UNKNOWN, "HTTP 403 with a non-JSON body", id="403-text"),
        pytest.param(401, "", UNKNOWN, "HTTP 401 with an empty body", id="401-empty"),
        pytest.param(302, "", UNKNOWN, "HTTP 302 with an empty body", id="302-redirect"),
    ],
)
def test_non_json_bodies_are_classified_by_status(
    http_status: int, body: bytes | str | None, kind: ErrorKind, reason: str
) -> None:
    classification = classify_response(http_status, body, EMPTY_USAGE)

    assert classification == Classification(
        kind,
        http_status,
        reason,
        error=None,
        scope=ThrottleScope(ScopeKind.APP) if kind is THROTTLED else None,
    )


def test_non_json_429_takes_eta_from_headers() -> None:
    usage = buc_usage(("1", "pages", 100.0, 240.0))

    classification = classify_response(429, "", usage)

    assert classification is not None and classification.eta_s == 240.0


@pytest.mark.parametrize(
    ("http_status", "body"),
    [
        pytest.param(200, '{"id": "10158", "name": "Ada"}', id="me"),
        pytest.param(200, b'{"id": "10158"}', id="bytes"),
        pytest.param(201, '{"success": true}', id="201"),
        pytest.param(200, "[]", id="list"),
        pytest.param(200, '[{"error": {"code": 4}}]', id="list-containing-error"),
        pytest.param(200, '"text"', id="json-string"),
        pytest.param(200, "null", id="json-null"),
        pytest.param(200, "42", id="json-number"),
        pytest.param(200, '{"id": "1", "error": null}', id="error-null"),
        pytest.param(299, "{}", id="edge-of-2xx"),
    ],
)
def test_2xx_json_without_error_is_success(http_status: int, body: bytes | str) -> None:
    assert classify_response(http_status, body, EMPTY_USAGE) is None


@pytest.mark.parametrize(
    ("http_status", "body", "kind"),
    [
        pytest.param(200, error_body(190, 463, "Session has expired"), AUTH, id="200-auth"),
        pytest.param(200, error_body(4, None, "(#4) Application request limit reached"), THROTTLED, id="200-4"),
        pytest.param(200, error_body(2, None, "Service temporarily unavailable"), TRANSIENT, id="200-2"),
        pytest.param(200, error_body(None, None, None), UNKNOWN, id="200-empty-error-object"),
        pytest.param(200, '{"error": "invalid_token"}', UNKNOWN, id="200-error-string"),
        pytest.param(400, '{"error": "invalid_token"}', UNKNOWN, id="400-error-string"),
        pytest.param(500, '{"error": "internal"}', TRANSIENT, id="500-error-string"),
        pytest.param(429, '{"error": ["x"]}', THROTTLED, id="429-error-list"),
    ],
)
def test_json_with_an_error_is_an_error_whatever_the_status(http_status: int, body: str, kind: ErrorKind) -> None:
    classification = classify_response(http_status, body, EMPTY_USAGE)

    assert classification is not None
    assert classification.kind is kind
    assert classification.error is not None


def test_error_that_is_not_an_object_keeps_its_text_as_message() -> None:
    classification = classify_response(400, '{"error": "invalid_token"}', EMPTY_USAGE)

    assert classification is not None
    assert classification.error == MetaError(None, None, "invalid_token", None, None, None)
    assert classification.reason == "HTTP 400: invalid_token"


@pytest.mark.parametrize(
    ("http_status", "body", "kind"),
    [
        pytest.param(500, "{}", TRANSIENT, id="500-object"),
        pytest.param(503, "[]", TRANSIENT, id="503-list"),
        pytest.param(429, '{"message": "slow down"}', THROTTLED, id="429"),
        pytest.param(404, "[]", UNKNOWN, id="404"),
        pytest.param(400, '{"id": "1"}', UNKNOWN, id="400-json-is-not-the-html-page"),
    ],
)
def test_non_2xx_json_without_error_is_classified_by_status(http_status: int, body: str, kind: ErrorKind) -> None:
    classification = classify_response(http_status, body, EMPTY_USAGE)

    assert classification is not None
    assert classification.kind is kind
    assert classification.error is None
    assert classification.reason == f"HTTP {http_status} with a JSON body that has no error object"


def test_custom_rules_reach_classify_response() -> None:
    rules = ThrottleRules(business_use_case_codes={80010: "new_thing"})

    classification = classify_response(400, error_body(80010), EMPTY_USAGE, rules)

    assert classification is not None
    assert classification.scope == ThrottleScope(ScopeKind.BUSINESS_USE_CASE, "new_thing")


# --- reason -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "http_status", "reason"),
    [
        pytest.param(
            meta_error(4, message="(#4) Application request limit reached"),
            400,
            "(#4) Application request limit reached",
            id="meta-prefix-kept",
        ),
        pytest.param(
            meta_error(17, 2446079, "(#17) User request limit reached"),
            400,
            "(#17) User request limit reached [subcode 2446079]",
            id="subcode-appended",
        ),
        pytest.param(
            meta_error(190, 463, "Error validating access token: Session has expired"),
            400,
            "(#190) Error validating access token: Session has expired [subcode 463]",
            id="prefix-added",
        ),
        pytest.param(meta_error(368), 400, "(#368)", id="code-without-message"),
        pytest.param(meta_error(None, message="Oops"), 502, "HTTP 502: Oops", id="no-code"),
        pytest.param(meta_error(None), 400, "HTTP 400 error without a code", id="nothing"),
        pytest.param(
            meta_error(41, message="(#4) looks like another code"),
            400,
            "(#41) (#4) looks like another code",
            id="prefix-of-another-code",
        ),
        pytest.param(
            meta_error(1, message="An unknown\n   error   occurred"),
            500,
            "(#1) An unknown error occurred",
            id="spaces",
        ),
    ],
)
def test_reason_text(error: MetaError, http_status: int, reason: str) -> None:
    assert classify_error(error, http_status, EMPTY_USAGE).reason == reason


def test_reason_is_short_for_long_messages() -> None:
    classification = classify_error(meta_error(100, message="x" * 5000), 400, EMPTY_USAGE)

    assert len(classification.reason) < 250
    assert classification.reason.endswith("…")


def test_reason_never_carries_headers_or_body_content() -> None:
    usage = parse_usage(
        {
            "X-Business-Use-Case-Usage": json.dumps(
                {"5550001": [{"type": "ads_management", "estimated_time_to_regain_access": 5}]}
            )
        }
    )
    html = "<html>https://graph.facebook.com/v25.0/me?access_token=EAAsecret123 fbtrace</html>"

    for classification in (
        classify_response(400, REFERENCE_80004_BODY, usage),
        classify_response(400, html, usage),
        classify_response(200, html, usage),
        classify_response(429, html, usage),
    ):
        assert classification is not None
        assert "5550001" not in classification.reason
        assert "graph.facebook.com" not in classification.reason
        assert "EAAsecret" not in classification.reason
        assert "fbtrace" not in classification.reason.lower()


# --- value types ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "text"),
    [
        pytest.param(ThrottleScope(ScopeKind.APP), "app", id="app"),
        pytest.param(ThrottleScope(ScopeKind.USER), "user", id="user"),
        pytest.param(ThrottleScope(ScopeKind.PAGE), "page", id="page"),
        pytest.param(ThrottleScope(ScopeKind.AD_ACCOUNT), "ad_account", id="ad-account"),
        pytest.param(ThrottleScope(ScopeKind.AD_ACCOUNT, "66782684"), "ad_account:66782684", id="ad-account-key"),
        pytest.param(
            ThrottleScope(ScopeKind.BUSINESS_USE_CASE, "123:ads_management"),
            "business_use_case:123:ads_management",
            id="buc-key",
        ),
        pytest.param(
            ThrottleScope(ScopeKind.BUSINESS_USE_CASE, "ads_management"),
            "business_use_case:ads_management",
            id="buc-type-only",
        ),
    ],
)
def test_scope_as_text(scope: ThrottleScope, text: str) -> None:
    assert str(scope) == text


def test_enum_values_are_stable_strings() -> None:
    # Other modules and stored state use these strings.
    assert [kind.value for kind in ErrorKind] == [
        "throttled",
        "transient",
        "auth",
        "permission",
        "policy_block",
        "invalid_request",
        "unknown",
    ]
    assert [kind.value for kind in ScopeKind] == ["app", "user", "page", "business_use_case", "ad_account"]


def test_default_throttle_rules() -> None:
    rules = DEFAULT_THROTTLE_RULES

    assert rules == ThrottleRules()
    assert rules.app_codes == {4, 341, 613}
    assert rules.user_codes == {17}
    assert rules.page_codes == {32}
    assert dict(rules.business_use_case_codes) == BUC_USE_CASES
    assert rules.ad_account_subcodes == {2446079, 1487742}
    assert rules.all_codes == {4, 341, 613, 17, 32, *BUC_USE_CASES}


def test_throttle_rules_copy_a_plain_dict_and_stay_read_only() -> None:
    codes = {80010: "new_thing"}
    rules = ThrottleRules(business_use_case_codes=codes)

    codes[80011] = "later"

    assert dict(rules.business_use_case_codes) == {80010: "new_thing"}
    with pytest.raises(TypeError):
        rules.business_use_case_codes[80012] = "x"  # type: ignore[index]
    assert hash(rules) == hash(ThrottleRules(business_use_case_codes={80010: "new_thing"}))
    assert rules == ThrottleRules(business_use_case_codes={80010: "new_thing"})
    assert rules != DEFAULT_THROTTLE_RULES


def test_throttle_rules_reject_a_code_in_two_scopes() -> None:
    with pytest.raises(ValueError, match="613"):
        ThrottleRules(user_codes=frozenset({17, 613}))


@pytest.mark.parametrize(
    ("rules", "code", "subcode", "kind", "scope"),
    [
        pytest.param(ThrottleRules(app_codes=frozenset({4, 341})), 613, None, UNKNOWN, None, id="613-removed"),
        pytest.param(ThrottleRules(user_codes=frozenset({17, 9000})), 9000, None, THROTTLED, "user", id="new-user"),
        pytest.param(ThrottleRules(page_codes=frozenset()), 32, None, UNKNOWN, None, id="32-removed"),
        pytest.param(ThrottleRules(ad_account_subcodes=frozenset()), 17, 2446079, THROTTLED, "user", id="no-narrowing"),
        pytest.param(
            ThrottleRules(ad_account_subcodes=frozenset({1885172})),
            17,
            1885172,
            THROTTLED,
            "ad_account",
            id="new-subcode",
        ),
    ],
)
def test_throttle_rules_are_configurable(
    rules: ThrottleRules, code: int, subcode: int | None, kind: ErrorKind, scope: str | None
) -> None:
    classification = classify_error(meta_error(code, subcode), 400, EMPTY_USAGE, rules)

    assert classification.kind is kind
    assert (None if classification.scope is None else str(classification.scope)) == scope


def test_non_throttle_classification_has_no_scope_or_eta() -> None:
    usage = buc_usage(("1", "ads_management", 100.0, 600.0))

    classification = classify_error(meta_error(190, 463), 400, usage)

    assert classification.scope is None
    assert classification.eta_s is None
    assert classification.reduce_request is False
