"""A local stand-in for Meta's Graph API `/me`, with Meta's errors, headers and app-wide throttling.

Standard library only, so it imports fast and adds no dependency:

    with GraphEmulator(EmulatorConfig(app_limit=200, window_s=3600.0)) as emulator:
        ...  # point the client at emulator.url and use DEMO_TOKEN
"""

from motion_meta_cli.emulator.limiter import LimiterVerdict, RollingWindowLimiter
from motion_meta_cli.emulator.server import EmulatorConfig, GraphEmulator
from motion_meta_cli.emulator.users import (
    DEMO_TOKEN,
    DEMO_USER_ID,
    DEMO_USER_NAME,
    EXPIRED_DEMO_TOKEN,
    EmulatorUser,
    UserDirectory,
    default_directory,
    default_users,
    derived_user,
    load_users,
)

__all__ = [
    "DEMO_TOKEN",
    "DEMO_USER_ID",
    "DEMO_USER_NAME",
    "EXPIRED_DEMO_TOKEN",
    "EmulatorConfig",
    "EmulatorUser",
    "GraphEmulator",
    "LimiterVerdict",
    "RollingWindowLimiter",
    "UserDirectory",
    "default_directory",
    "default_users",
    "derived_user",
    "load_users",
]
