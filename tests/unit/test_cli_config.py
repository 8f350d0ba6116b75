"""`motion-meta config show|check` in-process: sources, masking, and one line per backend."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from motion_meta_cli.cli.main import app

Invoke = Callable[..., Result]
TOKEN = "EAAconfigShowCanary00000000000"


@pytest.fixture
def cli() -> Iterator[Invoke]:
    logger = logging.getLogger("motion_meta_cli")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    runner = CliRunner()
    yield lambda *args, **env: runner.invoke(app, list(args), env={"COLUMNS": "200", **env})
    logger.handlers[:], logger.level, logger.propagate = saved


def test_config_show_names_each_source_and_masks_secrets(cli: Invoke, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("META_RATE_WINDOW_S=60\n")
    run = cli(
        "config",
        "show",
        "--json",
        META_ACCESS_TOKEN=TOKEN,
        META_PLATFORM__RETRY__MAX_ATTEMPTS="6",
        META_ENDPOINTS__ME__RETRY__MAX_ATTEMPTS="2",
        MOTION_META_CACHE_URL="rediss://user:hunter2@redis.example.com:6380/0",
    )
    assert run.exit_code == 0, run.output
    described = json.loads(run.stdout)
    settings = described["settings"]
    assert settings["META_RATE_WINDOW_S"] == {"value": 60.0, "source": ".env"}
    assert settings["META_GRAPH_URL"]["source"] == "default"
    assert settings["META_PLATFORM"]["source"] == "environment"
    assert settings["META_ACCESS_TOKEN"]["value"] == "EAAc…0000"
    assert settings["MOTION_META_CACHE_URL"]["value"] == "rediss://user:***@redis.example.com:6380/0"
    assert described["endpoints"]["me"]["retry"]["max_attempts"] == 2, "the endpoint override merged in"
    assert TOKEN not in run.output and "hunter2" not in run.output
    table = cli("config", "show", META_ACCESS_TOKEN=TOKEN)
    assert table.exit_code == 0 and "Meta config for /me" in table.stdout and TOKEN not in table.output


def test_config_check_answers_one_line_per_backend_and_exit_8_when_one_is_away(cli: Invoke) -> None:
    healthy = cli("config", "check")
    assert healthy.exit_code == 0, healthy.output
    lines = healthy.stdout.splitlines()
    assert lines[0] == "settings: valid"
    assert [line.split(":")[0] for line in lines[1:]] == ["cache", "store", "secrets"]
    assert all(" ok (" in line for line in lines[1:])
    away = cli("config", "check", MOTION_META_CACHE_URL="redis://127.0.0.1:1/0")
    assert away.exit_code == 8
    assert "cache: redis://127.0.0.1:1/0 FAILED: cannot reach Redis" in away.stdout
    invalid = cli("config", "check", META_RATE_WINDOW_S="-1")
    assert invalid.exit_code == 3 and invalid.stderr.startswith("error: invalid configuration: META_RATE_WINDOW_S")
