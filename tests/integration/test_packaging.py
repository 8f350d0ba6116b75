"""The image's install path without Docker: build the wheel from the repository, install it with only its
runtime dependencies (and the redis/aws extras) into a clean venv, as the Dockerfile does, and run it; and
hadolint on the Dockerfile."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from motion_meta_cli import __version__
from motion_meta_cli.emulator import DEMO_TOKEN
from tests.integration.helpers import emulator_process

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def test_the_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    done = subprocess.run([hadolint, str(REPO / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_wheel_installs_with_runtime_dependencies_only_and_polls(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(dist), str(REPO)],
        check=True,
        timeout=300,
    )
    (wheel,) = dist.glob("motion_meta-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "install", "--quiet", f"{wheel}[redis,aws]"], check=True, timeout=600)
    installed = subprocess.run([*pip, "list", "--format", "json"], capture_output=True, text=True, check=True)
    names = {entry["name"].lower().replace("_", "-") for entry in json.loads(installed.stdout)}
    assert {"typer", "requests", "redis", "boto3", "prometheus-client"} <= names
    assert not names & {"pytest", "moto", "fakeredis", "responses", "hypothesis"}, "no test dependency"

    tool = str(venv / "bin" / "motion-meta")
    version = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=60)
    assert version.stdout.strip() == f"motion-meta {__version__}"
    with emulator_process("--accept-any-token") as url:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(tmp_path),
            "MOTION_META_HOME": str(tmp_path / "home"),
            "META_GRAPH_URL": url,
            "META_ACCESS_TOKEN": DEMO_TOKEN,
        }
        polled = subprocess.run(
            [tool, "poll", "--once", "--json"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120
        )
    assert polled.returncode == 0, polled.stderr
    assert json.loads(polled.stdout)["fetched"] == 1
