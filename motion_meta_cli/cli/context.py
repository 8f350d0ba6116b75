"""Building the application for a command: settings from the environment, logging, the AppHandler."""

from __future__ import annotations

from motion_meta_cli.app import AppHandler
from motion_meta_cli.cli.errors import configure_logging
from motion_meta_cli.config import load_settings


def open_app() -> AppHandler:
    """The application as the environment and `.env` configure it; use it in a `with` block."""
    settings = load_settings()
    configure_logging(settings.motion_meta_log_level, settings.motion_meta_log_format)
    return AppHandler.from_settings(settings)
