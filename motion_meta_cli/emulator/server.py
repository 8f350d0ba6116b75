"""A local HTTP server that answers `GET /{version}/me` the way Meta's Graph API does, throttling included.

Besides the Graph path it serves control endpoints: `GET /__timeline` (when each user's latest requests
were answered), `GET /__stats` (what the emulator saw, never tokens)
and `POST /__reset` (clear the counters and every limiter).

One Graph request goes: draw its faults → sleep the latency → count it in every scope (scopes.py) → answer
the first refusing scope's throttle, an auth error or the user → let a drawn fault replace the answer or garble
its usage headers → add the trace id and usage headers.
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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

from motion_meta_cli.emulator import usage_headers
from motion_meta_cli.emulator.config import EmulatorConfig
from motion_meta_cli.emulator.faults import Fault, FaultDraw, FaultInjector
from motion_meta_cli.emulator.scopes import THROTTLES, ScopeLimits
from motion_meta_cli.emulator.stats import EmulatorStats, RequestRecord
from motion_meta_cli.emulator.users import DEFAULT_FIELDS, PROFILE_FIELDS, EmulatorUser

__all__ = ["EmulatorConfig", "GraphEmulator"]

logger = logging.getLogger(__name__)

_VERSION = re.compile(r"v\d+\.\d+")
_FIELD_NAME = re.compile(r"[A-Za-z0-9_]+")
_FIELDS_SYNTAX_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_,.{}()")
_CLOSERS = {"{": "}", "(": ")"}
_BEARER_SCHEMES = ("bearer", "oauth")
_PST = timezone(timedelta(hours=-8), "PST")
_JSON = "application/json; charset=UTF-8"
_HTML = "text/html; charset=utf-8"
_ERROR_PAGE = (
    b'<!DOCTYPE html>\n<html lang="en" id="facebook"><head><title>Facebook | Error</title>'
    b'<meta charset="utf-8"></head><body><div id="content"><h2>Sorry, something went wrong.</h2>'
    b"<p>We're working on it and we'll get it fixed as soon as we can.</p></div></body></html>\n"
)
"""What a proxy in front of Graph serves when it cannot reach it: not JSON, no usage headers."""
_IDLE_TIMEOUT_S = 75.0
"""Idle keep-alive connections close after this long (nginx's default), so threads are not held forever."""
_SHUTDOWN_POLL_S = 0.05
"""How often the accept loop checks for `stop()`; the default 0.5 s makes every stop take that long."""


class GraphEmulator:
    """Serves a Meta-shaped Graph API on a local port.

    >>> with GraphEmulator(EmulatorConfig(app_limit=200)) as emulator:  # doctest: +SKIP
    ...     requests.get(f"{emulator.url}/v25.0/me", headers={"Authorization": f"Bearer {DEMO_TOKEN}"})

    The socket is bound on construction, so `port` is known before `start()`. An emulator runs once:
    after `stop()` build a new one. `clock` drives every limiter and the stats; tests pass a fake one to move
    through windows and blocks without sleeping (latency still sleeps for real).
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config if config is not None else EmulatorConfig()
        self._limits = ScopeLimits(self.config, clock)
        self._faults = FaultInjector(self.config)
        self._stats = EmulatorStats(clock)
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
        self._stats.reset()  # first_throttle_at_s counts from here
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
        self._stats.reset()
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
        config = self.config
        snapshot = self._stats.snapshot()
        snapshot["app_usage_pct"] = self._limits.app.usage_pct()
        snapshot["app_limit"] = config.app_limit
        snapshot["window_s"] = config.window_s
        snapshot["page_limit"] = config.page_limit
        snapshot["page_usage_pct"] = self._limits.page.usage_pct() if self._limits.page else 0
        snapshot["token_limit"] = config.token_limit
        snapshot["buc_limit"] = config.buc_limit
        if self._limits.business_use_case is not None:
            usage = self._limits.business_use_case_usage()
            snapshot["buc_usage_pct"] = usage.call_count_pct
            snapshot["buc_regain_access_minutes"] = usage.regain_access_minutes
        else:
            snapshot["buc_usage_pct"] = snapshot["buc_regain_access_minutes"] = 0
        return snapshot

    def reset(self) -> None:
        """Clear the counters and every limiter, as `POST /__reset` does."""
        self._stats.reset()
        self._limits.reset()

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
        if parts.path == "/__timeline":
            if method != "GET":
                return _control_error(405, "Use GET /__timeline.")
            return _Reply(200, self._stats.timeline())
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
        record = RequestRecord()
        faults = self._faults.draw(_token_from(headers, query, RequestRecord()) or "")
        record.slow = faults.slow
        self._stats.enter()
        try:
            if delay_s := self.config.latency_s + faults.extra_latency_s:
                time.sleep(delay_s)
            try:
                reply = self._answer_graph(method, path, segments, query, headers, record)
            except _GraphError as error:
                reply = _Reply(error.status, error.body(trace_id))
            if faults.response is not None:
                reply = _faulted_reply(faults.response, trace_id)
                record.fault = faults.response
                record.throttle_code = None  # the client never saw it
            if not reply.bare:
                self._add_graph_headers(reply, trace_id, segments, record, faults)
            record.status = None if reply.drop else reply.status
        finally:
            self._stats.leave(record)
        return reply

    def _add_graph_headers(
        self, reply: _Reply, trace_id: str, segments: list[str], record: RequestRecord, faults: FaultDraw
    ) -> None:
        reply.headers["x-fb-trace-id"] = trace_id
        if segments and _VERSION.fullmatch(segments[0]):
            reply.headers["facebook-api-version"] = segments[0]
        # A request gets one fault at most: header faults garble only answers no response fault replaced.
        header_fault = faults.headers if record.fault is None else None
        verdict = record.verdict
        usage: dict[str, dict[str, Any]] = {}
        if self.config.app_limit is not None:
            app_pct = verdict.app.usage_pct if verdict else self._limits.app.usage_pct()
            usage[usage_headers.APP_USAGE] = usage_headers.app_usage(app_pct)
        if self._limits.business_use_case is not None:
            business = self._limits.business_use_case_usage(verdict.business_use_case if verdict else None)
            usage[usage_headers.BUSINESS_USE_CASE_USAGE] = usage_headers.business_use_case_usage(self.config, business)
        for name, value in usage.items():
            reply.headers[name] = usage_headers.render(value, header_fault)
        if usage and header_fault is not None:
            record.fault = header_fault

    def _answer_graph(
        self,
        method: str,
        path: str,
        segments: list[str],
        query: Mapping[str, list[str]],
        headers: Message,
        record: RequestRecord,
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
        owner = self.config.users.lookup(token)
        user = owner if isinstance(owner, EmulatorUser) else None
        # Every call that reaches the app counts, blocked or not, so the limits come before token checks.
        verdict = self._limits.record(token if user is not None else None)
        record.verdict = verdict
        if user is not None:
            record.user_id = user.id
        if (scope := verdict.refused_by) is not None:
            throttle = THROTTLES[scope]
            record.throttle_code = throttle.code
            raise _GraphError(
                400, throttle.code, throttle.message, subcode=throttle.subcode, is_transient=throttle.is_transient
            )
        if owner is None:
            raise _GraphError(400, 190, "Invalid OAuth access token - Cannot parse access token")
        if user is None:
            raise _GraphError(400, 190, _expired_message(time.time()), subcode=463)
        requested = query.get("fields", [""])[0]
        names = _parse_fields(requested) if requested else list(DEFAULT_FIELDS)
        body = {name: value for name in names if (value := user.field_value(name)) is not None}
        body.setdefault("id", user.id)  # Meta adds the node id to every read, asked for or not
        return _Reply(200, body)


@dataclass(slots=True)
class _Reply:
    status: int
    body: dict[str, Any] | bytes
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = _JSON
    bare: bool = False
    """Sent as is, without Graph's trace id and usage headers (a proxy's page)."""
    drop: bool = False
    """Close the connection without answering."""

    def encode(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        # Meta escapes "/" inside JSON strings; clients must parse the JSON, not match raw text.
        return json.dumps(self.body, separators=(",", ":")).replace("/", "\\/").encode()


def _faulted_reply(fault: Fault, trace_id: str) -> _Reply:
    """The answer that replaces a request's real one."""
    match fault:
        case Fault.SERVER_ERROR:
            error = _GraphError(500, 1, "An unknown error occurred", subcode=99, is_transient=True)
        case Fault.TRANSIENT:
            error = _GraphError(400, 2, "(#2) Service temporarily unavailable", is_transient=True)
        case Fault.HTML:
            return _Reply(502, _ERROR_PAGE, content_type=_HTML, bare=True)
        case _:
            return _Reply(0, b"", bare=True, drop=True)
    return _Reply(error.status, error.body(trace_id))


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


def _token_from(headers: Message, query: Mapping[str, list[str]], record: RequestRecord) -> str | None:
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
        if reply.drop:
            self.close_connection = True  # the server closes the socket once this returns, without a word
            return
        body = reply.encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
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
