"""HTTP to the Graph API: one pooled session, error classification, retries and throttle pauses.

    manager = MetaRequestManager(graph_url="https://graph.facebook.com", api_version="v25.0",
                                 config_for=settings.platform_for, max_connections=8)
    response = manager.get("me", token, params={"fields": "id,name"}, customer="acme")
    response.data, response.usage

The token travels only in the `Authorization` header. What Meta said is classified (`meta.classify`),
the policy decides (`policy.RetryPolicy`), and only this module sleeps or records a pause.
"""

from __future__ import annotations

import json
import logging
import random as _random
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from pydantic import SecretStr
from requests.adapters import HTTPAdapter

from motion_meta_cli import __version__, metrics
from motion_meta_cli.config import MetaPlatformConfig, RetryConfig
from motion_meta_cli.errors import (
    CredentialsRejectedError,
    MetaAPIError,
    NetworkError,
    RequestRefusedError,
    UpstreamError,
)
from motion_meta_cli.meta import (
    Classification,
    ErrorKind,
    ScopeKind,
    ThrottleRules,
    ThrottleScope,
    Usage,
    UsageHeaderNames,
    classify_response,
    parse_usage,
)
from motion_meta_cli.moderation.moderator import Moderator
from motion_meta_cli.moderation.rules import APP
from motion_meta_cli.moderation.rules import probe_ttl_ms as probe_ttl
from motion_meta_cli.moderation.slots import CustomerSlots
from motion_meta_cli.moderation.state import LocalState
from motion_meta_cli.policy import RetryAfter, RetryPolicy

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MetaResponse:
    """A successful Graph API answer: the decoded body and the usage its headers reported."""

    data: Any
    usage: Usage
    http_status: int
    attempts: int
    throttles: int = 0
    """Throttled answers this request got before it went through."""
    elapsed_s: float = 0.0


def scope_key(scope: ThrottleScope, customer: str) -> str:
    """The cooldown key of a throttle scope; user-level scopes are keyed by customer."""
    if scope.kind is ScopeKind.APP:
        return APP
    if scope.kind is ScopeKind.USER:
        return f"user:{customer}"
    if scope.kind is ScopeKind.BUSINESS_USE_CASE:
        return f"buc:{scope.key or 'unknown'}"
    if scope.kind is ScopeKind.AD_ACCOUNT:
        return f"ad_account:{scope.key or customer}"
    return f"page:{scope.key or customer}"


class MetaRequestManager:
    """Sends Graph API requests and returns data, or raises one `MetaAPIError` subclass."""

    def __init__(
        self,
        *,
        graph_url: str,
        api_version: str,
        config_for: Callable[[str], MetaPlatformConfig] | None = None,
        max_connections: int = 8,
        session: requests.Session | None = None,
        moderator: Moderator | None = None,
        slots: CustomerSlots | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = _random.random,
    ) -> None:
        self._base = f"{graph_url.rstrip('/')}/{api_version}/"
        self._config_for = config_for or (lambda _endpoint: MetaPlatformConfig())
        self._session = session or _pooled_session(max_connections)
        self._sleep = sleep
        self._clock = clock
        self._random = random
        self.moderator = moderator or Moderator(LocalState(clock), sleep=sleep, clock=clock, random=random)
        self.slots = slots
        self._setups: dict[str, tuple[MetaPlatformConfig, ThrottleRules, UsageHeaderNames, RetryPolicy]] = {}

    def close(self) -> None:
        """Close pooled connections."""
        self._session.close()

    def _setup(self, endpoint: str) -> tuple[MetaPlatformConfig, ThrottleRules, UsageHeaderNames, RetryPolicy]:
        # Built once per endpoint: settings do not change while the process runs.
        setup = self._setups.get(endpoint)
        if setup is None:
            config = self._config_for(endpoint)
            setup = (
                config,
                config.rate_limit.throttle_rules(),
                config.rate_limit.header_names(),
                RetryPolicy(config, random=self._random),
            )
            self._setups[endpoint] = setup
        return setup

    def get(
        self,
        endpoint: str,
        token: SecretStr,
        *,
        params: Mapping[str, str] | None = None,
        customer: str = "unknown",
        capped: bool = True,
    ) -> MetaResponse:
        """GET `endpoint` (e.g. `me`) with `token`, waiting out pauses and retrying what can be retried.

        `capped=False` skips the per-customer cap on requests in flight (`stress`, a load generator).
        """
        config, rules, header_names, policy = self._setup(endpoint.split("/")[0])
        url = self._base + endpoint.lstrip("/")
        secret = token.get_secret_value()
        headers = {
            "Authorization": f"Bearer {secret}",
            "Accept": "application/json",
            "User-Agent": f"motion-meta/{__version__}",
        }
        start = self._clock()
        attempts = failures = throttles = 0
        name = endpoint.split("/")[0]
        while True:
            budget_s = max(config.throttle.give_up_after_s - (self._clock() - start), 0.0)
            deadline = DEADLINE.get()
            if deadline is not None:  # a Lambda invocation ends then: no wait may outlast it
                budget_s = min(budget_s, max(deadline - time.monotonic(), 0.0))
            attempts += 1
            if attempts > 1:
                metrics.retries.labels(name).inc()
            with self._slot(customer, config, capped, budget_s) as keep_alive:
                outcome = self._attempt(
                    url, params, headers, customer, config, rules, header_names, budget_s, keep_alive
                )
            metrics.requests.labels(name, _outcome(outcome)).inc()
            if isinstance(outcome, tuple):
                response, body, usage = outcome
                waited = self._clock() - start
                return MetaResponse(_decode(body), usage, response.status_code, attempts, throttles, waited)
            if isinstance(outcome, Classification) and outcome.kind is ErrorKind.THROTTLED:
                throttles += 1
                continue
            if isinstance(outcome, requests.RequestException):
                failures += 1
                problem = _describe_transport_error(outcome, url, config.retry)
                if failures >= config.retry.max_attempts:
                    raise NetworkError(f"{problem} (gave up after {failures} attempts)") from None
                delay = policy.backoff_s(failures)
                log.info("%s; retrying in %.2f s", problem, delay, extra=_context(customer, attempts, delay))
                self._sleep(delay)
                continue
            if outcome.kind is ErrorKind.TRANSIENT:
                failures += 1
            decision = policy.decide(outcome, failures=failures)
            if isinstance(decision, RetryAfter):
                log.info(
                    "transient failure (%s); retrying in %.2f s",
                    decision.reason,
                    decision.delay_s,
                    extra=_context(customer, attempts, decision.delay_s),
                )
                self._sleep(decision.delay_s)
                continue
            raise _error_for(outcome, decision.reason, secret)

    def _attempt(
        self,
        url: str,
        params: Mapping[str, str] | None,
        headers: dict[str, str],
        customer: str,
        config: MetaPlatformConfig,
        rules: ThrottleRules,
        header_names: UsageHeaderNames,
        budget_s: float,
        keep_alive: Callable[[], None] | None,
    ) -> tuple[requests.Response, bytes, Usage] | Classification | requests.RequestException:
        """One attempt, admitted by the moderator and reported back to it however it ends."""
        handling = config.throttle
        probe_ttl_ms = probe_ttl(config.retry.attempt_s)
        ticket = self.moderator.acquire(
            customer, handling, budget_s=budget_s, probe_ttl_ms=probe_ttl_ms, keep_alive=keep_alive
        )
        try:
            retry = config.retry
            sent = time.perf_counter()
            try:
                response, body = _fetch(self._session, url, params, headers, retry)
            except requests.RequestException as exc:
                return exc
            finally:
                endpoint = url[len(self._base) :].split("/")[0]
                metrics.request_seconds.labels(endpoint).observe(time.perf_counter() - sent)
            usage = parse_usage(response.headers, header_names)
            classification: Classification | None
            if body is None:  # larger than max_body_bytes: what it says is unknown, but it was an answer
                reason = f"the answer is larger than {retry.max_body_bytes} bytes (MAX_BODY_BYTES); not read further"
                classification = Classification(ErrorKind.UNKNOWN, response.status_code, reason)
            elif response.is_redirect:  # never followed: the Graph API does not redirect, and we send a token
                classification = Classification(ErrorKind.UNKNOWN, response.status_code, _redirect_reason(response))
            else:
                classification = classify_response(response.status_code, body, usage, rules)
            if classification is not None and classification.kind is ErrorKind.THROTTLED:
                self.moderator.name_scopes(ticket, usage, handling)
                key = scope_key(classification.scope, customer) if classification.scope else APP
                self.moderator.throttled(ticket, key, classification, handling)
                return classification
            self.moderator.answered(ticket, usage, handling)
            # Unclassified means read whole (a body too large is classified above).
            return classification if classification is not None else (response, body or b"", usage)
        finally:
            self.moderator.finish(ticket)

    @contextmanager
    def _slot(
        self, customer: str, config: MetaPlatformConfig, capped: bool, wait_s: float
    ) -> Iterator[Callable[[], None] | None]:
        if self.slots is None or not capped:
            yield None
            return
        with self.slots.hold(customer, wait_s=wait_s) as lease:
            yield lease.renew


DEADLINE: ContextVar[float | None] = ContextVar("motion_meta_deadline", default=None)
"""When (time.monotonic()) the work in this context must be done: waits are cut to it (see `lambda_handler`).
Worker threads of a cycle see it through `contextvars.copy_context()`."""


def _outcome(outcome: object) -> str:
    """The metrics label of one attempt's outcome."""
    if isinstance(outcome, tuple):
        return "ok"
    if isinstance(outcome, requests.RequestException):
        return "network"
    kind = outcome.kind if isinstance(outcome, Classification) else None
    if kind is ErrorKind.THROTTLED:
        return "throttled"
    if kind is ErrorKind.TRANSIENT:
        return "transient"
    if kind is ErrorKind.AUTH:
        return "rejected"
    if kind in (ErrorKind.PERMISSION, ErrorKind.POLICY_BLOCK, ErrorKind.INVALID_REQUEST):
        return "refused"
    return "upstream"


def _context(customer: str, attempt: int, wait_s: float) -> dict[str, object]:
    """The context fields of a retry's log line (MOTION_META_LOG_FORMAT=json shows them)."""
    return {"customer": customer, "attempt": attempt, "wait_s": round(wait_s, 3)}


class DeadlinePassed(requests.exceptions.Timeout):
    """The whole answer did not arrive within `response_deadline_s`, though each read kept within the read timeout."""


BODY_READ_BYTES = 64 * 1024
"""At most this much is asked of the socket at once; a read returns whatever has arrived."""


def _fetch(
    session: requests.Session,
    url: str,
    params: Mapping[str, str] | None,
    headers: dict[str, str],
    retry: RetryConfig,
) -> tuple[requests.Response, bytes | None]:
    """One GET, redirects not followed, and its body read as it arrives: None once it exceeds max_body_bytes
    (decompressed bytes are counted, so a small compressed bomb is caught too). Raises DeadlinePassed when
    the answer takes longer than `RetryConfig.deadline_s`; each read is bounded by the read timeout as well."""
    deadline = time.monotonic() + retry.deadline_s
    timeout = (retry.connect_timeout_s, retry.read_timeout_s)
    response = session.get(url, params=params, headers=headers, timeout=timeout, stream=True, allow_redirects=False)
    complete = False
    try:
        chunks: list[bytes] = []
        size = 0
        while True:
            if time.monotonic() > deadline:
                raise DeadlinePassed(f"the answer took longer than {retry.deadline_s:g} s")
            try:
                chunk = response.raw.read1(BODY_READ_BYTES, decode_content=True)
            except urllib3.exceptions.ReadTimeoutError as exc:
                raise requests.exceptions.ReadTimeout(str(exc)) from None
            except (urllib3.exceptions.ProtocolError, urllib3.exceptions.DecodeError) as exc:
                raise requests.exceptions.ChunkedEncodingError(str(exc)) from None
            if not chunk:
                complete = True
                return response, b"".join(chunks)
            size += len(chunk)
            if size > retry.max_body_bytes:
                return response, None
            chunks.append(chunk)
    finally:
        if complete:
            response.raw.release_conn()  # read to its end: the connection serves the next request
        else:
            response.close()  # abandoned mid-body: the connection cannot be reused


def _redirect_reason(response: requests.Response) -> str:
    """Why a 3xx failed, naming where it pointed (scheme and host only: a query could hold anything)."""
    target = urlsplit(response.headers.get("Location", ""))
    where = f" to {target.scheme}://{target.netloc}" if target.netloc else ""
    return f"HTTP {response.status_code}: a redirect{where}, not followed (the Graph API does not redirect)"


def _pooled_session(max_connections: int) -> requests.Session:
    session = requests.Session()
    # One pool as large as our concurrency, blocking rather than opening throwaway connections;
    # retries are ours to decide, never urllib3's.
    adapter = HTTPAdapter(pool_connections=2, pool_maxsize=max_connections, max_retries=0, pool_block=True)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.trust_env = False  # a stray proxy or .netrc must not see or alter the Authorization header
    return session


def _decode(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        raise UpstreamError("Meta answered 2xx with a body that is not JSON") from None


def _describe_transport_error(exc: requests.RequestException, url: str, retry: RetryConfig) -> str:
    # Built from the exception's type and our own URL without its query: the exception text itself
    # embeds the full URL and must not travel.
    parts = urlsplit(url)
    where = f"{parts.scheme}://{parts.netloc}"
    text = str(exc)
    if isinstance(exc, requests.ConnectTimeout):
        return f"connecting to {where} timed out"
    if isinstance(exc, DeadlinePassed):
        return f"{where} did not send its whole answer within {retry.deadline_s:g} s"
    if isinstance(exc, requests.ReadTimeout):
        return f"{where} sent no answer within {retry.read_timeout_s:g} s"
    if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.MissingSchema):
        return f"{where} is not a usable URL"
    if "Name or service not known" in text or "nodename nor servname" in text or "getaddrinfo" in text:
        return f"cannot resolve the host of {where}"
    if "Connection refused" in text:
        return f"{where} refused the connection"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError) or "RemoteDisconnected" in text:
        return f"{where} dropped the connection mid-response"
    return f"cannot reach {where} ({type(exc).__name__})"


def _error_for(classification: Classification, reason: str, secret: str) -> MetaAPIError:
    reason = reason.replace(secret, "[token]") if secret else reason
    kind = classification.kind
    status = classification.http_status
    if kind is ErrorKind.AUTH:
        return CredentialsRejectedError(f"Meta rejected the access token: {reason}", classification)
    if kind in (ErrorKind.PERMISSION, ErrorKind.POLICY_BLOCK, ErrorKind.INVALID_REQUEST):
        return RequestRefusedError(f"Meta refused the request ({kind.value}): {reason}", classification)
    if kind is ErrorKind.TRANSIENT:
        return UpstreamError(f"Meta kept failing (HTTP {status}): {reason}", classification)
    return UpstreamError(f"unexpected answer from Meta (HTTP {status}): {reason}", classification)
