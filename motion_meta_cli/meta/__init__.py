"""What Meta said: usage headers parsed into ``Usage``, failed responses into ``Classification``."""

from motion_meta_cli.meta.classify import (
    DEFAULT_THROTTLE_RULES,
    Classification,
    ErrorKind,
    MetaError,
    ScopeKind,
    ThrottleRules,
    ThrottleScope,
    classify_error,
    classify_response,
    parse_error_body,
)
from motion_meta_cli.meta.usage import (
    EMPTY_USAGE,
    AdAccountUsage,
    BusinessUseCaseUsage,
    InsightsThrottle,
    Usage,
    UsageCounters,
    UsageHeaderNames,
    parse_usage,
)

__all__ = [
    "DEFAULT_THROTTLE_RULES",
    "EMPTY_USAGE",
    "AdAccountUsage",
    "BusinessUseCaseUsage",
    "Classification",
    "ErrorKind",
    "InsightsThrottle",
    "MetaError",
    "ScopeKind",
    "ThrottleRules",
    "ThrottleScope",
    "Usage",
    "UsageCounters",
    "UsageHeaderNames",
    "classify_error",
    "classify_response",
    "parse_error_body",
    "parse_usage",
]
