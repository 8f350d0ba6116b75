"""A local HTTP server that answers `GET /{version}/me` the way Meta's Graph API does, throttling included.

Besides the Graph path it serves two control endpoints: `GET /__stats` (what the emulator saw, never tokens)
and `POST /__reset` (clear the counters and the app limiter).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import secrets
import socket
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

from motion_meta_cli.emulator.limiter import LimiterVerdict, RollingWindowLimiter
from motion_meta_cli.emulator.users import DEFAULT_FIELDS, PROFILE_FIELDS, UserDirectory, default_directory

logger = logging.getLogger(__name__)

_VERSION = re.compile(r"v\d+\.\d+")
_FIELD_NAME = re.compile(r"[A-Za-z0-9_]+")
_FIELDS_SYNTAX_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_,.{}()")
_CLOSERS = {"{": "}", "(": ")"}
_BEARER_SCHEMES = ("bearer", "oauth")
_PST = timezone(timedelta(hours=-8), "PST")
_IDLE_TIMEOUT_S = 75.0
"""Idle keep-alive connections close after this long (nginx's default), so threads are not held forever."""
_SHUTDOWN_POLL_S = 0.05
"""How often the accept loop checks for `stop()`; the default 0.5 s makes every stop take that long."""


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """How the emulator behaves: the app-wide limit, the users it knows, and added latency."""

    app_limit: int | None = None
    """Calls per rolling window for the whole app; None means unlimited (and no X-App-Usage header)."""
    window_s: float = 3600.0
    users: UserDirectory = field(default_factory=default_directory)
    latency_s: float = 0.0
    """Delay added to every Graph request, to make requests overlap the way real network calls do."""

    def __post_init__(self) -> None:
        if self.app_limit is not None and self.app_limit < 1:
            raise ValueError(f"app_limit must be at least 1 or None for unlimited, got {self.app_limit}")
        if self.window_s <= 0:
            raise ValueError(f"window_s must be positive, got {self.window_s}")
        if self.latency_s < 0:
            raise ValueError(f"latency_s must not be negative, got {self.latency_s}")


class GraphEmulator:
    """Serves a Meta-shaped Graph API on a local port.

    >>> with GraphEmulator(EmulatorConfig(app_limit=200)) as emulator:  # doctest: +SKIP
    ...     requests.get(f"{emulator.url}/v25.0/me", headers={"Authorization": f"Bearer {DEMO_TOKEN}"})

    The socket is bound on construction, so `port` is known before `start()`. An emulator runs once:
    after `stop()` build a new one.
    """

    def __init__(self, config: EmulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config if config is not None else EmulatorConfig()
        self._limiter = RollingWindowLimiter(self.config.app_limit, self.config.window_s)
        self._stats = _Stats()
        self._server = _EmulatorHTTPServer((host, port), self)
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def host(self) -> str:
        """The address the server is bound to."""
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        """The port actually bound (useful when constructed with port 0)."""
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL to give a client, e.g. "http://127.0.0.1:8765"."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> GraphEmulator:
        """Serve in a background daemon thread; returns self."""
        self._ensure_fresh()
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            args=(_SHUTDOWN_POLL_S,),
            name=f"graph-emulator-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (Ctrl-C stops it cleanly)."""
        self._ensure_fresh()
        try:
            self._server.serve_forever(_SHUTDOWN_POLL_S)
        except KeyboardInterrupt:
            logger.debug("emulator on %s interrupted", self.url)
        finally:
            self._close()

    def stop(self) -> None:
        """Stop serving, drop open connections and release the port; safe to call twice."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._close()

    def __enter__(self) -> GraphEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"GraphEmulator(url={self.url!r}, app_limit={self.config.app_limit})"

    def stats(self) -> dict[str, Any]:
        """What the emulator has seen since start or the last reset; the body of `GET /__stats`."""
        snapshot = self._stats.snapshot()
        snapshot["app_usage_pct"] = self._limiter.usage_pct()
        snapshot["app_limit"] = self.config.app_limit
        snapshot["window_s"] = self.config.window_s
        return snapshot

    def reset(self) -> None:
        """Clear the counters and the app limiter, as `POST /__reset` does."""
        self._stats.reset()
        self._limiter.reset()

    def _ensure_fresh(self) -> None:
        if self._closed or self._thread is not None:
            raise RuntimeError("this emulator has already been started; create a new GraphEmulator")

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            self._server.close_connections()
            self._server.server_close()

    def _handle(self, method: str, target: str, headers: Message) -> _Reply:
        """Answer one HTTP request; the request handler only parses and writes."""
        parts = urlsplit(target)
        segments = [segment for segment in parts.path.split("/") if segment]
        if parts.path == "/__stats":
            if method != "GET":
                return _control_error(405, "Use GET /__stats.")
            return _Reply(200, self.stats())
        if parts.path == "/__reset":
            if method != "POST":
                return _control_error(405, "Use POST /__reset.")
            self.reset()
            return _Reply(200, {"success": True})
        if (segments and _VERSION.fullmatch(segments[0])) or "me" in segments:
            return self._handle_graph(method, parts.path, segments, parse_qs(parts.query), headers)
        return _control_error(
            404, f"Unknown path {parts.path}. Try GET /{{version}}/me, GET /__stats or POST /__reset."
        )

    def _handle_graph(
        self,
        method: str,
        path: str,
        segments: list[str],
        query: Mapping[str, list[str]],
        headers: Message,
    ) -> _Reply:
        trace_id = secrets.token_urlsafe(9)
        record = _RequestRecord()
        self._stats.enter()
        try:
            if self.config.latency_s:
                time.sleep(self.config.latency_s)
            try:
                reply = self._answer_graph(method, path, segments, query, headers, record)
            except _GraphError as error:
                reply = _Reply(error.status, error.body(trace_id))
            record.status = reply.status
        finally:
            self._stats.leave(record)
        reply.headers["x-fb-trace-id"] = trace_id
        if segments and _VERSION.fullmatch(segments[0]):
            reply.headers["facebook-api-version"] = segments[0]
        if self.config.app_limit is not None:
            usage_pct = record.verdict.usage_pct if record.verdict else self._limiter.usage_pct()
            reply.headers["X-App-Usage"] = _app_usage_header(usage_pct)
        return reply

    def _answer_graph(
        self,
        method: str,
        path: str,
        segments: list[str],
        query: Mapping[str, list[str]],
        headers: Message,
        record: _RequestRecord,
    ) -> _Reply:
        if not _VERSION.fullmatch(segments[0]):
            raise _GraphError(400, 2500, f"Unknown path components: {path}")
        if len(segments) == 1 or segments[1] != "me":
            alias = segments[1] if len(segments) > 1 else segments[0]
            raise _GraphError(400, 803, f"(#803) Some of the aliases you requested do not exist: {alias}")
        if len(segments) > 2:
            raise _GraphError(400, 2500, f"Unknown path components: /{'/'.join(segments[2:])}")
        if method != "GET":
            raise _GraphError(
                400,
                100,
                f"Unsupported {method.lower()} request. Object with ID 'me' does not exist, cannot be loaded "
                "due to missing permissions, or does not support this operation.",
                subcode=33,
                error_type="GraphMethodException",
            )
        token = _token_from(headers, query, record)
        if token is None:
            raise _GraphError(
                400, 2500, "An active access token must be used to query information about the current user."
            )
        # Every call that reaches the app counts, blocked or not, so the limiter comes before token checks.
        verdict = self._limiter.hit()
        record.verdict = verdict
        owner = self.config.users.lookup(token)
        if owner is not None and owner != "expired":
            record.user_id = owner.id
        if not verdict.allowed:
            record.throttle_code = 4
            raise _GraphError(400, 4, "(#4) Application request limit reached", is_transient=True)
        if owner is None:
            raise _GraphError(400, 190, "Invalid OAuth access token - Cannot parse access token")
        if owner == "expired":
            raise _GraphError(400, 190, _expired_message(time.time()), subcode=463)
        requested = query.get("fields", [""])[0]
        names = _parse_fields(requested) if requested else list(DEFAULT_FIELDS)
        body = {name: value for name in names if (value := owner.field_value(name)) is not None}
        body.setdefault("id", owner.id)  # Meta adds the node id to every read, asked for or not
        return _Reply(200, body)


@dataclass(slots=True)
class _Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        # Meta escapes "/" inside JSON strings; clients must parse the JSON, not match raw text.
        return json.dumps(self.body, separators=(",", ":")).replace("/", "\\/").encode()


@dataclass(slots=True)
class _RequestRecord:
    """What one Graph request did, for the stats."""

    status: int = 0
    verdict: LimiterVerdict | None = None
    throttle_code: int | None = None
    token_in_query: bool = False
    user_id: str | None = None


class _GraphError(Exception):
    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        *,
        subcode: int | None = None,
        error_type: str = "OAuthException",
        is_transient: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.subcode = subcode
        self.error_type = error_type
        self.is_transient = is_transient

    def body(self, trace_id: str) -> dict[str, Any]:
        error: dict[str, Any] = {"message": self.message, "type": self.error_type}
        if self.is_transient:
            error["is_transient"] = True
        error["code"] = self.code
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        error["fbtrace_id"] = trace_id
        return {"error": error}


class _Stats:
    """Thread-safe counters behind `GET /__stats`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight = 0
        self._clear()

    def _clear(self) -> None:
        self._requests = 0
        self._succeeded = 0
        self._by_status: Counter[int] = Counter()
        self._throttled_by_code: Counter[int] = Counter()
        self._blocked_arrivals = 0
        self._token_in_query = 0
        self._peak_concurrency = self._in_flight
        self._per_user: Counter[str] = Counter()

    def enter(self) -> None:
        with self._lock:
            self._in_flight += 1
            self._peak_concurrency = max(self._peak_concurrency, self._in_flight)

    def leave(self, record: _RequestRecord) -> None:
        with self._lock:
            self._in_flight -= 1
            self._requests += 1
            self._by_status[record.status] += 1
            self._succeeded += record.status == 200
            if record.throttle_code is not None:
                self._throttled_by_code[record.throttle_code] += 1
            if record.verdict is not None and record.verdict.blocked_before:
                self._blocked_arrivals += 1
            self._token_in_query += record.token_in_query
            if record.user_id is not None:
                self._per_user[record.user_id] += 1

    def reset(self) -> None:
        with self._lock:
            self._clear()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self._requests,
                "succeeded": self._succeeded,
                "by_status": {str(status): n for status, n in sorted(self._by_status.items())},
                "throttled": sum(self._throttled_by_code.values()),
                "throttled_by_code": {str(code): n for code, n in sorted(self._throttled_by_code.items())},
                "blocked_arrivals": self._blocked_arrivals,
                "token_in_query": self._token_in_query,
                "peak_concurrency": self._peak_concurrency,
                "in_flight": self._in_flight,
                "per_user": dict(self._per_user),
            }


def _token_from(headers: Message, query: Mapping[str, list[str]], record: _RequestRecord) -> str | None:
    scheme, _, credentials = (headers.get("Authorization") or "").strip().partition(" ")
    if scheme.lower() in _BEARER_SCHEMES and credentials.strip():
        return credentials.strip()
    from_query = query.get("access_token", [""])[0]
    if from_query:
        record.token_in_query = True
        return from_query
    return None


def _parse_fields(raw: str) -> list[str]:
    """Top-level field names in `raw`; modifiers like `picture.type(large)` or `{url}` pass, ignored."""
    open_stack: list[tuple[str, int]] = []
    items: list[tuple[int, str]] = []
    item_start = 0
    for index, char in enumerate(raw):
        if char not in _FIELDS_SYNTAX_CHARS:
            raise _syntax_error(raw, index, "end of string", f'"{char}"')
        if char in _CLOSERS:
            open_stack.append((char, index))
        elif char in _CLOSERS.values():
            if not open_stack or _CLOSERS[open_stack.pop()[0]] != char:
                raise _syntax_error(raw, index, "end of string", f'"{char}"')
        elif char == "," and not open_stack:
            items.append((item_start, raw[item_start:index]))
            item_start = index + 1
    if open_stack:
        raise _syntax_error(raw, len(raw), f'"{_CLOSERS[open_stack[-1][0]]}"', "end of string")
    items.append((item_start, raw[item_start:]))
    names: list[str] = []
    for start, item in items:
        if not item:
            continue
        match = _FIELD_NAME.match(item)
        if match is None:
            raise _syntax_error(raw, start, "field name", f'"{item[0]}"')
        if match.group() not in PROFILE_FIELDS:
            raise _GraphError(
                400, 100, f"(#100) Tried accessing nonexisting field ({match.group()}) on node type (User)"
            )
        if match.group() not in names:
            names.append(match.group())
    return names or list(DEFAULT_FIELDS)


def _syntax_error(raw: str, index: int, expected: str, found: str) -> _GraphError:
    message = f'Syntax error "Expected {expected} instead of {found}." at character {index}: {raw}'
    return _GraphError(400, 2500, message)


def _expired_message(now: float) -> str:
    current = datetime.fromtimestamp(now, _PST)
    expired = (current - timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    stamp = "%A, %d-%b-%y %H:%M:%S %Z"
    return (
        f"Error validating access token: Session has expired on {expired.strftime(stamp)}. "
        f"The current time is {current.strftime(stamp)}."
    )


def _app_usage_header(usage_pct: int) -> str:
    usage = {"call_count": usage_pct, "total_cputime": usage_pct // 4, "total_time": usage_pct // 2}
    return json.dumps(usage, separators=(",", ":"))


def _control_error(status: int, message: str) -> _Reply:
    error = _GraphError(status, 100, message, error_type="GraphMethodException")
    return _Reply(status, error.body(secrets.token_urlsafe(9)))


class _EmulatorHTTPServer(ThreadingHTTPServer):
    """One thread per connection, a deep accept queue, and a way to drop every open connection on stop."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], emulator: GraphEmulator) -> None:
        self.emulator = emulator
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _GraphRequestHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Wake every handler blocked on a kept-alive connection so `server_close` can join it."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up mid-response are normal under load; keep them off stderr.
        logger.debug("connection error while serving a request", exc_info=True)


class _GraphRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "motion-meta-emulator"
    timeout = _IDLE_TIMEOUT_S
    # Headers and body go out in two writes; with Nagle on, the body waits for a delayed ACK (~40 ms).
    disable_nagle_algorithm = True

    def version_string(self) -> str:
        return self.server_version

    def do_GET(self) -> None:
        self._respond()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self._respond()

    def _respond(self) -> None:
        emulator = cast(_EmulatorHTTPServer, self.server).emulator
        reply = emulator._handle(self.command, self.path, self.headers)
        body = reply.encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # The query string can carry an access token, so only the path is logged.
        logger.debug("%s %s -> %s", self.command, urlsplit(self.path).path, code)

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: the default writes every request line, tokens included, to stderr."""
