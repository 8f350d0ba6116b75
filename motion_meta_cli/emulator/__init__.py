"""A local stand-in for Meta's Graph API `/me`, with Meta's errors, headers, throttling scopes and faults.

Standard library only, so it imports fast and adds no dependency:

    with GraphEmulator(EmulatorConfig(app_limit=200, token_limit=20, window_s=3600.0)) as emulator:
        ...  # point the client at emulator.url and use DEMO_TOKEN

Modules: `config` (EmulatorConfig), `limiter` (rolling windows), `scopes` (app, page, token and
business-use-case limits and their check order), `faults` (seeded fault injection), `usage_headers`,
`stats` (`GET /__stats`), `users` (who owns each token) and `server` (HTTP).
"""

from motion_meta_cli.emulator.config import EmulatorConfig
from motion_meta_cli.emulator.faults import Fault, FaultInjector
from motion_meta_cli.emulator.limiter import KeyedWindowLimiter, LimiterVerdict, RollingWindowLimiter
from motion_meta_cli.emulator.scopes import CHECK_ORDER, THROTTLES, CallVerdict, Scope, ScopeLimits
from motion_meta_cli.emulator.server import GraphEmulator
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
    "CHECK_ORDER",
    "DEMO_TOKEN",
    "DEMO_USER_ID",
    "DEMO_USER_NAME",
    "EXPIRED_DEMO_TOKEN",
    "THROTTLES",
    "CallVerdict",
    "EmulatorConfig",
    "EmulatorUser",
    "Fault",
    "FaultInjector",
    "GraphEmulator",
    "KeyedWindowLimiter",
    "LimiterVerdict",
    "RollingWindowLimiter",
    "Scope",
    "ScopeLimits",
    "UserDirectory",
    "default_directory",
    "default_users",
    "derived_user",
    "load_users",
]
