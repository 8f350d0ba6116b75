"""Where errors reach the user: one line on stderr and the documented exit code."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer

from motion_meta_cli.errors import ExitCode, MotionMetaError
from motion_meta_cli.logs import TEXT_FORMAT, json_formatter, quiet_sdk_loggers

DEBUG_VARIABLE = "MOTION_META_DEBUG"


def debugging() -> bool:
    """True when MOTION_META_DEBUG asks for tracebacks instead of one-line errors."""
    return os.environ.get(DEBUG_VARIABLE, "").lower() in ("1", "true", "yes")


@contextmanager
def reported_errors() -> Iterator[None]:
    """Turn motion-meta errors (and surprises) into `error: ...` on stderr and an exit code."""
    try:
        yield
    except MotionMetaError as exc:
        if debugging():
            raise
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:
        if debugging():
            raise
        typer.echo(f"error: unexpected {type(exc).__name__}; run again with {DEBUG_VARIABLE}=1 for details", err=True)
        raise typer.Exit(ExitCode.INTERNAL) from None


def configure_logging(level: str, log_format: str = "text") -> None:
    """Log to stderr at `level` (MOTION_META_LOG_LEVEL), never to stdout where JSON goes; as text or, with
    `log_format` "json" (MOTION_META_LOG_FORMAT), one JSON object per line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(json_formatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger("motion_meta_cli")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    quiet_sdk_loggers()


@contextmanager
def stopped_by_signals(stop: threading.Event) -> Iterator[None]:
    """First SIGINT/SIGTERM: set `stop` (start nothing new, let requests in flight finish); second: exit now
    (130 / 143). The handlers before are put back afterwards."""

    def handle(signum: int, _frame: Any) -> None:
        if stop.is_set():
            os._exit(128 + signum)
        stop.set()
        print("stopping: finishing requests in flight (signal again to exit at once)", file=sys.stderr, flush=True)

    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return
    saved = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, previous in saved.items():
            signal.signal(sig, previous)
