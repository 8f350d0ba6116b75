"""Shared pieces of the integration tests: running the CLI (in this process, or in a child process as a user
would), and tiny stand-in servers."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str


def invoke_cli(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> Run:
    """`motion-meta ARGS` in this process (Typer's CliRunner), with the test's environment plus `env` for the
    call, in the test's working directory (tmp_path, see tests/conftest.py), stdin from `input` (else empty).

    Output is that of a child whose stdout is a pipe: 80 columns unless `env` sets COLUMNS. The logging the
    command configures is undone afterwards. A crash is raised here, never returned as an exit code: only
    SystemExit (the exit code) is caught.
    """
    from typer.testing import CliRunner

    from motion_meta_cli.cli.main import app

    logger = logging.getLogger("motion_meta_cli")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    try:
        result = CliRunner().invoke(
            app, list(args), input=input, env={"COLUMNS": "80", **(env or {})}, prog_name="motion-meta"
        )
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"motion-meta {' '.join(args)} crashed:\n{result.stderr}") from result.exception
    return Run(result.exit_code, result.stdout, result.stderr)


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60, input: str | None = None
) -> Run:
    """`python -m motion_meta_cli ARGS` in a child process, with the test's environment plus `env`: for what
    needs a process of its own (start-up, signals, several at once); `invoke_cli` otherwise."""
    full_env = {**os.environ, **(env or {})}
    done = subprocess.run(
        [sys.executable, "-m", "motion_meta_cli", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **({"input": input} if input is not None else {"stdin": subprocess.DEVNULL}),
    )
    return Run(done.returncode, done.stdout, done.stderr)


Reply = tuple[int, dict[str, str], bytes | Iterable[bytes]]
"""Status, headers and body; a body given as an iterable of chunks is sent chunk by chunk as it is iterated
(a generator may sleep between them), with the Content-Length the headers give."""


@contextmanager
def stand_in_server(reply: Callable[[str, dict[str, str]], Reply]) -> Iterator[str]:
    """An HTTP server on a free port answering every GET with `reply(path, headers)`; yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, headers, body = reply(self.path, dict(self.headers))
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            if isinstance(body, bytes):
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            self.end_headers()
            try:
                for chunk in body:
                    self.wfile.write(chunk)
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up on it

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def json_reply(status: int, payload: object, headers: dict[str, str] | None = None) -> Reply:
    """A JSON reply for `stand_in_server`."""
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(payload).encode()


@contextmanager
def emulator_process(*flags: str) -> Iterator[str]:
    """`motion-meta emulator FLAGS` in its own process (as Meta would be); yields its URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "motion_meta_cli", "emulator", "--port", "0", *flags],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        match = re.search(r"http://127\.0\.0\.1:\d+", proc.stdout.readline())
        assert match, "the emulator printed no URL"
        yield match.group(0)
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def poll_once_on(cache_url: str, home: Path, customers: list[str]) -> dict[str, object]:
    """Customers with tokens, then `poll --once` against an emulator with every moderation record in the
    cache at `cache_url`; asserts every customer was fetched, and returns the app's scope from `moderation
    show` (its budget learned and kept there)."""
    from motion_meta_cli.emulator import EmulatorConfig, GraphEmulator, default_directory

    env = {"MOTION_META_HOME": str(home), "MOTION_META_CACHE_URL": cache_url}
    for name in customers:
        assert invoke_cli("customers", "add", name, env=env).code == 0
        token = f"EAApollonce{name}0000000000"
        assert invoke_cli("credentials", "set", "--customer", name, input=token, env=env).code == 0
    config = EmulatorConfig(users=default_directory(accept_any_token=True), app_limit=1000, window_s=60)
    with GraphEmulator(config) as emulator:
        run = invoke_cli("poll", "--once", "--json", env={**env, "META_GRAPH_URL": emulator.url})
    assert run.code == 0, run.stderr
    assert json.loads(run.stdout)["fetched"] == len(customers)
    shown = invoke_cli("moderation", "show", "--json", env=env)
    assert shown.code == 0, shown.stderr
    [app] = [scope for scope in json.loads(shown.stdout)["scopes"] if scope["scope"] == "app"]
    return dict(app)
