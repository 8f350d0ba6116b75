"""What the benchmarks share: local ports, child processes, and an emulator in its own process.

Everything stays on 127.0.0.1; every process started here is the caller's to kill.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

URL_PATTERN = re.compile(r"http://127\.0\.0\.1:(\d+)")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout_s: float = 30) -> None:
    """Return once something accepts connections on `port`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def kill(proc: subprocess.Popen[Any]) -> None:
    """Kill `proc` if it still runs, and reap it."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def tail(text: str, lines: int = 8) -> str:
    """The last `lines` lines of `text`, indented for a report."""
    return "\n".join(f"      {line}" for line in text.strip().splitlines()[-lines:])


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without META_/MOTION_META_ variables, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("META_", "MOTION_META_"))}
    env.update(extra)
    return env


def naive_session(pool_size: int) -> Any:
    """The naive client's session: requests with urllib3's Retry (30 retries on 400/429/5xx, backoff 0.5 s)."""
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util import Retry

    session = requests.Session()
    retry = Retry(
        total=30,
        status_forcelist=(400, 429, 500, 502, 503, 504),
        backoff_factor=0.5,
        allowed_methods=None,
        raise_on_status=False,
    )
    session.mount("http://", HTTPAdapter(pool_maxsize=pool_size, max_retries=retry))
    return session


def start_emulator(work: Path, name: str, *flags: str) -> tuple[subprocess.Popen[bytes], str]:
    """`motion-meta emulator --port 0 FLAGS` in its own process, and its URL once it accepts connections."""
    out_path, err_path = work / f"{name}.out", work / f"{name}.err"
    command = [sys.executable, "-m", "motion_meta_cli", "emulator", "--port", "0", *flags]
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(command, stdout=out, stderr=err, env=clean_env(), cwd=work)
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            match = URL_PATTERN.search(out_path.read_text(errors="replace"))
            if match:
                wait_for_port(int(match.group(1)), timeout_s=10)
                return proc, match.group(0)
            if proc.poll() is not None:
                raise RuntimeError(f"emulator exited {proc.returncode}:\n{tail(err_path.read_text())}")
            time.sleep(0.02)
        raise RuntimeError("emulator printed no URL within 30 s")
    except BaseException:
        kill(proc)
        raise


def emulator_stats(url: str) -> dict[str, Any]:
    """The emulator's `/__stats`."""
    with urllib.request.urlopen(f"{url}/__stats", timeout=10) as response:
        return dict(json.load(response))


def emulator_reset(url: str) -> None:
    """Clear the emulator's counters and limits."""
    request = urllib.request.Request(f"{url}/__reset", method="POST", data=b"")
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()
