"""Every error a user can meet, and the exit code the CLI gives it.

    MotionMetaError                 1  unexpected; a bug or an environment we did not foresee
    ├── StoppedError                   a request abandoned before it was sent, because of a stop signal
    ├── UsageError                  2  bad command-line input (same code as Typer's own usage errors)
    │   └── InvalidFieldsError      2  --fields that Meta would reject
    ├── ConfigError                 3  a setting is invalid, or local state cannot be used (a SQLite file
    │   │                              that is not a database, or is damaged)
    │   ├── UnknownCustomerError    3  no such customer in the customer store
    │   └── MissingCredentialsError 3  no token stored for the customer (or the secret has no token)
    ├── BackendUnavailableError     8  Redis, DynamoDB or Secrets Manager cannot be reached right now, or a
    │                                  SQLite file is locked too long, unreadable, full or read-only
    ├── MetaAPIError                6  Meta (or the network to it) failed us; carries the classification
    │   ├── CredentialsRejectedError 4 Meta refused the customer's token (190, 102, 492)
    │   ├── ThrottledError          5  still rate limited when we stopped waiting; `retry_after_s` says how long
    │   ├── RequestRefusedError     7  permission, policy block or invalid request: retrying will not help
    │   ├── UpstreamError           6  5xx, HTML pages, bodies that are not a user, retries exhausted
    │   └── NetworkError            6  could not connect, timed out, connection dropped

Two more exit codes belong to `poll --once` (cron): 9 when some customers failed, 10 when another
run still holds the overlap guard.

Messages say what happened and what to do next, and never contain an access token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from motion_meta_cli.meta import Classification


class ExitCode:
    """Process exit codes, documented in the README."""

    OK = 0
    INTERNAL = 1
    USAGE = 2
    CONFIG = 3
    CREDENTIALS_REJECTED = 4
    THROTTLED = 5
    UPSTREAM = 6
    REFUSED = 7
    BACKEND_UNAVAILABLE = 8
    SOME_FAILED = 9
    ALREADY_RUNNING = 10


class MotionMetaError(Exception):
    """Base of every error motion-meta raises on purpose."""

    exit_code: ClassVar[int] = ExitCode.INTERNAL
    kind: ClassVar[str] = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class StoppedError(MotionMetaError):
    """A stop was requested (SIGINT/SIGTERM) while a request was waiting to be sent; it was not sent."""

    kind = "stopped"


class UsageError(MotionMetaError):
    """The command line asked for something that cannot work."""

    exit_code = ExitCode.USAGE
    kind = "usage"


class InvalidFieldsError(UsageError):
    """A requested field name has characters Meta would reject."""

    kind = "invalid_fields"


class ConfigError(MotionMetaError):
    """A setting is invalid or local state (MOTION_META_HOME) is unusable."""

    exit_code = ExitCode.CONFIG
    kind = "config"


class UnknownCustomerError(ConfigError):
    """The customer is not in the customer store."""

    kind = "unknown_customer"


class MissingCredentialsError(ConfigError):
    """No access token is stored for the customer."""

    kind = "missing_credentials"


class BackendUnavailableError(MotionMetaError):
    """A configured backend (Redis, DynamoDB, Secrets Manager, a SQLite file) did not answer; nothing was lost."""

    exit_code = ExitCode.BACKEND_UNAVAILABLE
    kind = "backend_unavailable"


class MetaAPIError(MotionMetaError):
    """Meta, or the way to it, did not give us what we asked for."""

    exit_code = ExitCode.UPSTREAM
    kind = "upstream"

    def __init__(self, message: str, classification: Classification | None = None) -> None:
        super().__init__(message)
        self.classification = classification


class CredentialsRejectedError(MetaAPIError):
    """Meta rejected the customer's access token; a new one is needed."""

    exit_code = ExitCode.CREDENTIALS_REJECTED
    kind = "credentials_rejected"


class ThrottledError(MetaAPIError):
    """Meta was still rate limiting this request when we gave up waiting."""

    exit_code = ExitCode.THROTTLED
    kind = "throttled"

    def __init__(
        self,
        message: str,
        classification: Classification | None = None,
        *,
        scope: str = "app",
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, classification)
        self.scope = scope
        self.retry_after_s = retry_after_s


class RequestRefusedError(MetaAPIError):
    """Meta refused the request for a reason retrying cannot fix (permission, policy, invalid request)."""

    exit_code = ExitCode.REFUSED
    kind = "refused"


class UpstreamError(MetaAPIError):
    """Meta answered with an error or a body we cannot use, and retries did not help."""

    kind = "upstream"


class NetworkError(MetaAPIError):
    """The Graph API host could not be reached or did not answer in time."""

    kind = "network"
