"""`stress` on a real (pseudo-)terminal: its live view and the log lines printed above it."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from motion_meta_cli.emulator import DEMO_TOKEN
from tests.integration.helpers import emulator_process

pytestmark = pytest.mark.integration

CONTROL = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])|\x1b\][^\x07]*\x07|\r|\n|[^\x1b\r\n]+")


def screen(raw: str) -> list[str]:
    """The lines a terminal shows (scrollback included) after `raw`: a small model of the cursor movements and
    erasures Rich's live view uses (cursor up, erase line, carriage return), colours ignored."""
    rows, row, col = [""], 0, 0
    for match in CONTROL.finditer(raw):
        token = match.group(0)
        if token == "\n":
            row, col = row + 1, 0
            if row == len(rows):
                rows.append("")
        elif token == "\r":
            col = 0
        elif match.group(2) == "A":  # cursor up
            row = max(0, row - int(match.group(1) or 1))
        elif match.group(2) == "K":  # erase (the whole line, as Rich asks)
            rows[row] = ""
        elif token.startswith("\x1b"):
            continue
        else:
            line = rows[row].ljust(col)
            rows[row] = line[:col] + token + line[col + len(token) :]
            col += len(token)
    return rows


def _run_on_a_terminal(command: list[str], env: dict[str, str], cwd: Path, timeout_s: float) -> tuple[int, str]:
    leader, follower = pty.openpty()
    proc = subprocess.Popen(command, stdin=follower, stdout=follower, stderr=follower, env=env, cwd=cwd)
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    data = os.read(leader, 65536)
                except OSError:  # the terminal closed: the process is gone
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        return proc.wait(timeout=30), b"".join(chunks).decode("utf-8", "replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(leader)


@pytest.mark.parametrize(("columns", "lines"), [(160, 45), (80, 24)])
def test_throttle_warnings_print_once_above_the_live_view(tmp_path: Path, columns: int, lines: int) -> None:
    with emulator_process("--app-limit", "40", "--window-s", "1") as url:
        env = {
            **os.environ,
            "META_GRAPH_URL": url,
            "META_ACCESS_TOKEN": DEMO_TOKEN,
            "META_RATE_WINDOW_S": "1",
            "COLUMNS": str(columns),
            "LINES": str(lines),
            "TERM": "xterm-256color",
        }
        command = [sys.executable, "-m", "motion_meta_cli", "stress", "--requests", "160", "--concurrency", "80"]
        code, raw = _run_on_a_terminal(command, env, tmp_path, timeout_s=90)
    shown = screen(raw)
    assert code == 0, "\n".join(shown[-40:])
    logged = raw.count("Meta throttled app")
    assert logged, "the burst met the limit, so a throttle warning was logged"
    warnings = [line for line in shown if "Meta throttled app" in line]
    assert len(warnings) == logged, "every warning logged is still on the screen, once: none was drawn over"
    for line in warnings:
        assert "│" not in line and "┃" not in line, f"a warning tore a frame of the live view: {line!r}"
    assert any("stress summary" in line for line in shown)
