"""Metrics from a `poll --once` (textfile) and the names they follow: prefix, base units, bounded labels."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import responses
from prometheus_client import REGISTRY
from typer.testing import CliRunner

from motion_meta_cli.cli.main import app

ME = "https://graph.test/v25.0/me"
CANARY = "EAAmetricsCanaryToken000000000"


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@responses.activate
def test_poll_once_writes_the_metrics_in_the_textfile_format(tmp_path: Path) -> None:
    responses.get(ME, json={"id": "1", "name": "Ada"}, headers={"X-App-Usage": '{"call_count": 3}'})
    before_ok = _value("motion_meta_graph_requests_total", endpoint="me", outcome="ok")
    before_fetched = _value("motion_meta_poll_customers_total", result="fetched")
    logger = logging.getLogger("motion_meta_cli")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    textfile = tmp_path / "textfile" / "motion_meta.prom"
    env = {"META_GRAPH_URL": "https://graph.test", "META_ACCESS_TOKEN": CANARY}
    try:
        run = CliRunner().invoke(app, ["poll", "--once", "--json", "--metrics-file", str(textfile)], env=env)
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved
    assert run.exit_code == 0, run.output
    assert _value("motion_meta_graph_requests_total", endpoint="me", outcome="ok") == before_ok + 1
    assert _value("motion_meta_poll_customers_total", result="fetched") == before_fetched + 1
    text = textfile.read_text()
    assert 'motion_meta_graph_requests_total{endpoint="me",outcome="ok"}' in text
    assert "motion_meta_graph_request_duration_seconds_bucket" in text
    assert "motion_meta_poll_cycle_duration_seconds_count" in text
    assert "motion_meta_moderation_in_process 0.0" in text
    assert 'motion_meta_usage_ratio{counter="call_count",scope_kind="app",use_case=""} 0.03' in text
    assert re.search(r'motion_meta_build_info\{api_version="v25.0",version="[^"]+"\} 1.0', text)
    assert CANARY not in text
    names = set(re.findall(r"^# TYPE (\w+) (\w+)", text, flags=re.MULTILINE))
    ours = {(name, kind) for name, kind in names if name.startswith("motion_meta_")}
    assert ours, text
    for name, kind in ours:
        if kind == "counter":
            assert not name.endswith("_total_total")
        assert not re.search(r"_(ms|milliseconds|percent|pct)$", name), f"{name}: base units only"
    assert "customer=" not in text, "no label whose values grow with the customers"
