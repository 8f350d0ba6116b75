"""boto3 clients and AWS errors in motion-meta's terms, shared by the DynamoDB and Secrets Manager backends.

Endpoint, region and credentials come from boto3's standard configuration (environment, profiles,
`AWS_ENDPOINT_URL`), so moto or LocalStack need no code. Only imported when an AWS backend is configured.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import botocore.exceptions
from botocore.config import Config

from motion_meta_cli.errors import BackendUnavailableError, ConfigError

CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 10.0


def aws_client(service: str, *, max_attempts: int = 5) -> Any:
    """A boto3 client with botocore's `standard` retry mode and explicit timeouts."""
    config = Config(
        retries={"mode": "standard", "max_attempts": max_attempts},
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=READ_TIMEOUT_S,
    )
    try:
        return boto3.session.Session().client(service, config=config)  # type: ignore[call-overload]
    except botocore.exceptions.NoRegionError:
        raise ConfigError("no AWS region configured; set AWS_DEFAULT_REGION (or AWS_REGION)") from None


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a ClientError (e.g. ResourceNotFoundException), else None."""
    if isinstance(exc, botocore.exceptions.ClientError):
        return str(exc.response.get("Error", {}).get("Code"))
    return None


@contextmanager
def aws_errors(service: str) -> Iterator[None]:
    """Turn credential, region and connection problems into one-line motion-meta errors.

    Service-specific codes (a missing table or secret) are left for the caller to translate first.
    """
    try:
        yield
    except (botocore.exceptions.NoCredentialsError, botocore.exceptions.PartialCredentialsError):
        raise ConfigError(
            f"no AWS credentials for {service}; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
        ) from None
    except botocore.exceptions.NoRegionError:
        raise ConfigError("no AWS region configured; set AWS_DEFAULT_REGION (or AWS_REGION)") from None
    except (
        botocore.exceptions.EndpointConnectionError,
        botocore.exceptions.ConnectTimeoutError,
        botocore.exceptions.ReadTimeoutError,
        botocore.exceptions.ConnectionClosedError,
    ) as exc:
        endpoint = getattr(exc, "kwargs", {}).get("endpoint_url", "its endpoint")
        raise BackendUnavailableError(
            f"cannot reach {service} at {endpoint}; check AWS_ENDPOINT_URL and the network"
        ) from None
    except botocore.exceptions.ClientError as exc:
        code = error_code(exc) or "error"
        if code in ("UnrecognizedClientException", "InvalidSignatureException", "ExpiredTokenException"):
            raise ConfigError(f"AWS rejected the credentials for {service} ({code}); check them") from None
        if code in ("AccessDeniedException", "AccessDenied"):
            raise ConfigError(f"AWS denied access to {service} ({code}); check the IAM policy") from None
        if code in ("ThrottlingException", "ProvisionedThroughputExceededException", "RequestLimitExceeded"):
            raise BackendUnavailableError(
                f"{service} is throttling us ({code}) after retries; try again later"
            ) from None
        message = str(exc.response.get("Error", {}).get("Message", ""))[:200]
        raise BackendUnavailableError(f"{service} failed ({code}): {message}") from None
