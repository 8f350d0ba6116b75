"""Logging rules every entry point applies (CLI, Lambda): SDK loggers never run at DEBUG."""

from __future__ import annotations

import logging

SDK_LOGGERS = ("botocore", "boto3", "urllib3", "redis")


def quiet_sdk_loggers() -> None:
    """Keep SDK loggers at INFO or above whatever the root logger says: botocore's DEBUG logs request and
    response bodies, which for Secrets Manager are tokens."""
    for name in SDK_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(max(logger.getEffectiveLevel(), logging.INFO))
