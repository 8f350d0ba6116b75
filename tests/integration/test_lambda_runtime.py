"""The Lambda handler under AWS's runtime interface client (awslambdaric), against a local server speaking the
Lambda Runtime API: warm invocations share one AppHandler, a pause longer than the invocation is deferred,
and a bad event is reported as the invocation's error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from motion_meta_cli.emulator import DEMO_TOKEN
from tests.integration.helpers import emulator_process

pytestmark = pytest.mark.integration

PREFIX = "/2018-06-01/runtime"


class RuntimeAPI:
    """Hands out `events` (event, seconds the invocation may run) one per `next`, and keeps the answers."""

    def __init__(self, events: list[tuple[dict[str, object], float]]) -> None:
        self.events = list(events)
        self.answers: dict[str, tuple[str, dict[str, object]]] = {}
        self.all_answered = threading.Event()
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._given = 0

    def next(self) -> tuple[str, dict[str, object], float] | None:
        with self._lock:
            if self._given == len(self.events):
                return None
            self._given += 1
            event, seconds = self.events[self._given - 1]
            return f"invocation-{self._given}", event, seconds

    def answer(self, invocation: str, kind: str, body: dict[str, object]) -> None:
        with self._lock:
            self.answers[invocation] = (kind, body)
            if len(self.answers) == len(self.events):
                self.all_answered.set()


@contextmanager
def runtime_api(api: RuntimeAPI) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != f"{PREFIX}/invocation/next":
                self.send_error(404)
                return
            given = api.next()
            if given is None:  # nothing left: hold the runtime here until the test ends
                api.stop.wait(120)
                self.send_error(500)
                return
            invocation, event, seconds = given
            body = json.dumps(event).encode()
            self.send_response(200)
            self.send_header("Lambda-Runtime-Aws-Request-Id", invocation)
            self.send_header("Lambda-Runtime-Deadline-Ms", str(int((time.time() + seconds) * 1000)))
            self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:mm")
            self.send_header("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            parts = self.path.removeprefix(f"{PREFIX}/").split("/")
            if parts[0] == "invocation" and len(parts) == 3:
                api.answer(parts[1], parts[2], body)
            elif parts[:2] == ["init", "error"]:
                api.answer("init", "error", body)
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        api.stop.set()
        server.shutdown()
        server.server_close()


def test_the_handler_under_the_runtime_interface_client(tmp_path: Path) -> None:
    api = RuntimeAPI(
        [
            ({}, 60.0),  # cold: fetches the demo customer, using the app's one call of this window
            ({}, 5.0),  # warm: Meta throttles the app for the rest of its 600 s window, far past this invocation
            ({"customers": "motion_test_user"}, 60.0),  # not a list: the invocation's error
        ]
    )
    with emulator_process("--app-limit", "1", "--window-s", "600") as graph, runtime_api(api) as address:
        env = {
            **os.environ,
            "AWS_LAMBDA_RUNTIME_API": address,
            "META_GRAPH_URL": graph,
            "META_ACCESS_TOKEN": DEMO_TOKEN,
            "META_RATE_WINDOW_S": "600",
            "MOTION_META_HOME": str(tmp_path / "home"),
        }
        command = [sys.executable, "-m", "awslambdaric", "motion_meta_cli.lambda_handler.handler"]
        with subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
            try:
                answered = api.all_answered.wait(90)
            finally:
                proc.kill()
                output = proc.communicate(timeout=30)[0].decode(errors="replace")
    assert answered, f"not every invocation was answered: {api.answers}\n{output[-2000:]}"
    cold_kind, cold = api.answers["invocation-1"]
    warm_kind, warm = api.answers["invocation-2"]
    bad_kind, bad = api.answers["invocation-3"]
    assert cold_kind == "response" and cold["fetched"] == ["motion_test_user"] and cold["warm"] is False
    assert warm_kind == "response" and warm["warm"] is True, "the second invocation reused the AppHandler"
    assert warm["fetched"] == [] and warm["failed"] == {}
    assert 5 < warm["deferred"]["motion_test_user"] <= 700, "deferred with its wait, not slept on"
    assert bad_kind == "error" and bad["errorType"] == "UsageError"
    assert DEMO_TOKEN not in json.dumps(api.answers) and DEMO_TOKEN not in output
