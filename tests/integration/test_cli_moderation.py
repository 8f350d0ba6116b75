"""`motion-meta moderation show|clear` in-process (Typer's CliRunner), against a stand-in Graph API over HTTP."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from motion_meta_cli.cli.main import app
from tests.integration.helpers import json_reply, stand_in_server

pytestmark = pytest.mark.integration

TOKEN = "EAAmoderationCliToken000000000"
ABSURD_ETA = {"42": [{"type": "ads_management", "call_count": 100, "estimated_time_to_regain_access": 1e12}]}


def _env(url: str) -> dict[str, str]:
    return {"META_GRAPH_URL": url, "META_ACCESS_TOKEN": TOKEN, "MOTION_META_LOG_LEVEL": "WARNING"}


def test_an_absurd_eta_is_clamped_and_clear_ends_it_for_the_next_process() -> None:
    calls: list[str] = []

    def reply(path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        calls.append(path)
        if len(calls) == 1:
            error = {
                "error": {"message": "(#4) Application request limit reached", "code": 4, "type": "OAuthException"}
            }
            return json_reply(400, error, {"X-Business-Use-Case-Usage": json.dumps(ABSURD_ETA)})
        return json_reply(200, {"id": "1", "name": "Ada"}, {"X-App-Usage": '{"call_count": 1}'})

    runner = CliRunner()
    with stand_in_server(reply) as url:
        env = _env(url)
        blocked = runner.invoke(app, ["fetch"], env=env)
        assert blocked.exit_code == 5, blocked.output
        assert "PAUSE_MAX_S" in blocked.stderr and "6e+13" in blocked.stderr, "the clamp is logged with Meta's value"
        assert "10800 s left of its pause" in blocked.stderr

        shown = runner.invoke(app, ["moderation", "show", "--json"], env=env)
        assert shown.exit_code == 0, shown.output
        (app_scope,) = [row for row in json.loads(shown.stdout)["scopes"] if row["scope"] == "app"]
        assert 10_700 < app_scope["cooldown_s"] <= 10_800

        still = runner.invoke(app, ["fetch"], env=env)
        assert still.exit_code == 5 and len(calls) == 1, "nothing was sent into the known pause"

        cleared = runner.invoke(app, ["moderation", "clear", "--scope", "app"], env=env)
        assert cleared.exit_code == 0 and cleared.stdout.strip() == "cleared app"
        assert "moderation cleared by hand" in cleared.stderr

        fetched = runner.invoke(app, ["fetch", "--json"], env=env)
        assert fetched.exit_code == 0, fetched.output
        assert json.loads(fetched.stdout)["name"] == "Ada"
        assert len(calls) == 2


def test_show_on_a_fresh_home_and_clear_needs_a_target() -> None:
    runner = CliRunner()
    empty = runner.invoke(app, ["moderation", "show"])
    assert empty.exit_code == 0 and "no shared moderation state" in empty.stdout
    assert json.loads(runner.invoke(app, ["moderation", "show", "--json"]).stdout) == {
        "scopes": [],
        "named_scopes": {},
        "slots": {},
        "instances": {},
    }
    neither = runner.invoke(app, ["moderation", "clear"])
    assert neither.exit_code == 2 and "error: say what to clear" in neither.stderr
    assert runner.invoke(app, ["moderation", "clear", "--all"]).stdout.strip() == "nothing to clear"
