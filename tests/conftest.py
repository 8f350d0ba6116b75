"""Every test runs with a clean environment, in its own directory, with its own MOTION_META_HOME."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

_PREFIXES = ("META_", "MOTION_META_", "SERVICES_META_")


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Clear the variables the tool reads, work in tmp_path (no stray .env), keep state under it."""
    for name in list(os.environ):
        if name.startswith(_PREFIXES):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    monkeypatch.setenv("MOTION_META_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    return home


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    """Commands run in-process configure the `motion_meta_cli` logger (a handler on their captured stderr, no
    propagation): put it back as it was after every test."""
    logger = logging.getLogger("motion_meta_cli")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved


@pytest.fixture
def home(isolated: Path) -> Path:
    """The MOTION_META_HOME of this test."""
    return isolated
