"""Presence: each instance announces itself in the `instances` record (its heartbeat), so that every one
knows how many share the budgets, which of them are away, and what they sent alone (see `rules.share`).

    presence = Presence(state)
    share = presence.share(now, handling)   # the first call announces this instance and starts its heartbeat
    ...
    presence.leave()                        # stopped: it no longer counts, nor holds a share

The heartbeat is a daemon thread that writes every `rules.heartbeat_s`. While the shared state is away it
writes nothing (the others must see it stop), and the first call after it answers again announces what
this instance sent alone before anything is admitted against the shared logs.
"""

from __future__ import annotations

import logging
import threading

from motion_meta_cli.config import ThrottleHandling
from motion_meta_cli.errors import MotionMetaError
from motion_meta_cli.moderation import rules
from motion_meta_cli.moderation.state import ModerationState, Record, holder_id

log = logging.getLogger(__name__)


class Presence:
    """This instance's entry in the `instances` record, and the record as last read from the shared state."""

    def __init__(self, state: ModerationState) -> None:
        self.state = state
        self.me = holder_id()
        self.record: Record | None = None
        self._handling = ThrottleHandling()
        self._away = False
        self._lock = threading.Lock()
        self._rejoining = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def partitioned(self) -> bool:
        """True while the shared state cannot be reached (see `failsafe`)."""
        return bool(getattr(self.state, "degraded", False))

    def share(self, now: int, handling: ThrottleHandling) -> rules.Share:
        """What of each budget this instance may fill now (`now` on the state's clock)."""
        with self._lock:
            first = self._thread is None
            if first:
                self._handling, self._stop = handling, threading.Event()
                self._thread = threading.Thread(
                    target=self._run, args=(self._stop,), name="motion-meta-heartbeat", daemon=True
                )
                self._thread.start()
        partitioned = self.partitioned
        if partitioned:
            self._away = True
        elif first or self._away:
            with self._rejoining:  # one thread announces; the others wait for it, then need not
                if first or self._away:
                    self.beat()  # announce this instance (or, back from a partition, what it sent alone) first
        return rules.share(self.record, now, self.me, partitioned=partitioned, handling=handling)

    def beat(self) -> None:
        """Write this instance's entry; nothing while partitioned (the others must see the heartbeat stop)."""
        if self.partitioned:
            self._away = True
            return
        window_ms = int(self._handling.counted_window_s * 1000)
        alone = self.state.alone(window_ms) if hasattr(self.state, "alone") else {}
        stored = self.state.update(
            rules.INSTANCES, lambda record, now: rules.beat(record, now, self.me, window_ms, alone)
        )
        if not self.partitioned:  # the write reached the shared state
            self.record, self._away = stored, False

    def leave(self) -> None:
        """Stop the heartbeat and take this instance's entry out (it starts again with the next `share`)."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        if thread.is_alive() and thread is not threading.current_thread():
            thread.join(timeout=5)
        if not self.partitioned:
            try:
                self.state.update(rules.INSTANCES, lambda record, now: rules.leave(record, now, self.me))
            except MotionMetaError as exc:  # the entry expires a window after its last heartbeat anyway
                log.debug("could not take this instance out of the instances record: %s", exc)

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(rules.heartbeat_s(self._handling)):
            try:
                self.beat()
            except MotionMetaError as exc:  # tried again next period; meanwhile the others may see it away
                log.debug("heartbeat failed: %s", exc)
