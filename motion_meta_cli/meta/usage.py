"""Parse Meta's rate-limit usage headers into one typed value.

Meta reports usage in several headers, each holding a JSON string. The parser is tolerant on purpose:
numbers may arrive as strings, keys come and go between API versions, and a header that does not parse must
never fail the request that carried it. Units are converted once, here: every percentage stays a percentage
(0–100) and every duration becomes seconds (``estimated_time_to_regain_access`` is sent in minutes).

Example::

    usage = parse_usage(response.headers)
    if usage.max_pct is not None and usage.max_pct >= 90:
        ...
"""

from __future__ import annotations

import json
import logging
import math
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

# Header values can be long (up to 32 BUC ids); a warning quotes only the start of one.
_MAX_LOGGED_CHARS = 200
# Enough problems to see the pattern; a header with 32 broken ids should not produce a 32-line warning.
_MAX_LOGGED_PROBLEMS = 5

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class UsageHeaderNames:
    """Names of the usage headers, in case Meta renames one or a proxy rewrites them."""

    app: str = "X-App-Usage"
    business_use_case: str = "X-Business-Use-Case-Usage"
    ad_account: str = "X-Ad-Account-Usage"
    insights: str = "X-FB-Ads-Insights-Throttle"
    page: str = "X-Page-Usage"


@dataclass(frozen=True, slots=True)
class UsageCounters:
    """The three Platform counters of ``X-App-Usage`` or ``X-Page-Usage``, in percent of the allowance."""

    call_count_pct: float | None = None
    total_cputime_pct: float | None = None
    total_time_pct: float | None = None

    @property
    def max_pct(self) -> float | None:
        """Highest counter present; Meta throttles as soon as any one of them reaches 100."""
        return _max_or_none((self.call_count_pct, self.total_cputime_pct, self.total_time_pct))


@dataclass(frozen=True, slots=True)
class BusinessUseCaseUsage:
    """One entry of ``X-Business-Use-Case-Usage``: usage of one use case (``type``) on one object."""

    business_id: str
    type: str | None
    call_count_pct: float | None
    total_cputime_pct: float | None
    total_time_pct: float | None
    eta_s: float | None
    access_tier: str | None

    @property
    def max_pct(self) -> float | None:
        """Highest counter present in this entry."""
        return _max_or_none((self.call_count_pct, self.total_cputime_pct, self.total_time_pct))


@dataclass(frozen=True, slots=True)
class AdAccountUsage:
    """``X-Ad-Account-Usage``: ad-account utilisation and seconds until its window resets."""

    util_pct: float | None
    reset_s: float | None
    access_tier: str | None


@dataclass(frozen=True, slots=True)
class InsightsThrottle:
    """``X-FB-Ads-Insights-Throttle``: app and ad-account utilisation of the Insights API."""

    app_util_pct: float | None
    account_util_pct: float | None


@dataclass(frozen=True, slots=True)
class Usage:
    """Everything the usage headers of one response said; a header that was absent or unreadable is None."""

    app: UsageCounters | None = None
    page: UsageCounters | None = None
    business_use_cases: tuple[BusinessUseCaseUsage, ...] = ()
    ad_account: AdAccountUsage | None = None
    insights: InsightsThrottle | None = None

    @property
    def max_pct(self) -> float | None:
        """Highest percentage seen in any header, or None when no header gave one."""
        values: list[float | None] = []
        for counters in (self.app, self.page):
            if counters is not None:
                values.append(counters.max_pct)
        values.extend(entry.max_pct for entry in self.business_use_cases)
        if self.ad_account is not None:
            values.append(self.ad_account.util_pct)
        if self.insights is not None:
            values.extend((self.insights.app_util_pct, self.insights.account_util_pct))
        return _max_or_none(values)

    @property
    def is_empty(self) -> bool:
        """True when no usage header was present (which says nothing about usage being low)."""
        return self == EMPTY_USAGE

    def max_eta_s(self) -> float | None:
        """Longest positive BUC time-to-regain-access in seconds, or None when no use case is blocked."""
        return _max_or_none(
            entry.eta_s for entry in self.business_use_cases if entry.eta_s is not None and entry.eta_s > 0
        )


EMPTY_USAGE = Usage()


def parse_usage(headers: Mapping[str, str], names: UsageHeaderNames = UsageHeaderNames()) -> Usage:
    """Read every usage header in ``headers`` (names in any casing); never raises on malformed values."""
    # HTTP header names are case-insensitive but a plain dict is not. Lower-casing once also suits requests'
    # CaseInsensitiveDict, whose items() keep the casing the server sent.
    lowered = {name.lower(): value for name, value in headers.items()}

    def raw(name: str) -> str | None:
        return lowered.get(name.lower())

    return Usage(
        app=_parse_header(names.app, raw(names.app), _counters_from),
        page=_parse_header(names.page, raw(names.page), _counters_from),
        business_use_cases=_parse_header(
            names.business_use_case, raw(names.business_use_case), _business_use_cases_from
        )
        or (),
        ad_account=_parse_header(names.ad_account, raw(names.ad_account), _ad_account_from),
        insights=_parse_header(names.insights, raw(names.insights), _insights_from),
    )


def _parse_header(name: str, raw: str | None, build: Callable[[object, list[str]], _T | None]) -> _T | None:
    # ``build`` turns the decoded JSON into the typed value, appends to ``problems`` what it had to skip, and
    # returns None when the header carried nothing usable.
    if raw is None:
        return None
    # X-Page-Usage has been seen empty while Page throttling was active: no information, not an error.
    if isinstance(raw, str) and not raw.strip():
        return None
    problems: list[str] = []
    result: _T | None = None
    try:
        payload = json.loads(raw)
    except json.JSONDecodeError as exc:
        problems.append(f"not valid JSON ({exc.msg})")
    except (ValueError, TypeError, RecursionError) as exc:
        problems.append(f"not valid JSON ({type(exc).__name__})")
    else:
        result = build(payload, problems)
    if problems:
        shown = "; ".join(problems[:_MAX_LOGGED_PROBLEMS])
        if len(problems) > _MAX_LOGGED_PROBLEMS:
            shown += f"; and {len(problems) - _MAX_LOGGED_PROBLEMS} more"
        logger.warning("%s header: %s; value: %s", name, shown, _excerpt(raw))
    return result


def _counters_from(payload: object, problems: list[str]) -> UsageCounters | None:
    obj = _as_object(payload, problems)
    if obj is None:
        return None
    counters = UsageCounters(
        call_count_pct=_number(obj, "call_count", problems),
        total_cputime_pct=_number(obj, "total_cputime", problems),
        total_time_pct=_number(obj, "total_time", problems),
    )
    return None if counters == UsageCounters() else counters


def _business_use_cases_from(payload: object, problems: list[str]) -> tuple[BusinessUseCaseUsage, ...] | None:
    obj = _as_object(payload, problems)
    if obj is None:
        return None
    entries: list[BusinessUseCaseUsage] = []
    # The header holds up to 32 ids, each with one entry per use case; a client that reads only the first
    # entry of each id misses the bucket that is actually blocked.
    for business_id, items in obj.items():
        if not isinstance(items, list):
            problems.append(f"id {_excerpt(business_id, 40)}: expected a list, got {_json_type(items)}")
            continue
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                where = f"id {_excerpt(business_id, 40)}[{index}]"
                problems.append(f"{where}: expected an object, got {_json_type(item)}")
                continue
            eta_min = _number(item, "estimated_time_to_regain_access", problems)
            entry = BusinessUseCaseUsage(
                business_id=business_id,
                type=_text(item, "type", problems),
                call_count_pct=_number(item, "call_count", problems),
                total_cputime_pct=_number(item, "total_cputime", problems),
                total_time_pct=_number(item, "total_time", problems),
                # So many minutes that their seconds overflow are as long as a float goes: a pause cuts them.
                eta_s=None if eta_min is None else max(min(eta_min * 60.0, sys.float_info.max), -sys.float_info.max),
                access_tier=_text(item, "ads_api_access_tier", problems),
            )
            if entry != BusinessUseCaseUsage(business_id, None, None, None, None, None, None):
                entries.append(entry)
    return tuple(entries)


def _ad_account_from(payload: object, problems: list[str]) -> AdAccountUsage | None:
    obj = _as_object(payload, problems)
    if obj is None:
        return None
    usage = AdAccountUsage(
        util_pct=_number(obj, "acc_id_util_pct", problems),
        # Unlike the BUC ETA, reset_time_duration is already in seconds.
        reset_s=_number(obj, "reset_time_duration", problems),
        access_tier=_text(obj, "ads_api_access_tier", problems),
    )
    return None if usage == AdAccountUsage(None, None, None) else usage


def _insights_from(payload: object, problems: list[str]) -> InsightsThrottle | None:
    obj = _as_object(payload, problems)
    if obj is None:
        return None
    throttle = InsightsThrottle(
        app_util_pct=_number(obj, "app_id_util_pct", problems),
        account_util_pct=_number(obj, "acc_id_util_pct", problems),
    )
    return None if throttle == InsightsThrottle(None, None) else throttle


def _as_object(payload: object, problems: list[str]) -> dict[str, Any] | None:
    if isinstance(payload, dict):
        return payload
    problems.append(f"expected a JSON object, got {_json_type(payload)}")
    return None


def _number(obj: Mapping[str, Any], key: str, problems: list[str]) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    # bool is an int subclass, but true/false is not a percentage.
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:
            number = float(value)
        except ValueError:
            pass
        else:
            # NaN or infinity would poison every max() and comparison downstream.
            if math.isfinite(number):
                return number
    problems.append(f"{key} is not a number ({_excerpt(repr(value), 40)})")
    return None


def _text(obj: Mapping[str, Any], key: str, problems: list[str]) -> str | None:
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value
    problems.append(f"{key} is not a string ({_excerpt(repr(value), 40)})")
    return None


def _max_or_none(values: Iterable[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return max(present) if present else None


def _json_type(value: object) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"


def _excerpt(value: object, limit: int = _MAX_LOGGED_CHARS) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + "…"
