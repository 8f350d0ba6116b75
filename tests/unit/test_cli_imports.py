"""Loading the CLI stays light: no cloud SDKs, no Redis client, no emulator, no HTTP stack for --help."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("boto3", "botocore", "redis", "motion_meta_cli.emulator", "requests", "pydantic_settings")

_PROBE = """
import json, sys
sys.argv = ["motion-meta", {args}]
from motion_meta_cli.cli.main import run
try:
    run()
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


@pytest.mark.parametrize("args", ['"--help"', '"fetch", "--help"', '"--version"'])
def test_help_and_version_import_nothing_heavy(args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE.format(args=args)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    loaded = set(json.loads(done.stderr.strip().splitlines()[-1]))
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_the_core_library_never_imports_typer_or_rich() -> None:
    probe = (
        "import json, sys; import motion_meta_cli.app, motion_meta_cli.service, motion_meta_cli.emulator; "
        "print(json.dumps(sorted(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    loaded = set(json.loads(done.stdout))
    assert "typer" not in loaded
    assert "rich" not in loaded
    assert not loaded & {"boto3", "redis"}


def test_sdk_loggers_are_kept_off_debug() -> None:
    import logging

    from motion_meta_cli.logs import SDK_LOGGERS, quiet_sdk_loggers

    logging.getLogger("botocore").setLevel(logging.DEBUG)
    try:
        quiet_sdk_loggers()
        assert all(logging.getLogger(name).getEffectiveLevel() >= logging.INFO for name in SDK_LOGGERS)
    finally:
        logging.getLogger("botocore").setLevel(logging.NOTSET)
