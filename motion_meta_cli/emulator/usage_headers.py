"""The usage headers Meta sends, and the broken variants the fault injector sends instead."""

from __future__ import annotations

import json
from typing import Any

from motion_meta_cli.emulator.config import EmulatorConfig
from motion_meta_cli.emulator.faults import Fault
from motion_meta_cli.emulator.scopes import BusinessUseCaseUsage

APP_USAGE = "X-App-Usage"
BUSINESS_USE_CASE_USAGE = "X-Business-Use-Case-Usage"


def app_usage(usage_pct: int) -> dict[str, Any]:
    """X-App-Usage's counters; CPU and wall time track the call count at a lower level, as they tend to."""
    return {"call_count": usage_pct, "total_cputime": usage_pct // 4, "total_time": usage_pct // 2}


def business_use_case_usage(config: EmulatorConfig, usage: BusinessUseCaseUsage) -> dict[str, Any]:
    """X-Business-Use-Case-Usage: one entry for the configured business id and type."""
    pct = usage.call_count_pct
    entry: dict[str, Any] = {
        "type": config.buc_type,
        "call_count": pct,
        "total_cputime": pct // 4,
        "total_time": pct // 2,
        "estimated_time_to_regain_access": usage.regain_access_minutes,
    }
    if (tier := config.buc_access_tier) is not None:
        entry["ads_api_access_tier"] = tier
    return {config.buc_business_id: [entry]}


def render(value: dict[str, Any], fault: Fault | None = None) -> str:
    """A header value: compact JSON, numbers as strings for STRING_NUMBERS, cut in half for MALFORMED_USAGE."""
    if fault is Fault.STRING_NUMBERS:
        value = _numbers_as_strings(value)
    text = json.dumps(value, separators=(",", ":"))
    if fault is Fault.MALFORMED_USAGE:
        return text[: len(text) // 2]  # a header cut short somewhere between Meta and the client
    return text


def _numbers_as_strings(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _numbers_as_strings(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_numbers_as_strings(item) for item in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value
