"""A canary token goes through every path a token can take; it must surface only in the secrets file."""

from __future__ import annotations

import json
import logging
import secrets
from pathlib import Path

import pytest

from motion_meta_cli.app import AppHandler
from motion_meta_cli.config import Settings
from motion_meta_cli.emulator import EmulatorConfig, GraphEmulator, default_directory
from motion_meta_cli.errors import MotionMetaError
from tests.integration.conftest import free_port
from tests.integration.helpers import json_reply, run_cli, stand_in_server

pytestmark = pytest.mark.integration

CANARY = "EAAcanary" + secrets.token_hex(16)


def _assert_only_in_secrets_file(home: Path) -> None:
    assert (home / "secrets.json").read_text().count(CANARY) == 1
    for path in home.rglob("*"):
        if path.is_file() and path.name != "secrets.json":
            assert CANARY.encode() not in path.read_bytes(), f"token leaked into {path.name}"


def test_the_token_never_reaches_output_logs_storage_or_urls(tmp_path: Path) -> None:
    seen_paths: list[str] = []

    def echoing_server(path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        # A hostile upstream that echoes the Authorization header back in its error message.
        seen_paths.append(path)
        message = f"(#100) bad request for {headers.get('Authorization', '')}"
        return json_reply(400, {"error": {"message": message, "type": "OAuthException", "code": 100}})

    debug = {"META_ACCESS_TOKEN": CANARY, "MOTION_META_LOG_LEVEL": "DEBUG", "META_PLATFORM__RETRY__MAX_ATTEMPTS": "2"}
    outputs: list[str] = []
    with GraphEmulator(EmulatorConfig(users=default_directory(accept_any_token=True))) as ok_server:
        run = run_cli("fetch", "--json", cwd=tmp_path, env={**debug, "META_GRAPH_URL": ok_server.url})
        assert run.code == 0, run.stderr
        outputs += [run.stdout, run.stderr, json.dumps(ok_server.stats())]
    with GraphEmulator(EmulatorConfig()) as rejecting_server:  # does not know the canary: 190
        run = run_cli("fetch", cwd=tmp_path, env={**debug, "META_GRAPH_URL": rejecting_server.url})
        assert run.code == 4
        outputs += [run.stdout, run.stderr]
    with GraphEmulator(EmulatorConfig(app_limit=1, window_s=60, users=default_directory(accept_any_token=True))) as s:
        env = {**debug, "META_GRAPH_URL": s.url, "META_PLATFORM__THROTTLE__GIVE_UP_AFTER_S": "0"}
        for expected in (0, 5):
            run = run_cli("fetch", cwd=tmp_path, env=env)
            assert run.code == expected, run.stderr
            outputs += [run.stdout, run.stderr]
    # A fresh home: the throttle above left a pause in the shared cache that would (rightly) hold this one.
    fresh = {"MOTION_META_HOME": str(tmp_path / "home2")}
    with stand_in_server(echoing_server) as url:
        run = run_cli("fetch", cwd=tmp_path, env={**debug, **fresh, "META_GRAPH_URL": url})
        assert run.code == 7
        outputs += [run.stdout, run.stderr]
    run = run_cli("fetch", cwd=tmp_path, env={**debug, **fresh, "META_GRAPH_URL": f"http://127.0.0.1:{free_port()}"})
    assert run.code == 6
    outputs += [run.stdout, run.stderr]

    for text in outputs:
        assert CANARY not in text
    assert seen_paths and all(CANARY not in path for path in seen_paths)
    _assert_only_in_secrets_file(tmp_path / "home")
    _assert_only_in_secrets_file(tmp_path / "home2")


def test_in_process_errors_and_logs_never_hold_the_token(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="motion_meta_cli")
    with GraphEmulator(EmulatorConfig()) as server:
        settings = Settings(meta_graph_url=server.url, meta_access_token=CANARY, motion_meta_home=tmp_path / "h")
        with AppHandler(settings) as app:
            result = app.fetch("motion_test_user")
    assert isinstance(result.error, MotionMetaError)
    assert CANARY not in str(result.error) and CANARY not in repr(result.error)
    assert CANARY not in repr(settings)
    assert CANARY not in caplog.text
    _assert_only_in_secrets_file(tmp_path / "h")
