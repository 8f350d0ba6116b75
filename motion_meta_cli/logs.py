"""Logging rules every entry point applies (CLI, Lambda): SDK loggers never run at DEBUG; lines as text or JSON."""

from __future__ import annotations

import logging

SDK_LOGGERS = ("botocore", "boto3", "urllib3", "redis")


def quiet_sdk_loggers() -> None:
    """Keep SDK loggers at INFO or above whatever the root logger says: botocore's DEBUG logs request and
    response bodies, which for Secrets Manager are tokens."""
    for name in SDK_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(max(logger.getEffectiveLevel(), logging.INFO))


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
CONTEXT_FIELDS = ("customer", "scope", "cycle", "slot", "attempt", "wait_s")
"""What a log call may pass in `extra=`; the JSON format shows those present."""


def json_formatter() -> logging.Formatter:
    """One JSON object per line: `time` (ISO 8601, UTC), `level`, `logger`, `message`, and any context field."""
    from pythonjsonlogger.json import JsonFormatter

    return JsonFormatter(
        "{levelname}{name}{message}",
        style="{",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",
    )
