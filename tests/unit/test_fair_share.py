"""A partitioned instance keeps to its share: heartbeats count the instances, what was known of the shared
state is kept (cooldowns as they were, budgets divided), and after rejoining the share holds for a window."""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest

from motion_meta_cli.errors import BackendUnavailableError
from motion_meta_cli.moderation.failsafe import HEARTBEAT_S, FailSafeState
from motion_meta_cli.moderation.rules import Limit, Scope
from motion_meta_cli.moderation.state import Admission, Change, LocalState, Record
from motion_meta_cli.storage.breaker import RETRY_S

WINDOW_MS = 60_000


class Link:
    """One instance's way to the shared state, which can be cut."""

    def __init__(self, shared: LocalState) -> None:
        self.shared = shared
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise BackendUnavailableError("cannot reach Redis (test)")

    def read(self, keys: Sequence[str] | None) -> tuple[int, dict[str, Record]]:
        self._check()
        return self.shared.read(keys)

    def update(self, key: str, change: Change) -> Record | None:
        self._check()
        return self.shared.update(key, change)

    def admit(self, limits: Sequence[Limit], window_ms: int, margin_ms: int) -> Admission:
        self._check()
        return self.shared.admit(limits, window_ms, margin_ms)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def shared() -> LocalState:
    return LocalState(time.time)


def _instance(shared: LocalState, clock: Clock, name: str) -> tuple[FailSafeState, Link]:
    link = Link(shared)
    return FailSafeState(link, clock=clock, holder=name), link  # type: ignore[arg-type]


def _learned(shared: LocalState, key: str, **fields: object) -> None:
    now = shared.read([])[0]
    record = Scope(budget_until_ms=now + WINDOW_MS * 10, **fields).dump()  # type: ignore[arg-type]
    shared.update(key, lambda _r, _n: record)


def test_heartbeats_count_the_instances_sharing_the_state(shared: LocalState) -> None:
    clock = Clock()
    a, _ = _instance(shared, clock, "a")
    b, _ = _instance(shared, clock, "b")
    c, _ = _instance(shared, clock, "c")
    for instance in (a, b, c):
        instance.admit([Limit("app", 100)], WINDOW_MS, 0)
    clock.now += HEARTBEAT_S
    a.admit([Limit("app", 100)], WINDOW_MS, 0)
    assert (a.instances, c.instances) == (3, 3), "each sees itself and the others beat within the window"


def test_cut_off_it_keeps_the_cooldowns_it_knew_and_a_share_of_each_budget(shared: LocalState) -> None:
    clock = Clock()
    a, link = _instance(shared, clock, "a")
    b, _ = _instance(shared, clock, "b")
    now = shared.read([])[0]
    _learned(shared, "app", budget=100, probe="b:1", probe_until_ms=now + 30_000)
    _learned(shared, "buc:1:ads_management", budget=40, cooldown_until_ms=now + 600_000, strikes=1)
    _learned(shared, "user:acme", cooldown_until_ms=now + 300_000)
    for instance in (a, b, a):
        clock.now += HEARTBEAT_S
        instance.admit([Limit("app", 100)], WINDOW_MS, 0)
    keys = ["app", "buc:1:ads_management", "user:acme"]
    a.read(keys)

    link.down = True
    _, records = a.read(keys)  # the shared state is away: what a knew is its own now
    assert a.degraded
    app, buc, user = (Scope.load(records[key]) for key in keys)
    assert (app.budget, buc.budget) == (50, 20), "half of each budget: two instances beat"
    assert app.probe == "", "a probe held in the shared state is not moved in process"
    assert buc.cooldown_until_ms == now + 600_000 and buc.strikes == 1
    assert user.cooldown_until_ms == now + 300_000


def test_after_rejoining_it_keeps_to_its_share_for_a_window(shared: LocalState) -> None:
    clock = Clock()
    a, link = _instance(shared, clock, "a")
    b, _ = _instance(shared, clock, "b")
    for instance in (a, b, a):
        clock.now += HEARTBEAT_S
        instance.admit([Limit("other", None)], WINDOW_MS, 0)
    assert a.instances == 2
    link.down = True
    a.read(["app"])  # partitioned: its sends go to its own log only
    for _ in range(4):
        assert a.admit([Limit("app", 10)], WINDOW_MS, 0).wait_ms == 0
    link.down = False
    clock.now += RETRY_S + 0.1
    admitted = [a.admit([Limit("app", 10)], WINDOW_MS, 0).wait_ms == 0 for _ in range(4)]
    assert not a.degraded
    assert admitted == [True, False, False, False], "5 of 10 its share: 4 sent while away, 1 more now"
    clock.now += WINDOW_MS / 1000
    assert a.admit([Limit("app", 10)], WINDOW_MS, 0).wait_ms == 0, "a window on, the shared logs decide alone"
