"""Moderation that survives its cache: if the shared state is unreachable, moderate in-process (and say
so once), then share again as soon as it answers."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from motion_meta_cli.errors import BackendUnavailableError
from motion_meta_cli.moderation.state import AdmitRule, Hold, LocalState, ModerationState

log = logging.getLogger(__name__)

RETRY_SHARED_S = 2.0
"""While the cache is down, how often to try it again."""


class FailSafeState:
    """`ModerationState` over a shared one, falling back to a `LocalState` while it is unreachable."""

    def __init__(
        self,
        shared: ModerationState,
        *,
        fallback: ModerationState | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.shared = shared
        self.fallback = fallback or LocalState(time.time)
        self._clock = clock
        self._down_until: float | None = None
        self._lock = threading.Lock()

    @property
    def degraded(self) -> bool:
        """True while moderating in-process only."""
        return self._down_until is not None

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            down_until = self._down_until
        if down_until is not None and self._clock() < down_until:
            return getattr(self.fallback, name)(*args, **kwargs)
        try:
            result = getattr(self.shared, name)(*args, **kwargs)
        except BackendUnavailableError as exc:
            with self._lock:
                first = self._down_until is None
                self._down_until = self._clock() + RETRY_SHARED_S
            if first:
                log.warning("%s; moderating in this process only until it answers again", exc)
            return getattr(self.fallback, name)(*args, **kwargs)
        if down_until is not None:
            with self._lock:
                self._down_until = None
            log.warning("the cache answers again; moderation is shared again")
        return result

    def now_ms(self) -> int:
        """See `ModerationState`."""
        return int(self._call("now_ms"))

    def hold(self, scopes: Sequence[str]) -> Hold:
        """See `ModerationState`."""
        result: Hold = self._call("hold", scopes)
        return result

    def admit(self, scope: str, rule: AdmitRule, *, record: bool = True, since: int | None = None) -> tuple[int, int]:
        """See `ModerationState`."""
        result: tuple[int, int] = self._call("admit", scope, rule, record=record, since=since)
        return result

    def observe_success(self, scope: str, sent_ms: int, window_ms: int, margin_ms: int, *, count: bool = True) -> int:
        """See `ModerationState`."""
        return int(self._call("observe_success", scope, sent_ms, window_ms, margin_ms, count=count))

    def raise_capacity(self, scope: str, capacity: int, ttl_ms: int, *, precise: bool) -> int:
        """See `ModerationState`."""
        return int(self._call("raise_capacity", scope, capacity, ttl_ms, precise=precise))

    def strike(self, scope: str, sent_ms: int) -> tuple[int, bool]:
        """See `ModerationState`."""
        result: tuple[int, bool] = self._call("strike", scope, sent_ms)
        return result

    def pause(self, scope: str, duration_ms: int, *, recovering: bool, limited_ms: int, relearn_window_ms: int) -> bool:
        """See `ModerationState`."""
        return bool(
            self._call(
                "pause",
                scope,
                duration_ms,
                recovering=recovering,
                limited_ms=limited_ms,
                relearn_window_ms=relearn_window_ms,
            )
        )

    def try_probe(self, scope: str, ttl_ms: int) -> str | None:
        """See `ModerationState`."""
        result: str | None = self._call("try_probe", scope, ttl_ms)
        return result

    def end_probe(self, scope: str, holder: str) -> None:
        """See `ModerationState`."""
        self._call("end_probe", scope, holder)

    def acquire_slots(
        self, names: Sequence[str], limit: int, lease_ms: int, *, releasing: Sequence[tuple[str, str]] = ()
    ) -> list[str | None]:
        """See `ModerationState`."""
        result: list[str | None] = self._call("acquire_slots", names, limit, lease_ms, releasing=releasing)
        return result

    def active_cooldowns(self) -> dict[str, float]:
        """See `ModerationState`."""
        result: dict[str, float] = self._call("active_cooldowns")
        return result
