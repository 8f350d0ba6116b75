"""Configuration: one `Settings`, read once at the edge from the environment and `.env`.

    settings = load_settings()                      # env + .env, errors name the variable
    settings = Settings(meta_graph_url="http://127.0.0.1:8080", motion_meta_home=tmp_path)  # in tests
    me = settings.platform_for("me")                # the Meta platform config with the `me` overrides merged

Nested values use `__` in variable names, for example `META_PLATFORM__RETRY__MAX_ATTEMPTS=6` or
`META_ENDPOINTS__ME__THROTTLE__GIVE_UP_AFTER_S=30`; a whole block can also be given as JSON
(`META_PLATFORM__RETRY='{"max_attempts": 6}'`).
"""

from __future__ import annotations

import io
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import SplitResult, unquote, urlsplit

from dotenv.parser import parse_stream
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from motion_meta_cli.errors import ConfigError
from motion_meta_cli.meta import DEFAULT_THROTTLE_RULES, ThrottleRules, UsageHeaderNames

DEMO_CUSTOMER = "motion_test_user"
DEFAULT_GRAPH_URL = "https://graph.facebook.com"
DEFAULT_API_VERSION = "v25.0"

_FROZEN = ConfigDict(extra="forbid", frozen=True)

HOUR_S, DAY_S, WEEK_S = 3600.0, 86400.0, 7 * 86400.0
# Every duration is finite and bounded: an `inf` or `1e308` would pass `gt=0` and overflow later.
Timeout = Annotated[float, Field(gt=0, le=HOUR_S, allow_inf_nan=False)]
"""A network timeout or backoff: at most an hour."""
Duration = Annotated[float, Field(gt=0, le=WEEK_S, allow_inf_nan=False)]
"""A pause or window: at most a week."""
_HEADERS = UsageHeaderNames()


class RateLimitIdentification(BaseModel):
    """How a response is recognised as a throttle: codes per scope and the usage header names."""

    model_config = _FROZEN

    # Defaults come from the protocol layer, the one place that knows Meta's codes and header names.
    app_codes: list[int] = sorted(DEFAULT_THROTTLE_RULES.app_codes)
    user_codes: list[int] = sorted(DEFAULT_THROTTLE_RULES.user_codes)
    page_codes: list[int] = sorted(DEFAULT_THROTTLE_RULES.page_codes)
    business_use_case_codes: dict[int, str] = dict(DEFAULT_THROTTLE_RULES.business_use_case_codes)
    ad_account_subcodes: list[int] = sorted(DEFAULT_THROTTLE_RULES.ad_account_subcodes)
    app_usage_header: str = _HEADERS.app
    business_use_case_usage_header: str = _HEADERS.business_use_case
    ad_account_usage_header: str = _HEADERS.ad_account
    insights_throttle_header: str = _HEADERS.insights
    page_usage_header: str = _HEADERS.page

    @model_validator(mode="after")
    def _rules_are_consistent(self) -> RateLimitIdentification:
        self.throttle_rules()  # raises ValueError when a code is listed under two scopes
        return self

    def throttle_rules(self) -> ThrottleRules:
        """The classifier's view of these codes."""
        return ThrottleRules(
            app_codes=frozenset(self.app_codes),
            user_codes=frozenset(self.user_codes),
            page_codes=frozenset(self.page_codes),
            business_use_case_codes=dict(self.business_use_case_codes),
            ad_account_subcodes=frozenset(self.ad_account_subcodes),
        )

    def header_names(self) -> UsageHeaderNames:
        """The usage parser's view of the header names."""
        return UsageHeaderNames(
            app=self.app_usage_header,
            business_use_case=self.business_use_case_usage_header,
            ad_account=self.ad_account_usage_header,
            insights=self.insights_throttle_header,
            page=self.page_usage_header,
        )


class ThrottleHandling(BaseModel):
    """What to do about rate limits: pacing near the limit, and pauses after a throttle.

    Every timing left unset scales from `window_s`, the length of the usage window (META_RATE_WINDOW_S:
    Meta's rolling hour by default, a few seconds for an emulator).
    """

    model_config = _FROZEN

    window_s: Annotated[float, Field(gt=0, le=DAY_S, allow_inf_nan=False)] = 3600.0
    """Set from META_RATE_WINDOW_S."""
    pacing: bool = True
    """Pace requests from the usage headers before Meta throttles (`stress` turns it off unless --pacing)."""
    usage_threshold_pct: Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)] = 80.0
    """Share of the estimated budget above which requests on a scope are spaced at the sustainable rate."""
    pause_floor_s: Duration | None = None
    """First pause after a throttle without an ETA (default window/60: 60 s for Meta's hour)."""
    pause_cap_s: Duration | None = None
    """Longest pause without an ETA; consecutive throttles double it up to this (default window/4)."""
    pause_max_s: Duration = 10800.0
    """Longest pause of all, Meta's ETA included: a longer ETA is cut to this and logged (Meta documents
    blocks of up to an hour)."""
    window_guard_pct: Annotated[float, Field(ge=0, le=50, allow_inf_nan=False)] = 5.0
    """Our sends stay counted this much longer than a window: they reach Meta a little after we log them."""
    give_up_after_s: Annotated[float, Field(ge=0, le=DAY_S, allow_inf_nan=False)] = 120.0
    """Longest a single request waits on pauses and pacing before it fails with exit code 5 (the pause stays)."""

    @property
    def floor_s(self) -> float:
        """The pause floor, explicit or window/60."""
        return self.pause_floor_s if self.pause_floor_s is not None else self.window_s / 60

    @property
    def cap_s(self) -> float:
        """The pause cap, explicit or window/4."""
        return self.pause_cap_s if self.pause_cap_s is not None else self.window_s / 4

    @property
    def max_s(self) -> float:
        """The ceiling on every pause; never below the cap."""
        return max(self.pause_max_s, self.cap_s)

    @property
    def counted_window_s(self) -> float:
        """How long one of our sends counts against a scope's budget: the window plus the guard."""
        return self.window_s * (1 + self.window_guard_pct / 100)

    @model_validator(mode="after")
    def _floor_below_cap(self) -> ThrottleHandling:
        if self.floor_s > self.cap_s:
            raise ValueError(f"pause_floor_s ({self.floor_s:g}) must not exceed pause_cap_s ({self.cap_s:g})")
        return self


class RetryConfig(BaseModel):
    """Retries of transient failures (5xx, codes 1/2, dropped connections) and HTTP timeouts."""

    model_config = _FROZEN

    max_attempts: Annotated[int, Field(ge=1, le=50)] = 4
    backoff_base_s: Timeout = 0.5
    backoff_cap_s: Timeout = 30.0
    jitter_ratio: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.5
    """Each backoff is drawn from [(1 - jitter_ratio) × d, d]: spreads retries of many workers apart."""
    connect_timeout_s: Timeout = 3.05
    read_timeout_s: Timeout = 30.0
    """The longest wait for any one read (of the headers or of the body)."""
    response_deadline_s: Timeout | None = None
    """The longest one answer may take, from sending the request to its last byte, however it trickles in
    (None: the read timeout; see `deadline_s`)."""
    max_body_bytes: Annotated[int, Field(ge=1024, le=1 << 30)] = 512 * 1024
    """A larger answer is not read further: an upstream error, not retried (a `/me` profile is a few kB)."""

    @property
    def deadline_s(self) -> float:
        """The whole answer's deadline: `response_deadline_s`, by default the read timeout."""
        return self.read_timeout_s if self.response_deadline_s is None else self.response_deadline_s

    @property
    def attempt_s(self) -> float:
        """The longest one attempt can last: connecting, then the answer within its deadline (each read within
        the read timeout)."""
        return self.connect_timeout_s + max(self.read_timeout_s, self.deadline_s)

    @model_validator(mode="after")
    def _base_below_cap(self) -> RetryConfig:
        if self.backoff_base_s > self.backoff_cap_s:
            raise ValueError("backoff_base_s must not exceed backoff_cap_s")
        return self


class MetaPlatformConfig(BaseModel):
    """Everything about talking to Meta that can differ by platform or endpoint."""

    model_config = _FROZEN

    rate_limit: RateLimitIdentification = RateLimitIdentification()
    throttle: ThrottleHandling = ThrottleHandling()
    retry: RetryConfig = RetryConfig()

    def merged(self, override: dict[str, Any]) -> MetaPlatformConfig:
        """This config with a partial override (same shape, any subset of keys) merged over it."""
        return MetaPlatformConfig.model_validate(_deep_merge(self.model_dump(), override))


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key != "business_use_case_codes":
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@dataclass(frozen=True, slots=True)
class BackendURL:
    """A parsed backend URL: `scheme`, and `target` (a file path, a table name, a secret-name prefix, or the URL)."""

    url: str
    scheme: str
    target: str


REDIS_SCHEMES = ("redis", "rediss", "redis+cluster", "rediss+cluster", "redis+sentinel", "rediss+sentinel")
CACHE_SCHEMES = ("sqlite", *REDIS_SCHEMES)
STORE_SCHEMES = ("sqlite", "dynamodb")
SECRETS_SCHEMES = ("local", "aws-secretsmanager")
_EXAMPLES = {
    "sqlite": "sqlite:///var/lib/motion-meta/cache.db",
    "redis": "redis://127.0.0.1:6379/0",
    "rediss": "rediss://user:password@redis.example.com:6380/0",
    "redis+cluster": "redis+cluster://redis.example.com:6379",
    "rediss+cluster": "rediss+cluster://redis.example.com:6379",
    "redis+sentinel": "redis+sentinel://:password@sentinel-1.example.com:26379,sentinel-2.example.com:26379/mymaster/0",
    "rediss+sentinel": "rediss+sentinel://:password@sentinel-1.example.com:26379/mymaster/0",
    "dynamodb": "dynamodb://motion-meta",
    "local": "local:///var/lib/motion-meta/secrets.json",
    "aws-secretsmanager": "aws-secretsmanager://motion-meta/",
}
_TABLE_NAME = re.compile(r"[A-Za-z0-9_.-]{3,255}")
_SECRET_PREFIX = re.compile(r"[A-Za-z0-9/_+=.@-]{1,400}")


def parse_backend_url(url: str, schemes: tuple[str, ...]) -> BackendURL:
    """Check a backend URL against the schemes a setting accepts; ValueError says what a good one looks like
    (showing the URL without its password)."""
    try:
        return _parse_backend_url(url, schemes)
    except ValueError as exc:
        raise ValueError(str(exc).replace(repr(url), repr(masked_url(url)))) from None


def _parse_backend_url(url: str, schemes: tuple[str, ...]) -> BackendURL:
    scheme, sep, rest = url.strip().partition("://")
    if not sep or scheme not in schemes:
        examples = " or ".join(_EXAMPLES[s] for s in schemes if not s.startswith("rediss"))
        raise ValueError(f"{url!r} is not a supported URL; use {examples}")
    if scheme in ("sqlite", "local"):
        if not rest.startswith("/") or rest.strip("/") == "":
            raise ValueError(f"{url!r} names no file; use an absolute path such as {_EXAMPLES[scheme]}")
        return BackendURL(url, scheme, rest)
    if scheme.endswith("+sentinel"):
        parse_sentinel_url(url)
        return BackendURL(url, scheme, url)
    if scheme in REDIS_SCHEMES:
        parts = urlsplit(url)
        if not parts.hostname:
            raise ValueError(f"{url!r} names no host; use {_EXAMPLES['redis']}")
        _check_port(url, parts)
        if parts.path.strip("/") and not parts.path.strip("/").isdigit():
            raise ValueError(f"{url!r} names no database number after the port; use {_EXAMPLES['redis']}")
        if scheme.endswith("+cluster") and parts.path.strip("/") not in ("", "0"):
            raise ValueError(f"{url!r}: a Redis Cluster has database 0 only; use {_EXAMPLES['redis+cluster']}")
        return BackendURL(url, scheme, url)
    if scheme == "dynamodb":
        if not _TABLE_NAME.fullmatch(rest):
            raise ValueError(f"{url!r} names no valid table (3-255 of A-Z a-z 0-9 _ . -); use {_EXAMPLES[scheme]}")
        return BackendURL(url, scheme, rest)
    if not _SECRET_PREFIX.fullmatch(rest):
        raise ValueError(f"{url!r} names no valid secret prefix; use {_EXAMPLES[scheme]}")
    return BackendURL(url, scheme, rest)


SENTINEL_PORT = 26379
_SERVICE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,255}")


@dataclass(frozen=True, slots=True)
class SentinelURL:
    """A parsed `redis+sentinel://` URL: the Sentinels to ask, the service they watch, and the master's database
    and credentials (the Sentinels themselves are asked without any)."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int
    username: str | None
    password: str | None
    tls: bool


def parse_sentinel_url(url: str) -> SentinelURL:
    """`redis+sentinel://[[user]:password@]host[:port][,host:port...]/service[/db]` (`rediss+sentinel://` for
    TLS); ValueError says what is wrong. A port left out is Sentinel's own, 26379."""
    example = _EXAMPLES["redis+sentinel"]
    scheme, _, rest = url.strip().partition("://")
    netloc, _, path = rest.partition("/")
    userinfo, _, hosts = netloc.rpartition("@")
    sentinels = []
    for host in hosts.split(","):
        parts = urlsplit(f"//{host.strip()}")
        if not parts.hostname:
            raise ValueError(f"{url!r} names no Sentinel host; use {example}")
        _check_port(url, parts)
        sentinels.append((parts.hostname, parts.port or SENTINEL_PORT))
    service, _, db = path.partition("/")
    if not _SERVICE_NAME.fullmatch(service):
        raise ValueError(f"{url!r} names no service (the name the Sentinels monitor) after the hosts; use {example}")
    if db.strip("/") and not db.strip("/").isdigit():
        raise ValueError(f"{url!r} names no database number after the service; use {example}")
    credentials = urlsplit(f"//{userinfo}@") if userinfo else None
    return SentinelURL(
        sentinels=tuple(sentinels),
        service=service,
        db=int(db.strip("/") or 0),
        username=unquote(credentials.username) if credentials and credentials.username else None,
        password=unquote(credentials.password) if credentials and credentials.password else None,
        tls=scheme.startswith("rediss"),
    )


def mask_token(token: str) -> str:
    """At most the first and last four characters: `EAAB…4f2c`; short tokens show nothing."""
    return f"{token[:4]}…{token[-4:]}" if len(token) >= 16 else "…"


def token_problem(token: str) -> str | None:
    """Why `token` cannot be a Meta access token (said without echoing it), or None. Meta's tokens are printable
    ASCII with no whitespace; anything else could not even be sent in an HTTP header."""
    if not token:
        return "the token is empty"
    if not token.isascii() or not token.isprintable() or any(ch.isspace() for ch in token):
        return "the token contains whitespace or characters a Meta token never has; paste it exactly as Meta issued it"
    if len(token) > 4096:
        return "the token is longer than any Meta token (4,096 characters)"
    return None


def _check_port(url: str, parts: SplitResult) -> None:
    try:
        parts.port  # noqa: B018 - raises ValueError outside 0-65535 or when not a number
    except ValueError:
        raise ValueError(f"{url!r} has no valid port (1-65535)") from None
    if parts.port == 0:
        raise ValueError(f"{url!r} has no valid port (1-65535)")


def _default_home() -> Path:
    from platformdirs import user_data_path

    return user_data_path("motion-meta", appauthor=False)


class Settings(BaseSettings):
    """All of motion-meta's settings; the environment variable is the field name in upper case."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    meta_access_token: SecretStr | None = None
    """The demo customer's token; at start-up it is stored as `motion_test_user`'s credentials."""
    meta_graph_url: str = DEFAULT_GRAPH_URL
    meta_api_version: str = DEFAULT_API_VERSION
    services_meta_user_concurrent_requests: Annotated[int, Field(ge=1, le=1000)] = 1
    """Requests one customer may have in flight at once (across instances once shared moderation lands)."""
    motion_meta_home: Path = Field(default_factory=_default_home)
    motion_meta_concurrency: Annotated[int, Field(ge=1, le=1000)] = 8
    """Customers fetched at once by one process; also the size of the HTTP connection pool."""
    meta_user_fields: str = "id,name"
    """Fields requested from `/me` when a command does not say."""
    motion_meta_log_level: str = "WARNING"
    motion_meta_log_format: Literal["text", "json"] = "text"
    """`json`: one JSON object per log line on stderr (time, level, logger, message and context fields)."""
    motion_meta_metrics_port: Annotated[int, Field(ge=1, le=65535)] | None = None
    """`poll` serves /metrics, /livez and /readyz on this port (as `--metrics-port`)."""
    motion_meta_cache_url: str | None = None
    """`sqlite:///PATH` (default: cache.db under the home), `redis://host:port/db` (`rediss://` for TLS),
    `redis+cluster://host:port` for a Redis Cluster (any one node; `rediss+cluster://` for TLS), or
    `redis+sentinel://host:port[,host:port...]/service[/db]` for the master that Redis Sentinels name
    (`rediss+sentinel://` for TLS)."""
    motion_meta_store_url: str | None = None
    """`sqlite:///PATH` (default: store.db under the home) or `dynamodb://TABLE`."""
    motion_meta_secrets_url: str | None = None
    """`local:///PATH` (default: secrets.json under the home) or `aws-secretsmanager://PREFIX`."""
    motion_meta_cache_prefix: Annotated[str, Field(min_length=1, max_length=100)] = "motion-meta:"
    """Every Redis key motion-meta writes starts with this."""
    motion_meta_redis_timeout_s: Annotated[float, Field(gt=0, le=60, allow_inf_nan=False)] = 2.0
    """Socket and connect timeout for Redis."""
    meta_rate_window_s: Annotated[float, Field(gt=0, le=DAY_S, allow_inf_nan=False)] = 3600.0
    """Length of Meta's usage window; every rate-limit timing left unset scales from it."""
    meta_platform: MetaPlatformConfig = MetaPlatformConfig()
    meta_endpoints: dict[str, dict[str, Any]] = {}
    """Per-endpoint overrides merged over `meta_platform`, keyed by endpoint (`me`)."""

    @model_validator(mode="before")
    @classmethod
    def _window_into_platform(cls, data: Any) -> Any:
        # The platform config validates its timings against the window, so it must see the window first.
        if not isinstance(data, dict):
            return data
        platform = data.get("meta_platform", {})
        if isinstance(platform, str):
            platform = json.loads(platform) if platform.strip() else {}
        if not isinstance(platform, dict):
            return data
        throttle = platform.get("throttle", {})
        if isinstance(throttle, str):
            throttle = json.loads(throttle) if throttle.strip() else {}
        if not isinstance(throttle, dict):
            return data
        window = data.get("meta_rate_window_s", 3600.0)
        return {**data, "meta_platform": {**platform, "throttle": {**throttle, "window_s": window}}}

    @field_validator("motion_meta_home")
    @classmethod
    def _home_absolute(cls, value: Path) -> Path:
        # Backend URLs are built from it, and a later chdir must not move local state.
        try:
            return value.expanduser().absolute()
        except RuntimeError:  # `~someone` naming no user
            raise ValueError(f"{str(value)!r} starts with a ~user that does not exist; give an absolute path") from None

    @field_validator("meta_access_token")
    @classmethod
    def _token_not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("is empty; remove the variable or give a token")
        problem = None if value is None else token_problem(value.get_secret_value().strip())
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("meta_graph_url")
    @classmethod
    def _graph_url_is_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http(s) URL such as {DEFAULT_GRAPH_URL}")
        if parts.query or parts.fragment:
            raise ValueError("must not carry a query string or fragment")
        _check_port(value, parts)
        if re.search(r"/v\d+\.\d+/?$", parts.path):
            raise ValueError(
                f"{value!r} ends with an API version; give the base URL (such as {DEFAULT_GRAPH_URL}) "
                "and the version in META_API_VERSION"
            )
        return value.strip().rstrip("/")

    @field_validator("meta_api_version")
    @classmethod
    def _version_shape(cls, value: str) -> str:
        if not re.fullmatch(r"v\d+\.\d+", value):
            raise ValueError(f"{value!r} is not a Graph API version such as {DEFAULT_API_VERSION}")
        return value

    @field_validator("motion_meta_log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @field_validator("meta_endpoints")
    @classmethod
    def _endpoints_merge_cleanly(
        cls, value: dict[str, dict[str, Any]], info: ValidationInfo
    ) -> dict[str, dict[str, Any]]:
        # Validate each override against the full schema now, so a typo fails at start-up.
        lowered = {name.lower(): override for name, override in value.items()}
        window = {"throttle": {"window_s": info.data.get("meta_rate_window_s", 3600.0)}}
        for name, override in lowered.items():
            try:
                MetaPlatformConfig().merged(window).merged(override)
            except ValidationError as exc:
                first = exc.errors()[0]
                path = "__".join(str(part) for part in first["loc"]).upper()
                # Starts with the delimiter so the message reads as one variable name: META_ENDPOINTS__ME__...
                raise ValueError(f"__{name.upper()}__{path} {_explain(first)}") from None
        return lowered

    @field_validator("motion_meta_cache_url")
    @classmethod
    def _cache_url(cls, value: str | None) -> str | None:
        return None if value is None else parse_backend_url(value, CACHE_SCHEMES).url

    @field_validator("motion_meta_store_url")
    @classmethod
    def _store_url(cls, value: str | None) -> str | None:
        return None if value is None else parse_backend_url(value, STORE_SCHEMES).url

    @field_validator("motion_meta_secrets_url")
    @classmethod
    def _secrets_url(cls, value: str | None) -> str | None:
        return None if value is None else parse_backend_url(value, SECRETS_SCHEMES).url

    @property
    def cache_backend(self) -> BackendURL:
        """Where the cache lives: the configured URL or the embedded SQLite file."""
        return parse_backend_url(
            self.motion_meta_cache_url or f"sqlite://{self.motion_meta_home / 'cache.db'}", CACHE_SCHEMES
        )

    @property
    def store_backend(self) -> BackendURL:
        """Where customers and results live: the configured URL or the embedded SQLite file."""
        return parse_backend_url(
            self.motion_meta_store_url or f"sqlite://{self.motion_meta_home / 'store.db'}", STORE_SCHEMES
        )

    @property
    def secrets_backend(self) -> BackendURL:
        """Where tokens live: the configured URL or the local secrets file."""
        return parse_backend_url(
            self.motion_meta_secrets_url or f"local://{self.motion_meta_home / 'secrets.json'}", SECRETS_SCHEMES
        )

    def platform_for(self, endpoint: str) -> MetaPlatformConfig:
        """The platform config with `endpoint`'s overrides, if any, merged over it."""
        window = {"throttle": {"window_s": self.meta_rate_window_s}}
        override = self.meta_endpoints.get(endpoint.lower())
        platform = self.meta_platform.merged(window)
        return platform.merged(override) if override else platform

    @property
    def user_fields(self) -> tuple[str, ...]:
        """`meta_user_fields` split into names."""
        return tuple(f.strip() for f in self.meta_user_fields.split(",") if f.strip())


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment and `.env`; invalid values raise `ConfigError` naming the variable
    (or the `.env` line)."""
    env_file = overrides.get("_env_file", Settings.model_config.get("env_file"))
    if isinstance(env_file, (str, Path)):
        check_env_file(Path(env_file))
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None
    except SettingsError as exc:  # a variable holding a JSON block that does not parse
        match = re.search(r'field "([a-z_]+)"', str(exc))
        name = match.group(1).upper() if match else "a setting"
        raise ConfigError(
            f"invalid configuration: {name} (or one of its {name}__... variables) is not valid JSON"
        ) from None
    except RecursionError:
        deep = [name for name, value in os.environ.items() if value.count("[") + value.count("{") > 100]
        name = deep[0] if deep else "a JSON value"
        raise ConfigError(f"invalid configuration: {name} is nested too deeply") from None


def check_env_file(path: Path) -> None:
    """A `.env` must be UTF-8 and made of KEY=VALUE lines, comments and blank lines: ConfigError naming the
    line otherwise (never its content, which may hold a token)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ConfigError(f"cannot read {path} ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path} line {line} is not UTF-8 text; save the file as UTF-8") from None
    for binding in parse_stream(io.StringIO(text)):
        if binding.error or (binding.key is not None and binding.value is None):  # a bare word is no setting
            raise ConfigError(f"{path} line {binding.original.line} is not KEY=VALUE (nor a comment or a blank line)")


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming the first bad variable the way the user would have set it."""
    first = exc.errors()[0]
    loc = [str(part) for part in first["loc"] if not isinstance(part, int)]
    variable = "__".join(loc).upper() if loc else "settings"
    message = _explain(first)
    more = len(exc.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    separator = "" if message.startswith("__") else " "
    return f"invalid configuration: {variable}{separator}{message}{suffix}"


def _explain(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        return "is not a setting motion-meta knows (check the spelling against .env.example)"
    return str(error["msg"]).removeprefix("Value error, ")


def describe_settings(settings: Settings, env_file: Path = Path(".env")) -> dict[str, Any]:
    """Every setting's effective value and where it came from (`environment`, `.env` or `default`), the
    token masked, and the Meta platform config each endpoint gets after its overrides (`config show`)."""
    from dotenv import dotenv_values

    in_file = {key.upper() for key in dotenv_values(env_file)} if env_file.is_file() else set()
    values = settings.model_dump(mode="json")
    described: dict[str, Any] = {}
    for name in Settings.model_fields:
        variable = name.upper()
        nested = f"{variable}__"
        if variable in os.environ or any(key.startswith(nested) for key in os.environ):
            source = "environment"
        elif variable in in_file or any(key.startswith(nested) for key in in_file):
            source = ".env"
        else:
            source = "default"
        value = values[name]
        if name == "meta_access_token" and settings.meta_access_token is not None:
            value = mask_token(settings.meta_access_token.get_secret_value())
        if name.endswith("_url") and isinstance(value, str):
            value = masked_url(value)
        described[variable] = {"value": value, "source": source}
    endpoints = {"me", *settings.meta_endpoints}
    merged = {name: settings.platform_for(name).model_dump(mode="json") for name in sorted(endpoints)}
    return {"settings": described, "endpoints": merged}


def masked_url(url: str) -> str:
    """`url` with any password in it replaced by `***` (a Redis URL may carry one)."""
    return re.sub(r"(//[^/:@]*:)[^/@]*@", r"\1***@", url)
