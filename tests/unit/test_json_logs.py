"""MOTION_META_LOG_FORMAT=json: one JSON object per line, with the context that applies, never a token."""

from __future__ import annotations

import json
import logging
from datetime import datetime

import responses
from typer.testing import CliRunner

from motion_meta_cli.cli.main import app

CANARY = "EAAjsonLogCanaryToken0000000000"
ME = "https://graph.test/v25.0/me"


@responses.activate
def test_json_log_lines_carry_time_level_logger_message_and_context_but_no_token() -> None:
    throttle = {"error": {"message": "(#4) Application request limit reached", "type": "OAuthException", "code": 4}}
    usage = json.dumps({"123": [{"type": "ads_management", "call_count": 100, "estimated_time_to_regain_access": 1}]})
    responses.get(ME, json=throttle, status=400, headers={"X-Business-Use-Case-Usage": usage})
    logger = logging.getLogger("motion_meta_cli")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    env = {
        "META_GRAPH_URL": "https://graph.test",
        "META_ACCESS_TOKEN": CANARY,
        "MOTION_META_LOG_FORMAT": "json",
        "MOTION_META_LOG_LEVEL": "INFO",
        "META_PLATFORM__THROTTLE__GIVE_UP_AFTER_S": "0",
    }
    try:
        run = CliRunner().invoke(app, ["fetch", "--json"], env=env)
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved
    assert run.exit_code == 5, run.output
    records = [json.loads(line) for line in run.stderr.splitlines() if line.startswith("{")]
    assert records, run.stderr
    for record in records:
        assert {"time", "level", "logger", "message"} <= record.keys()
        assert datetime.fromisoformat(record["time"]).utcoffset().total_seconds() == 0, "ISO 8601, UTC"
    throttled = next(r for r in records if r["message"].startswith("Meta throttled"))
    assert throttled["level"] == "WARNING" and throttled["logger"] == "motion_meta_cli.moderation.moderator"
    assert throttled["customer"] == "motion_test_user" and throttled["wait_s"] > 0 and throttled["scope"]
    assert CANARY not in run.output
