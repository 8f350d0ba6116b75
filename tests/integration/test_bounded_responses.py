"""An answer is bounded: in time as a whole, in size, and it is never a redirect followed; a stored profile too."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.helpers import Reply, invoke_cli, json_reply, stand_in_server

pytestmark = pytest.mark.integration

USER = {"id": "5", "name": "Bounded"}


def _env(url: str, **extra: str) -> dict[str, str]:
    return {"META_GRAPH_URL": url, "META_ACCESS_TOKEN": "EAAbounded0000000000", **extra}


class Counting:
    """Replies with `reply`, counting the requests."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.requests = 0

    def __call__(self, path: str, headers: dict[str, str]) -> Reply:
        self.requests += 1
        return self.reply


def test_an_answer_trickling_in_is_cut_at_its_deadline_though_every_read_keeps_within_the_read_timeout() -> None:
    body = json.dumps(USER).encode()

    def drip(path: str, headers: dict[str, str]) -> Reply:
        def chunks() -> Iterator[bytes]:
            for byte in body:  # a byte every 0.2 s: each read comes well within the read timeout
                yield bytes([byte])
                time.sleep(0.2)

        return 200, {"Content-Type": "application/json", "Content-Length": str(len(body))}, chunks()

    settings = {
        "META_PLATFORM__RETRY__RESPONSE_DEADLINE_S": "1",
        "META_PLATFORM__RETRY__READ_TIMEOUT_S": "5",
        "META_PLATFORM__RETRY__MAX_ATTEMPTS": "2",
        "META_PLATFORM__RETRY__BACKOFF_BASE_S": "0.01",
    }
    with stand_in_server(drip) as url:
        start = time.monotonic()
        run = invoke_cli("fetch", env=_env(url, **settings))
        took = time.monotonic() - start
    assert run.code == 6, run.stderr
    assert "did not send its whole answer within 1 s (gave up after 2 attempts)" in run.stderr
    assert took < 5.0, "two attempts of about a second each, not the 6 s the whole body takes each time"


def test_an_answer_larger_than_the_bound_is_an_upstream_error_read_no_further_and_not_retried(tmp_path: Path) -> None:
    big = {**USER, "padding": "x" * (600 * 1024)}
    server = Counting(json_reply(200, big))
    with stand_in_server(server) as url:
        run = invoke_cli("fetch", env=_env(url))
        shown = invoke_cli("show", "--customer", "motion_test_user", "--json", env=_env(url))
    assert run.code == 6, run.stderr
    assert "larger than 524288 bytes (MAX_BODY_BYTES)" in run.stderr
    assert server.requests == 1, "the same answer would come again: not retried"
    assert shown.code == 0, shown.stderr
    assert json.loads(shown.stdout)["snapshot"] is None, "nothing was stored"


def test_a_compressed_answer_is_bounded_by_its_size_once_decompressed() -> None:
    bomb = gzip.compress(json.dumps({**USER, "padding": "0" * (20 * 1024 * 1024)}).encode())
    assert len(bomb) < 100 * 1024
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    with stand_in_server(lambda path, h: (200, headers, bomb)) as url:
        run = invoke_cli("fetch", env=_env(url))
    assert run.code == 6, run.stderr
    assert "larger than 524288 bytes" in run.stderr


def test_a_redirect_is_an_upstream_error_not_followed_nor_retried() -> None:
    elsewhere = Counting(json_reply(200, {"id": "666", "name": "Someone Else"}))
    with stand_in_server(elsewhere) as other:
        graph = Counting((302, {"Location": f"{other}/v25.0/me?fields=id,name"}, b""))
        with stand_in_server(graph) as url:
            run = invoke_cli("fetch", "--json", env=_env(url))
    assert run.code == 6, run.stderr
    assert "HTTP 302: a redirect to http://127.0.0.1:" in run.stderr
    assert "not followed" in run.stderr
    assert "Someone Else" not in run.stdout
    assert (graph.requests, elsewhere.requests) == (1, 0)


def test_a_profile_field_too_large_to_store_is_refused_naming_the_field() -> None:
    answer = {**USER, "about": "y" * (100 * 1024)}  # within MAX_BODY_BYTES, beyond what a stored field keeps
    with stand_in_server(lambda path, h: json_reply(200, answer)) as url:
        run = invoke_cli("fetch", env=_env(url))
        shown = invoke_cli("show", "--customer", "motion_test_user", "--json", env=_env(url))
    assert run.code == 6, run.stderr
    assert "field 'about' is 102402 bytes, more than the 65536 stored per field" in run.stderr
    assert "yyyy" not in run.stderr
    assert shown.code == 0, shown.stderr
    assert json.loads(shown.stdout)["snapshot"] is None
