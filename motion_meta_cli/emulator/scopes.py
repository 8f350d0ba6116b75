"""The throttling scopes of one emulated app, and which of them refuses a call.

Four scopes, checked in this order; the first one blocked answers the call:

    app                (#4)     every call with a token; X-App-Usage
    page               (#32)    every call with a token, counted separately; no usage header
    token              (#17)    each user token on its own; no usage header (Meta keeps it private)
    business_use_case  (#80004) the business's calls; X-Business-Use-Case-Usage with the minutes to wait

Every call is recorded in every scope it touches before any is checked, so a call refused by the app limit
still counts against its token and its business, the way Meta counts calls made while throttled.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from motion_meta_cli.emulator.config import EmulatorConfig
from motion_meta_cli.emulator.limiter import KeyedWindowLimiter, LimiterVerdict, RollingWindowLimiter

_ROUNDING_SLACK_MIN = 1e-9
"""Float noise a block's remaining minutes may carry before rounding up (2.0000000001 is still 2)."""


class Scope(StrEnum):
    """A bucket Meta counts calls in."""

    APP = "app"
    PAGE = "page"
    TOKEN = "token"
    BUSINESS_USE_CASE = "business_use_case"


CHECK_ORDER = (Scope.APP, Scope.PAGE, Scope.TOKEN, Scope.BUSINESS_USE_CASE)
"""The order scopes are checked in; a call blocked by several is answered by the first."""


@dataclass(frozen=True, slots=True)
class Throttle:
    """The error Meta answers when a scope is blocked."""

    code: int
    message: str
    subcode: int | None = None
    is_transient: bool = False


THROTTLES = {
    Scope.APP: Throttle(4, "(#4) Application request limit reached", is_transient=True),
    Scope.PAGE: Throttle(32, "(#32) Page request limit reached"),
    Scope.TOKEN: Throttle(17, "(#17) User request limit reached", is_transient=True),
    Scope.BUSINESS_USE_CASE: Throttle(
        80004,
        "(#80004) There have been too many calls to this ad-account. Wait a bit and try again. For more info, "
        "please refer to https://developers.facebook.com/docs/graph-api/overview/rate-limiting.",
        subcode=2446079,
    ),
}
"""What each scope answers when blocked (always HTTP 400)."""


@dataclass(frozen=True, slots=True)
class CallVerdict:
    """What every scope decided about one call; None for a scope that is off or that the call did not touch."""

    app: LimiterVerdict
    page: LimiterVerdict | None = None
    token: LimiterVerdict | None = None
    business_use_case: LimiterVerdict | None = None

    def of(self, scope: Scope) -> LimiterVerdict | None:
        """The verdict of one scope."""
        return self._in_order()[CHECK_ORDER.index(scope)]

    @property
    def refused_by(self) -> Scope | None:
        """The first scope in `CHECK_ORDER` that refused the call, or None when every scope allowed it."""
        for scope, verdict in zip(CHECK_ORDER, self._in_order(), strict=True):
            if verdict is not None and not verdict.allowed:
                return scope
        return None

    @property
    def blocked_on_arrival(self) -> tuple[Scope, ...]:
        """Every scope of this call that was already blocked when it arrived."""
        return tuple(
            scope
            for scope, verdict in zip(CHECK_ORDER, self._in_order(), strict=True)
            if verdict is not None and verdict.blocked_before
        )

    def _in_order(self) -> tuple[LimiterVerdict | None, ...]:
        return (self.app, self.page, self.token, self.business_use_case)


@dataclass(frozen=True, slots=True)
class BusinessUseCaseUsage:
    """One X-Business-Use-Case-Usage entry's numbers."""

    call_count_pct: int
    regain_access_minutes: int
    """Whole minutes until the block ends, rounded up as Meta reports them; 0 when not blocked."""


class ScopeLimits:
    """The app, page, token and business-use-case counters of one emulated app, on one clock.

    >>> limits = ScopeLimits(EmulatorConfig(app_limit=1, token_limit=5))
    >>> limits.record("EAA...").refused_by, limits.record("EAA...").refused_by
    (None, <Scope.APP: 'app'>)
    """

    def __init__(self, config: EmulatorConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        window_s = config.window_s
        self.app = RollingWindowLimiter(config.app_limit, window_s, clock)
        self.page = RollingWindowLimiter(config.page_limit, window_s, clock) if config.page_limit else None
        self.token = KeyedWindowLimiter(config.token_limit, window_s, clock) if config.token_limit else None
        self.business_use_case = (
            RollingWindowLimiter(config.buc_limit, window_s, clock, min_block_s=config.buc_block_s)
            if config.buc_limit
            else None
        )

    def record(self, user_token: str | None) -> CallVerdict:
        """Count one call that carried a token; `user_token` is that token when it belongs to a user, else None.

        Calls whose token names no user count against the app and page limits only.
        """
        page, token, business = self.page, self.token, self.business_use_case
        return CallVerdict(
            app=self.app.hit(),
            page=page.hit() if page is not None else None,
            token=token.hit(user_token) if token is not None and user_token is not None else None,
            business_use_case=business.hit() if business is not None and user_token is not None else None,
        )

    def business_use_case_usage(self, verdict: LimiterVerdict | None = None) -> BusinessUseCaseUsage:
        """The business use case's numbers after `verdict`, or as they stand now when the call did not count."""
        limiter = self.business_use_case
        if limiter is None:
            raise RuntimeError("the business-use-case limit is off")
        if verdict is None:
            pct, blocked_for_s = limiter.usage_pct(), limiter.blocked_for_s()
        else:
            pct, blocked_for_s = verdict.usage_pct, verdict.blocked_for_s
        return BusinessUseCaseUsage(pct, self.minutes_rounded_up(blocked_for_s))

    def minutes_rounded_up(self, seconds: float) -> int:
        """`seconds` of real time in whole emulated minutes, rounded up (any block shows at least 1); 0 for 0."""
        if seconds <= 0:
            return 0
        return max(1, math.ceil(seconds / self.config.minute_s - _ROUNDING_SLACK_MIN))

    def reset(self) -> None:
        """Forget every call in every scope."""
        for limiter in (self.app, self.page, self.token, self.business_use_case):
            if limiter is not None:
                limiter.reset()
