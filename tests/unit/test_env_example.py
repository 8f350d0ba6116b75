"""`.env.example` documents every setting, and what it shows is a valid configuration."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from motion_meta_cli.config import Settings, load_settings

EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"


def _documented_names() -> set[str]:
    return set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", EXAMPLE.read_text(), flags=re.MULTILINE))


def test_every_setting_is_documented() -> None:
    top_level = {name.split("__")[0] for name in _documented_names()}
    assert {field.upper() for field in Settings.model_fields} <= top_level


def test_the_example_with_everything_uncommented_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = []
    for line in EXAMPLE.read_text().splitlines():
        match = re.match(r"^#? ?([A-Z][A-Z0-9_]+=.*)$", line)
        if match and "(replaces the whole map)" not in line and not match.group(1).endswith("="):
            lines.append(match.group(1))
    (tmp_path / ".env").write_text("\n".join([*lines, "META_ACCESS_TOKEN=EAAexample"]))
    settings = load_settings()
    assert settings.platform_for("me").retry.max_attempts == 3
    assert settings.meta_platform.retry.max_attempts == 4
