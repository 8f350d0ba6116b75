"""The poller's cycle on the embedded backends, with Meta mocked by `responses`: who fetches what, and the counts.

The subprocess tests in tests/integration/test_poll.py cover signals, Redis and several processes against
the emulator; these pin the claim logic itself.
"""

from __future__ import annotations

import math
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import responses

from motion_meta_cli.app import AppHandler
from motion_meta_cli.config import Settings
from motion_meta_cli.errors import BackendUnavailableError
from motion_meta_cli.poller import Poller
from motion_meta_cli.service import CLAIM_BATCH, LEASE_PREFIX, CycleReport, ResultBacklog

ME = "https://graph.test/v25.0/me"
SLOT = 4242
CUSTOMERS = [f"c{n:03d}" for n in range(3 * CLAIM_BATCH + 5)]  # several batches and a partial one


def _open(home: Path) -> AppHandler:
    return AppHandler(Settings(motion_meta_home=home, meta_graph_url="https://graph.test", _env_file=None))


@pytest.fixture
def home(tmp_path: Path) -> Path:
    with _open(tmp_path) as app:
        for name in CUSTOMERS:
            app.store.add_customer(name)
            app.secrets.put_secret(name, f"EAA{name}token")
    return tmp_path


@pytest.fixture
def app(home: Path) -> Iterator[AppHandler]:
    with _open(home) as opened:
        yield opened


def _tokens_sent() -> list[str]:
    return [
        call.request.headers["Authorization"].removeprefix("Bearer EAA").removesuffix("token")
        for call in responses.calls
    ]


@responses.activate
def test_a_cycle_fetches_what_it_wins_skips_the_rejected_and_leaves_the_leased(app: AppHandler) -> None:
    responses.get(ME, json={"id": "1", "name": "User"})
    elsewhere = CUSTOMERS[3:6]
    for name in elsewhere:  # another instance holds these leases for this slot
        assert app.cache.add_many([f"{LEASE_PREFIX}{SLOT}:{name}"], "other-instance", 60) == [True]
    app.credentials.token(CUSTOMERS[0])
    assert app.credentials.mark_rejected(CUSTOMERS[0])

    report = Poller(app, interval_s=30).run_cycle(SLOT, 1, threading.Event())

    expected = sorted(set(CUSTOMERS) - set(elsewhere) - {CUSTOMERS[0]})
    assert sorted(report.fetched) == expected
    assert sorted(_tokens_sent()) == expected, "one request per fetched customer, none for the others"
    assert report.taken_elsewhere == len(elsewhere)
    assert report.skipped_rejected == [CUSTOMERS[0]]
    assert report.failed == {} and report.not_started == 0
    assert all(app.store.latest(name) is not None for name in expected)
    assert app.store.latest(elsewhere[0]) is None
    assert not [key for key in app.moderator.state.read(None)[1] if key.startswith("slots:")], "all slots back"


@responses.activate
def test_two_instances_on_one_home_split_a_slot_without_duplicates_or_misses(home: Path) -> None:
    responses.get(ME, json={"id": "1", "name": "User"})
    with _open(home) as first, _open(home) as second:
        pollers = [Poller(first, interval_s=30), Poller(second, interval_s=30)]
        reports = [None, None]
        start = threading.Barrier(2)

        def run(index: int) -> None:
            start.wait()
            reports[index] = pollers[index].run_cycle(SLOT, 1, threading.Event())  # type: ignore[call-overload]

        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    fetched = [name for report in reports for name in report.fetched]  # type: ignore[union-attr]
    assert sorted(fetched) == CUSTOMERS
    assert sorted(_tokens_sent()) == CUSTOMERS
    # Both instances try every customer: for each, exactly one of them finds the lease taken.
    assert sum(report.taken_elsewhere for report in reports) == len(CUSTOMERS)  # type: ignore[union-attr]


@responses.activate
def test_the_next_cycle_claims_first_what_this_instance_took_and_reads_no_secret_for_it(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    responses.get(ME, json={"id": "1", "name": "User"})
    one_worker = Settings(  # requests go out in claim order
        motion_meta_home=home, meta_graph_url="https://graph.test", motion_meta_concurrency=1, _env_file=None
    )
    with AppHandler(one_worker) as app:
        elsewhere = CUSTOMERS[::2]  # another instance holds half of the first slot's leases
        for name in elsewhere:
            assert app.cache.add_many([f"{LEASE_PREFIX}{SLOT}:{name}"], "other-instance", 60) == [True]
        poller = Poller(app, interval_s=30)
        first = poller.run_cycle(SLOT, 1, threading.Event())
        mine = sorted(set(CUSTOMERS) - set(elsewhere))
        assert sorted(first.fetched) == mine

        read: list[str] = []
        get_secrets, get_secret = app.secrets.get_secrets, app.secrets.get_secret
        monkeypatch.setattr(app.secrets, "get_secrets", lambda names: read.extend(names) or get_secrets(names))
        monkeypatch.setattr(app.secrets, "get_secret", lambda name: read.append(name) or get_secret(name))
        responses.calls.reset()
        second = poller.run_cycle(SLOT + 2, 2, threading.Event())  # past any next-slot lease the first took

    assert sorted(second.fetched) == CUSTOMERS, "alone in this slot, it takes the rest after its own"
    assert sorted(_tokens_sent()[: len(mine)]) == mine, "its own customers first"
    assert set(read) == set(elsewhere), "secrets read for the customers new to it only"


@responses.activate
def test_after_a_late_cycle_the_customers_it_took_stay_its_own(home: Path) -> None:
    responses.get(ME, json={"id": "1", "name": "User"})
    one_worker = Settings(  # requests go out in claim order
        motion_meta_home=home, meta_graph_url="https://graph.test", motion_meta_concurrency=1, _env_file=None
    )
    with AppHandler(one_worker) as app:
        elsewhere = CUSTOMERS[::2]
        for slot in (SLOT, SLOT + 1):  # another instance takes these in both slots
            for name in elsewhere:
                assert app.cache.add_many([f"{LEASE_PREFIX}{slot}:{name}"], "other-instance", 60) == [True]
        wall = FakeWall(SLOT * 30 + 10)  # a third into its slot: late, so it leases the next slot too
        poller = Poller(app, interval_s=30, wall=wall)
        first = poller.run_cycle(SLOT, 1, threading.Event())
        mine = sorted(set(CUSTOMERS) - set(elsewhere))
        assert sorted(first.fetched) == mine
        wall.now = (SLOT + 1) * 30
        second = poller.run_cycle(SLOT + 1, 2, threading.Event())
        assert second.fetched == [], "its own were leased for this slot by the late cycle, the rest elsewhere"
        wall.now = (SLOT + 2) * 30
        responses.calls.reset()
        third = poller.run_cycle(SLOT + 2, 3, threading.Event())

    assert sorted(third.fetched) == CUSTOMERS
    assert sorted(_tokens_sent()[: len(mine)]) == mine, "the customers of the late cycle come first again"


@responses.activate
def test_a_stop_mid_cycle_sends_nothing_more_and_counts_the_rest_as_not_started(app: AppHandler) -> None:
    stop = threading.Event()
    answered: list[str] = []

    def answer(request: object) -> tuple[int, dict[str, str], str]:
        answered.append("x")
        if len(answered) == 5:
            stop.set()
        return 200, {}, '{"id": "1", "name": "User"}'

    responses.add_callback(responses.GET, ME, callback=answer)
    report = Poller(app, interval_s=30).run_cycle(SLOT, 1, stop)

    assert len(report.fetched) == len(responses.calls), "every request sent was finished and counted"
    assert len(report.fetched) < len(CUSTOMERS)
    assert len(report.fetched) + report.not_started == len(CUSTOMERS)
    assert report.failed == {}
    assert all(app.store.latest(name) is not None for name in report.fetched), "fetched means stored"
    assert not [key for key in app.moderator.state.read(None)[1] if key.startswith("slots:")], "all slots back"


@responses.activate
def test_a_stop_while_claiming_a_batch_claims_no_more_and_gives_back_what_it_won(
    app: AppHandler, monkeypatch: pytest.MonkeyPatch
) -> None:
    responses.get(ME, json={"id": "1", "name": "User"})
    elsewhere = [name for n, name in enumerate(CUSTOMERS) if n % 8]  # 7 of 53 left to win
    for name in elsewhere:
        assert app.cache.add_many([f"{LEASE_PREFIX}{SLOT}:{name}"], "other-instance", 60) == [True]
    stop, claims = threading.Event(), []
    add_many = app.cache.add_many

    def claiming(keys: list[str], value: str, ttl_s: float) -> list[bool]:
        claims.append(len(keys))
        won = add_many(keys, value, ttl_s)
        if len(claims) == 2:
            stop.set()  # SIGTERM while the first batch is still being claimed
        return won

    monkeypatch.setattr(app.cache, "add_many", claiming)
    report = Poller(app, interval_s=30, wall=FakeWall(SLOT * 30)).run_cycle(SLOT, 1, stop)

    assert len(claims) == 2, "no claim after the stop"
    assert report.fetched == [] and len(responses.calls) == 0, "nothing sent"
    assert claims == [CLAIM_BATCH, CLAIM_BATCH], "its 7 customers could not fill a batch: it went on claiming"
    assert report.not_started == len(CUSTOMERS) - report.taken_elsewhere, "the won ones and the rest unsent"
    ours = [name for name in CUSTOMERS if name not in elsewhere]
    assert app.cache.get_many([f"{LEASE_PREFIX}{SLOT}:{name}" for name in ours]) == [None] * len(ours), "given back"


@responses.activate
def test_a_batch_whose_credentials_cannot_be_prepared_is_still_fetched(app: AppHandler) -> None:
    responses.get(ME, json={"id": "1", "name": "User"})
    prepare, calls = app.credentials.prepare, []

    def flaky(customers: list[str]) -> None:
        calls.append(len(customers))
        if len(calls) == 2:
            raise BackendUnavailableError("the SQLite file cache.db is locked by another process (waited 10 s)")
        prepare(customers)

    app.credentials.prepare = flaky  # type: ignore[method-assign]
    report = Poller(app, interval_s=30).run_cycle(SLOT, 1, threading.Event())
    assert len(calls) > 2
    assert sorted(report.fetched) == CUSTOMERS, "preparing is a speed-up: each request read its own token"
    assert report.failed == {}


@responses.activate
def test_credentials_are_prepared_in_full_batches_when_other_instances_took_most_leases(app: AppHandler) -> None:
    responses.get(ME, json={"id": "1", "name": "User"})
    for name in CUSTOMERS[::2] + CUSTOMERS[1::6]:  # two thirds taken, spread over every chunk
        assert app.cache.add_many([f"{LEASE_PREFIX}{SLOT}:{name}"], "other-instance", 60) == [True]
    prepare, batches = app.credentials.prepare, []

    def counting(customers: list[str]) -> None:
        batches.append(len(customers))
        prepare(customers)

    app.credentials.prepare = counting  # type: ignore[method-assign]
    report = Poller(app, interval_s=30).run_cycle(SLOT, 1, threading.Event())

    assert sum(batches) == len(report.fetched) == len(set(CUSTOMERS) - set(CUSTOMERS[::2] + CUSTOMERS[1::6]))
    assert all(size >= CLAIM_BATCH for size in batches[:-1]), f"every batch but the last is full: {batches}"
    assert len(batches) <= -(-len(report.fetched) // CLAIM_BATCH)


@responses.activate
def test_a_store_that_fails_at_the_end_of_a_cycle_leaves_no_slot_taken_and_keeps_the_results(
    app: AppHandler,
) -> None:
    responses.get(ME, json={"id": "1", "name": "User"})

    def broken(results: object) -> None:
        raise BackendUnavailableError("the SQLite file store.db could not be read or written (disk I/O error)")

    app.store.save_results = broken  # type: ignore[method-assign]
    poller = Poller(app, interval_s=30)
    report = poller.run_cycle(SLOT, 1, threading.Event())
    assert sorted(report.fetched) == CUSTOMERS
    assert report.unsaved == len(CUSTOMERS) == len(poller.backlog) and report.lost == 0, "kept for the next try"
    assert not [key for key in app.moderator.state.read(None)[1] if key.startswith("slots:")], "all slots back"


class FakeWall:
    """Wall-clock time that only moves when a cycle works or the poller waits."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class WaitingStop(threading.Event):
    """A stop event whose waits advance the fake wall instead of sleeping."""

    def __init__(self, wall: FakeWall) -> None:
        super().__init__()
        self.wall = wall
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(round(timeout or 0, 6))
        self.wall.now += timeout or 0
        return self.is_set()


def _scheduled(
    app: AppHandler, start: float, durations: list[float]
) -> tuple[list[tuple[int, float, bool]], list[float]]:
    """Run len(durations) cycles of a 10 s poller whose cycles take `durations`: (slot, start, overrun) each."""
    wall = FakeWall(start)
    stop = WaitingStop(wall)
    poller = Poller(app, interval_s=10, wall=wall)
    took = iter(durations)

    def cycle(slot: int, number: int, _stop: threading.Event) -> CycleReport:
        report = CycleReport(cycle=number, slot=slot, started_at=wall.now)
        wall.now += next(took)
        report.duration_s = wall.now - report.started_at
        return report

    poller.run_cycle = cycle  # type: ignore[method-assign]
    reports = list(poller.run(stop=stop, cycles=len(durations)))
    return [(r.slot, r.started_at, r.overrun) for r in reports], stop.waits


def test_cycles_start_on_their_slots_without_drift(app: AppHandler) -> None:
    cycles, waits = _scheduled(app, 1003.0, [2.0, 2.5, 9.0])
    assert cycles == [(100, 1003.0, False), (101, 1010.0, False), (102, 1020.0, False)]
    assert waits == [5.0, 7.5], "each wait ends at the next slot's start, however long the cycle took"


def test_a_cycle_longer_than_the_interval_is_an_overrun_and_the_next_starts_at_once(app: AppHandler) -> None:
    cycles, waits = _scheduled(app, 1000.0, [14.0, 3.0, 1.0])
    assert cycles == [(100, 1000.0, True), (101, 1014.0, False), (102, 1020.0, False)]
    assert waits == [3.0], "no wait after the overrun: the next cycle started at once, for the slot it is in"


def test_a_first_cycle_started_late_in_its_slot_is_not_an_overrun(app: AppHandler) -> None:
    cycles, waits = _scheduled(app, 1009.0, [2.0, 1.0])
    assert cycles == [(100, 1009.0, False), (101, 1011.0, False)]
    assert waits == []


@responses.activate
def test_a_late_cycle_also_leases_the_next_slot_so_nobody_fetches_twice_within_an_interval(home: Path) -> None:
    responses.get(ME, json={"id": "1", "name": "User"})
    wall = FakeWall(SLOT * 10 + 6.0)  # 6 s into a 10 s slot
    with _open(home) as late, _open(home) as punctual:
        first = Poller(late, interval_s=10, wall=wall).run_cycle(SLOT, 1, threading.Event())
        assert sorted(first.fetched) == CUSTOMERS
        wall.now = (SLOT + 1) * 10.0  # the next slot begins; another instance starts on time
        second = Poller(punctual, interval_s=10, wall=wall).run_cycle(SLOT + 1, 1, threading.Event())
        assert second.fetched == [] and second.taken_elsewhere == len(CUSTOMERS), "fetched 4 s ago: not again"
        wall.now = (SLOT + 2) * 10.0
        third = Poller(punctual, interval_s=10, wall=wall).run_cycle(SLOT + 2, 2, threading.Event())
        assert sorted(third.fetched) == CUSTOMERS
    assert len(responses.calls) == 2 * len(CUSTOMERS)


@responses.activate
def test_a_failed_customer_s_lease_goes_back_so_a_retry_in_the_same_slot_fetches_it(app: AppHandler) -> None:
    responses.get(ME, json={"id": "1", "name": "User"})
    app.store.add_customer("no_token")
    first = Poller(app, interval_s=30).run_cycle(SLOT, 1, threading.Event())
    assert list(first.failed) == ["no_token"] and not first.complete
    app.secrets.put_secret("no_token", "EAAnowithtoken")
    retry = Poller(app, interval_s=30).run_cycle(SLOT, 1, threading.Event())
    assert retry.fetched == ["no_token"], "its lease went back with the failure"
    assert retry.taken_elsewhere == len(CUSTOMERS), "the others' leases hold: fetched already this slot"
    assert retry.complete


class FlakyStore:
    """Wraps a store whose `save_results` fails while `down` is set, as a store outage would."""

    def __init__(self, store: object) -> None:
        self._store = store
        self.down = False

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    def save_results(self, results: list[object]) -> None:
        from motion_meta_cli.errors import BackendUnavailableError

        if self.down:
            raise BackendUnavailableError("the store does not answer (test)")
        self._store.save_results(results)  # type: ignore[attr-defined]


@responses.activate
def test_a_store_outage_keeps_results_in_memory_until_it_answers(home: Path) -> None:
    responses.get(ME, json={"id": "1", "name": "User"})
    with _open(home) as app:
        flaky = FlakyStore(app.store)
        app.__dict__["store"] = flaky
        app.service._store = flaky  # type: ignore[assignment]
        wall = FakeWall(SLOT * 30.0)
        poller = Poller(app, interval_s=30, wall=wall)
        clock = FakeWall(0.0)
        poller.backlog = ResultBacklog(flaky, clock=clock)  # type: ignore[arg-type]
        flaky.down = True
        during = poller.run_cycle(SLOT, 1, threading.Event())
        assert sorted(during.fetched) == CUSTOMERS and during.unsaved == len(CUSTOMERS) and during.lost == 0
        assert app.store.latest(CUSTOMERS[0]) is None
        assert poller.backlog.flush() is False, "within its backoff the store is not tried again"
        flaky.down = False
        clock.now += ResultBacklog.RETRY_S[0]
        wall.now = (SLOT + 1) * 30.0
        after = poller.run_cycle(SLOT + 1, 2, threading.Event())
        assert after.unsaved == 0 and after.lost == 0, after
        assert sorted(after.fetched) == CUSTOMERS
    with _open(home) as reopened:
        counts = {name: len(reopened.store.history(name)) for name in CUSTOMERS}
        assert set(counts.values()) == {2}, counts


@responses.activate
def test_cache_db_stays_bounded_over_many_cycles(tmp_path: Path) -> None:
    from motion_meta_cli.storage.sqlite_cache import SQLiteCache

    responses.get(ME, json={"id": "1", "name": "User"})
    names = [f"g{n:03d}" for n in range(100)]
    with _open(tmp_path) as app:
        for name in names:
            app.store.add_customer(name)
            app.secrets.put_secret(name, f"EAA{name}token")
        wall = FakeWall(1_000_000.0)
        app.__dict__["cache"] = SQLiteCache(tmp_path / "cache.db", clock=wall)  # leases expire on the poll's clock
        poller = Poller(app, interval_s=10, wall=wall)
        for cycle in range(50):
            report = poller.run_cycle(math.floor(wall.now / 10), cycle + 1, threading.Event())
            assert len(report.fetched) == 100
            wall.now += 10
        app.cache.close()
    conn = sqlite3.connect(tmp_path / "cache.db")
    try:
        (rows,) = conn.execute("SELECT COUNT(*) FROM cache").fetchone()
    finally:
        conn.close()
    # 100 markers, and the leases of the last few slots (each lives three intervals); 50 slots' worth is 5,100.
    assert rows <= 100 + 4 * 100, rows


def test_the_live_view_counts_down_shows_what_waits_and_the_last_cycles(tmp_path: Path) -> None:
    import time as real_time

    from rich.console import Console

    from motion_meta_cli.cli.render import poll_panel
    from motion_meta_cli.service import CycleReport

    def text(table: object) -> str:
        console = Console(width=200, record=True)
        console.print(table)
        return console.export_text()

    with _open(tmp_path) as app:
        poller = Poller(app, interval_s=5)
        done = CycleReport(cycle=1, slot=7, fetched=["a", "b"], failed={"c": "network"}, duration_s=0.5)
        poller.recent.append(done)
        poller.next_start = real_time.time() + 3
        app.moderator.stats.waiting_on("cooldown", "app", 1)
        view = text(poll_panel(poller, app))
        assert "motion-meta poll every 5 s" in view
        assert "next cycle in" in view
        assert "cycle 1" in view and "2 fetched, 1 failed" in view
        assert "1 on cooldown app" in view
        app.moderator.stats.waiting_on("cooldown", "app", -1)
        once = text(poll_panel(poller, app, once=True))
        assert "motion-meta poll --once" in once and "every" not in once
        assert "waiting on" in once and "nothing" in once


def test_the_backlog_stores_full_batches_while_results_come_and_the_rest_when_flushed() -> None:
    from datetime import UTC, datetime

    from motion_meta_cli.models import FetchResult

    class Batches:
        def __init__(self) -> None:
            self.sizes: list[int] = []

        def save_results(self, results: list[object]) -> None:
            self.sizes.append(len(results))

    store = Batches()
    backlog = ResultBacklog(store, size=CLAIM_BATCH)  # type: ignore[arg-type]
    for n in range(2 * CLAIM_BATCH + 5):
        backlog.add(FetchResult(f"c{n}", datetime.now(UTC)))
    assert store.sizes == [CLAIM_BATCH, CLAIM_BATCH], "one call per full batch, none for a short one"
    assert len(backlog) == 5
    assert backlog.flush() is True
    assert store.sizes == [CLAIM_BATCH, CLAIM_BATCH, 5]
