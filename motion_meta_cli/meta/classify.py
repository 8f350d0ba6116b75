"""Classify a failed Graph API response: what Meta said, not what to do about it.

The decision goes by ``error.code`` (and ``error_subcode``) first, because Meta's HTTP statuses do not map to
error classes (throttles come back as 400, a 200 can carry an error) and ``is_transient`` has been seen both
true and false on the same throttle code. The status decides only for bodies that are not Meta JSON, and for
unknown codes. Deciding how long to wait and acting on it belongs to other modules.

Example::

    classification = classify_response(response.status_code, response.content, parse_usage(response.headers))
    if classification is None:
        ...  # success
    elif classification.kind is ErrorKind.THROTTLED:
        ...  # pause classification.scope, for classification.eta_s if known
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from motion_meta_cli.meta.usage import BusinessUseCaseUsage, Usage

# Meta's messages can be long; the reason is for one log line.
_MAX_MESSAGE_CHARS = 200


class ErrorKind(StrEnum):
    """What kind of failure a response is; each kind calls for a different client action."""

    THROTTLED = "throttled"
    TRANSIENT = "transient"
    AUTH = "auth"
    PERMISSION = "permission"
    POLICY_BLOCK = "policy_block"
    INVALID_REQUEST = "invalid_request"
    UNKNOWN = "unknown"


class ScopeKind(StrEnum):
    """Which object a rate limit was counted against."""

    APP = "app"
    USER = "user"
    PAGE = "page"
    BUSINESS_USE_CASE = "business_use_case"
    AD_ACCOUNT = "ad_account"


@dataclass(frozen=True, slots=True)
class ThrottleScope:
    """The bucket a throttle applies to; ``key`` names the object when Meta's response identifies it."""

    kind: ScopeKind
    key: str | None = None

    def __str__(self) -> str:
        return self.kind.value if self.key is None else f"{self.kind.value}:{self.key}"


@dataclass(frozen=True, slots=True)
class MetaError:
    """The ``error`` object of a Graph API response body."""

    code: int | None
    subcode: int | None
    message: str
    type: str | None
    is_transient: bool | None
    fbtrace_id: str | None


_BUSINESS_USE_CASE_CODES: Mapping[int, str] = MappingProxyType(
    {
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
)


def _default_business_use_case_codes() -> Mapping[int, str]:
    return _BUSINESS_USE_CASE_CODES


@dataclass(frozen=True, slots=True)
class ThrottleRules:
    """Which error codes mean rate limiting, and which bucket each one points at.

    Override a field when Meta documents a new throttle code, e.g.
    ``ThrottleRules(business_use_case_codes={**DEFAULT_THROTTLE_RULES.business_use_case_codes, 80010: "x"})``.
    """

    # 4 and 341 are app-wide. 613 is a "custom" limit and Meta does not say which object it covers, so it
    # pauses the whole app: pausing too much costs a delay, pausing too little lengthens the block.
    app_codes: frozenset[int] = frozenset({4, 341, 613})
    user_codes: frozenset[int] = frozenset({17})
    page_codes: frozenset[int] = frozenset({32})
    # A mapping is not hashable, so it stays out of the generated __hash__ (equality still compares it).
    business_use_case_codes: Mapping[int, str] = field(default_factory=_default_business_use_case_codes, hash=False)
    # On a non-BUC throttle code these subcodes narrow the scope to the ad account (17/2446079, 613/1487742).
    ad_account_subcodes: frozenset[int] = frozenset({2446079, 1487742})

    def __post_init__(self) -> None:
        # A caller may pass a plain dict; copy it so the rules cannot change after construction.
        if not isinstance(self.business_use_case_codes, MappingProxyType):
            object.__setattr__(self, "business_use_case_codes", MappingProxyType(dict(self.business_use_case_codes)))
        # A code in two sets would make the scope depend on the order of the checks below.
        groups = (self.app_codes, self.user_codes, self.page_codes, frozenset(self.business_use_case_codes))
        seen: set[int] = set()
        for group in groups:
            overlap = seen & group
            if overlap:
                raise ValueError(f"throttle codes listed for more than one scope: {sorted(overlap)}")
            seen |= group

    @property
    def all_codes(self) -> frozenset[int]:
        """Every code that means rate limiting."""
        return self.app_codes | self.user_codes | self.page_codes | frozenset(self.business_use_case_codes)


DEFAULT_THROTTLE_RULES = ThrottleRules()


@dataclass(frozen=True, slots=True)
class Classification:
    """The verdict on one failed response; ``scope`` and ``eta_s`` are set only for THROTTLED."""

    kind: ErrorKind
    http_status: int
    reason: str
    error: MetaError | None = None
    scope: ThrottleScope | None = None
    eta_s: float | None = None
    reduce_request: bool = False


# Codes outside the throttle rules, decided by code alone (reference section 3).
_KIND_BY_CODE: Mapping[int, ErrorKind] = MappingProxyType(
    {
        1: ErrorKind.TRANSIENT,
        2: ErrorKind.TRANSIENT,
        960: ErrorKind.TRANSIENT,  # batch timeout
        368: ErrorKind.POLICY_BLOCK,
        102: ErrorKind.AUTH,
        190: ErrorKind.AUTH,
        492: ErrorKind.AUTH,  # the user lacks a role on the Page: a new token fails the same way
        3: ErrorKind.PERMISSION,
        10: ErrorKind.PERMISSION,
        100: ErrorKind.INVALID_REQUEST,
        506: ErrorKind.INVALID_REQUEST,
        803: ErrorKind.INVALID_REQUEST,
        2500: ErrorKind.INVALID_REQUEST,
        1609005: ErrorKind.INVALID_REQUEST,
    }
)
_PERMISSION_CODE_RANGE = range(200, 300)

# Meta echoes a malformed token inside its own message ("Malformed access token EAAG..."), and reasons end up
# in logs. User and Page tokens start with EA (IG for Instagram); app tokens are "<app id>|<secret>".
_TOKEN_PATTERN = re.compile(r"\b(?:EA|IG)[A-Za-z0-9]{20,}|\b\d{6,}\|[A-Za-z0-9_-]{10,}")
_REDACTED = "[redacted]"


def parse_error_body(body: bytes | str | None) -> MetaError | None:
    """Read the ``error`` object of a response body; None when the body is not JSON or has no such object."""
    payload = _decode_json(body)
    if not isinstance(payload, dict):
        return None
    return _meta_error_from(payload.get("error"))


def classify_error(
    error: MetaError, http_status: int, usage: Usage, rules: ThrottleRules = DEFAULT_THROTTLE_RULES
) -> Classification:
    """Classify a Meta error by code and subcode; status and ``is_transient`` count only for unknown codes."""
    reason = _reason(error, http_status)
    code = error.code
    if code is not None:
        throttle = _throttle(code, error.subcode, usage, rules)
        if throttle is not None:
            scope, eta_s = throttle
            return Classification(ErrorKind.THROTTLED, http_status, reason, error, scope, eta_s)
        kind = _KIND_BY_CODE.get(code)
        if kind is None and code in _PERMISSION_CODE_RANGE:
            kind = ErrorKind.PERMISSION
        if kind is not None:
            # Code 1 is also how Meta says a response would be too large; retrying unchanged fails again.
            reduce_request = code == 1 and "reduce the amount of data" in error.message.lower()
            return Classification(kind, http_status, reason, error, reduce_request=reduce_request)
    if error.is_transient:
        return Classification(ErrorKind.TRANSIENT, http_status, reason, error)
    if http_status == 429:
        scope, eta_s = _app_throttle(usage)
        return Classification(ErrorKind.THROTTLED, http_status, reason, error, scope, eta_s)
    if http_status >= 500:
        return Classification(ErrorKind.TRANSIENT, http_status, reason, error)
    return Classification(ErrorKind.UNKNOWN, http_status, reason, error)


def classify_response(
    http_status: int, body: bytes | str | None, usage: Usage, rules: ThrottleRules = DEFAULT_THROTTLE_RULES
) -> Classification | None:
    """Classify a whole response; None means success (a 2xx JSON body without an ``error``)."""
    payload = _decode_json(body)
    if payload is _NOT_JSON:
        return _classify_non_json(http_status, _decode_text(body), usage)
    if isinstance(payload, dict) and payload.get("error") is not None:
        error = _meta_error_from(payload["error"])
        if error is None:
            # Not Meta's error shape (e.g. a bare string); still an error, with no code to go by.
            error = MetaError(None, None, _clean_message(payload["error"]), None, None, None)
        return classify_error(error, http_status, usage, rules)
    if 200 <= http_status < 300:
        # Any other JSON is success here; whether it has the expected shape is the caller's question.
        return None
    reason = f"HTTP {http_status} with a JSON body that has no error object"
    if http_status == 429:
        scope, eta_s = _app_throttle(usage)
        return Classification(ErrorKind.THROTTLED, http_status, reason, scope=scope, eta_s=eta_s)
    if http_status >= 500:
        return Classification(ErrorKind.TRANSIENT, http_status, reason)
    return Classification(ErrorKind.UNKNOWN, http_status, reason)


def _classify_non_json(http_status: int, text: str, usage: Usage) -> Classification:
    if 200 <= http_status < 300:
        # The official SDK checks 2xx bodies for this text: Meta's front end sends it with a 200.
        if "service unavailable" in text.lower():
            return Classification(ErrorKind.TRANSIENT, http_status, f"HTTP {http_status}: Service Unavailable")
        return Classification(ErrorKind.UNKNOWN, http_status, "response body is not JSON")
    reason = f"HTTP {http_status} with {_describe_body(text)}"
    if http_status == 429:
        scope, eta_s = _app_throttle(usage)
        return Classification(ErrorKind.THROTTLED, http_status, reason, scope=scope, eta_s=eta_s)
    # Meta's HTML "Facebook | Error" page comes with a 400 and goes away on retry.
    if http_status >= 500 or http_status == 400:
        return Classification(ErrorKind.TRANSIENT, http_status, reason)
    return Classification(ErrorKind.UNKNOWN, http_status, reason)


def _throttle(
    code: int, subcode: int | None, usage: Usage, rules: ThrottleRules
) -> tuple[ThrottleScope, float | None] | None:
    use_case = rules.business_use_case_codes.get(code)
    if use_case is not None:
        entry = _matching_entry(use_case, usage.business_use_cases)
        if entry is None:
            return ThrottleScope(ScopeKind.BUSINESS_USE_CASE, use_case), _header_eta_s(usage)
        eta_s = entry.eta_s if entry.eta_s is not None and entry.eta_s > 0 else None
        return ThrottleScope(ScopeKind.BUSINESS_USE_CASE, f"{entry.business_id}:{use_case}"), eta_s
    if code in rules.app_codes:
        kind = ScopeKind.APP
    elif code in rules.user_codes:
        kind = ScopeKind.USER
    elif code in rules.page_codes:
        kind = ScopeKind.PAGE
    else:
        return None
    if subcode is not None and subcode in rules.ad_account_subcodes:
        return ThrottleScope(ScopeKind.AD_ACCOUNT, _ad_account_id(usage)), _header_eta_s(usage)
    return ThrottleScope(kind), _header_eta_s(usage)


def _app_throttle(usage: Usage) -> tuple[ThrottleScope, float | None]:
    # A 429 without a Meta code names no object; the app is the scope that is sure to cover it.
    return ThrottleScope(ScopeKind.APP), _header_eta_s(usage)


def _matching_entry(use_case: str, entries: tuple[BusinessUseCaseUsage, ...]) -> BusinessUseCaseUsage | None:
    candidates = [entry for entry in entries if entry.type == use_case]
    if not candidates:
        return None
    # The entry with an ETA is the one that is blocked; otherwise the fullest one most likely tripped.
    blocked = [entry for entry in candidates if entry.eta_s is not None and entry.eta_s > 0]
    if blocked:
        return max(blocked, key=lambda entry: (entry.eta_s or 0.0, _pct_key(entry)))
    return max(candidates, key=_pct_key)


def _pct_key(entry: BusinessUseCaseUsage) -> float:
    pct = entry.max_pct
    return -1.0 if pct is None else pct


def _header_eta_s(usage: Usage) -> float | None:
    # Used when no BUC entry matches the error: any blocked use case, or the ad account's reset, is the best
    # estimate of how long this block lasts.
    candidates = [usage.max_eta_s()]
    if usage.ad_account is not None:
        candidates.append(usage.ad_account.reset_s)
    positive = [value for value in candidates if value is not None and value > 0]
    return max(positive) if positive else None


def _ad_account_id(usage: Usage) -> str | None:
    # Only the BUC header carries object ids (Meta's sample uses a bare ad-account number). With several ids
    # there is no telling which account was throttled.
    ids = {entry.business_id for entry in usage.business_use_cases}
    return ids.pop() if len(ids) == 1 else None


def _reason(error: MetaError, http_status: int) -> str:
    message = _shorten(error.message)
    if error.code is None:
        return f"HTTP {http_status}: {message}" if message else f"HTTP {http_status} error without a code"
    prefix = f"(#{error.code})"
    # Meta usually starts its message with "(#code)" already.
    reason = message if message.startswith(prefix) else f"{prefix} {message}".rstrip()
    if error.subcode is not None:
        reason += f" [subcode {error.subcode}]"
    return reason


def _meta_error_from(value: object) -> MetaError | None:
    if not isinstance(value, dict):
        return None
    return MetaError(
        code=_int_or_none(value.get("code")),
        subcode=_int_or_none(value.get("error_subcode")),
        message=_clean_message(value.get("message")),
        type=_str_or_none(value.get("type")),
        is_transient=_bool_or_none(value.get("is_transient")),
        fbtrace_id=_str_or_none(value.get("fbtrace_id")),
    )


def _clean_message(value: object) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return _TOKEN_PATTERN.sub(_REDACTED, text)


def _int_or_none(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def _bool_or_none(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def _str_or_none(value: object) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE_CHARS else text[:_MAX_MESSAGE_CHARS] + "…"


class _NotJson:
    """Marker for a body that did not decode as JSON (None is a valid JSON value)."""


_NOT_JSON = _NotJson()


def _decode_text(body: bytes | str | None) -> str:
    if body is None:
        return ""
    if isinstance(body, bytes):
        # utf-8-sig drops a byte-order mark, which json.loads would reject.
        return body.decode("utf-8-sig", errors="replace")
    return body


def _decode_json(body: bytes | str | None) -> Any:
    text = _decode_text(body)
    if not text.strip():
        return _NOT_JSON
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return _NOT_JSON


def _describe_body(text: str) -> str:
    stripped = text.lstrip()
    if not stripped:
        return "an empty body"
    if stripped.startswith("<"):
        return "an HTML body"
    return "a non-JSON body"
