"""RedisCache while its redis-server hangs (SIGSTOP) or refuses connections: each call costs at most about
one timeout, then calls fail fast until one caller finds Redis answering again."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from motion_meta_cli.errors import BackendUnavailableError, ConfigError
from motion_meta_cli.storage.breaker import RETRY_S
from motion_meta_cli.storage.redis_cache import RedisCache
from tests.integration.conftest import RedisServer, free_port

pytestmark = pytest.mark.integration

TIMEOUT_S = 0.5
MARGIN_S = 0.5
FAST_S = 0.05


class FakeClock:
    """The breaker's clock, moved only by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class Call:
    started: float
    duration_s: float
    error: type[BaseException] | None


@contextmanager
def hammering(cache: RedisCache, threads: int = 8) -> Iterator[list[Call]]:
    """`threads` threads calling `cache.get` in a loop until the block ends; yields every call made (once each
    thread has made a first successful one)."""
    calls: list[Call] = []
    guard = threading.Lock()
    stop = threading.Event()
    ready = threading.Barrier(threads + 1)

    def worker() -> None:
        cache.get("k")
        ready.wait()
        while not stop.is_set():
            started = time.monotonic()
            error: type[BaseException] | None = None
            try:
                cache.get("k")
            except BackendUnavailableError as exc:
                error = type(exc)
            with guard:
                calls.append(Call(started, time.monotonic() - started, error))
            stop.wait(0.002)

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in workers:
        thread.start()
    ready.wait(timeout=10)
    try:
        yield calls
    finally:
        stop.set()
        for thread in workers:
            thread.join(timeout=10)


def _wait_for(condition: Callable[[], bool], limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def _stopped(server: RedisServer) -> bool:
    """True once the kernel has stopped the server (state T in /proc), so it answers nothing more."""
    assert server.process is not None
    stat = Path(f"/proc/{server.process.pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] == "T"


def _first_success_after(call: Callable[[], object], limit_s: float) -> float:
    """Seconds until `call` first returns instead of raising BackendUnavailableError, trying every 10 ms."""
    started = time.monotonic()
    while True:
        try:
            call()
            return time.monotonic() - started
        except BackendUnavailableError:
            if time.monotonic() - started > limit_s:
                raise
            time.sleep(0.01)


def test_a_hung_redis_costs_one_timeout_per_call_then_calls_fail_fast(redis_server: RedisServer) -> None:
    cache = RedisCache.from_url(redis_server.url, prefix="outage:", timeout_s=TIMEOUT_S)
    cache.set("k", "v")
    assert redis_server.process is not None
    with hammering(cache) as calls:
        redis_server.process.send_signal(signal.SIGSTOP)
        try:
            _wait_for(lambda: _stopped(redis_server), limit_s=5)
            stopped_at = time.monotonic()
            time.sleep(6)  # the outage under test
        finally:
            redis_server.process.send_signal(signal.SIGCONT)
        resumed_at = time.monotonic()
        recovery_s = _first_success_after(lambda: cache.get("k"), limit_s=RETRY_S + TIMEOUT_S + MARGIN_S)
    during = [c for c in calls if stopped_at <= c.started and c.started + c.duration_s <= resumed_at]
    slow = [c for c in during if c.duration_s >= FAST_S]
    longest = max(c.duration_s for c in calls)  # the calls in flight when it stopped too
    slow_at = [f"{c.duration_s:.3f} s at +{c.started - stopped_at:.2f} s" for c in slow]
    print(f"\n{len(during)} calls while stopped: longest {longest:.3f} s; {len(slow)} took >= {FAST_S} s: {slow_at}")
    print(f"answered again {recovery_s:.3f} s after SIGCONT")
    assert all(c.error is BackendUnavailableError for c in during)
    assert longest <= TIMEOUT_S + MARGIN_S, "no call waits much longer than one timeout"
    assert len(slow) <= 8 + 6 / RETRY_S + 1, "those in flight when Redis stopped, then one trial per period"
    assert len(during) - len(slow) >= 0.9 * len(during), "while open, calls fail without touching Redis"
    assert recovery_s <= RETRY_S + TIMEOUT_S + MARGIN_S
    assert cache.reachable


def test_a_refusing_redis_fails_fast_and_is_used_again_once_it_restarts(redis_server: RedisServer) -> None:
    cache = RedisCache.from_url(redis_server.url, prefix="outage:", timeout_s=TIMEOUT_S)
    cache.set("k", "v")
    with hammering(cache) as calls:
        redis_server.stop()
        stopped_at = time.monotonic()
        try:
            _wait_for(lambda: not cache.reachable, limit_s=5)
            time.sleep(3)  # the outage under test
            assert not cache.reachable
        finally:
            redis_server.start()
        restarted_at = time.monotonic()
        recovery_s = _first_success_after(lambda: cache.get("k"), limit_s=RETRY_S + TIMEOUT_S + MARGIN_S)
        answered_at = time.monotonic()
        _wait_for(lambda: sum(c.started >= answered_at for c in list(calls)) >= 80, limit_s=5)
    during = [c for c in calls if stopped_at <= c.started and c.started + c.duration_s <= restarted_at]
    after = [c for c in calls if c.started >= answered_at]
    print(
        f"\n{len(during)} calls while refused: longest {max(c.duration_s for c in during):.3f} s; "
        f"answered again {recovery_s:.3f} s after restart"
    )
    assert all(c.error is BackendUnavailableError for c in during)
    # Refused connections fail at once; a call or two may still be slow when the machine deschedules a thread.
    fast = [c for c in during if c.duration_s < FAST_S]
    assert len(fast) >= 0.99 * len(during), sorted(c.duration_s for c in during)[-5:]
    assert max(c.duration_s for c in during) < 2 * TIMEOUT_S, "nothing waits out a timeout"
    assert recovery_s <= RETRY_S + MARGIN_S
    assert all(c.error is None for c in after), "once one caller got an answer, every thread does"
    assert cache.reachable


def test_a_restart_between_two_calls_is_not_an_outage(redis_server: RedisServer) -> None:
    cache = RedisCache.from_url(redis_server.url, prefix="outage:", timeout_s=TIMEOUT_S, clock=FakeClock())
    cache.set("k", "v")
    redis_server.stop()
    redis_server.start()
    assert cache.get("k") is None, "the pooled connection Redis closed is replaced at once"
    assert cache.reachable


def test_calls_fail_fast_until_the_retry_period_has_passed(redis_server: RedisServer) -> None:
    clock = FakeClock()
    cache = RedisCache.from_url(redis_server.url, prefix="outage:", timeout_s=TIMEOUT_S, clock=clock)
    assert cache.reachable
    redis_server.stop()
    with pytest.raises(BackendUnavailableError, match=r"\(connection failed; tried again every 2 s\)"):
        cache.get("k")
    assert not cache.reachable
    redis_server.start()
    ran = False
    with pytest.raises(BackendUnavailableError, match="is it running"), cache.errors():
        ran = True  # moderation's scripts run here
    assert not ran, "errors() refuses before its body touches Redis"
    clock.now += RETRY_S
    assert cache.get("k") is None
    assert cache.reachable


def test_answers_that_are_errors_leave_the_breaker_closed(redis_server: RedisServer) -> None:
    cache = RedisCache.from_url(redis_server.url, prefix="outage:", timeout_s=TIMEOUT_S, clock=FakeClock())
    for _ in range(2):
        with pytest.raises(BackendUnavailableError, match="answered an error"), cache.errors():
            cache.client.execute_command("NO-SUCH-COMMAND")
    assert cache.reachable
    assert cache.get("k") is None


def test_a_refused_password_stays_a_config_error(tmp_path: Path) -> None:
    server = RedisServer(port=free_port(), workdir=tmp_path, password="s3cret-pass")
    server.start()
    try:
        cache = RedisCache.from_url(
            f"redis://:wrong-pass@127.0.0.1:{server.port}/0", prefix="x:", timeout_s=TIMEOUT_S, clock=FakeClock()
        )
        for _ in range(2):
            with pytest.raises(ConfigError, match="refused authentication"):
                cache.get("k")
        assert cache.reachable, "a wrong password does not open the breaker"
    finally:
        server.stop()


def test_lock_acquire_against_a_hung_redis_ends_within_about_one_timeout(redis_server: RedisServer) -> None:
    holder = RedisCache.from_url(redis_server.url, prefix="outage:", timeout_s=TIMEOUT_S)
    cache = RedisCache.from_url(redis_server.url, prefix="outage:", timeout_s=TIMEOUT_S)
    assert holder.lock("lease", ttl_s=30).acquire(blocking=False)
    started = time.monotonic()
    assert not cache.lock("lease", ttl_s=30).acquire(timeout_s=0.2), "held elsewhere: waits, then gives up"
    assert 0.15 <= time.monotonic() - started <= 0.2 + MARGIN_S
    assert redis_server.process is not None
    redis_server.process.send_signal(signal.SIGSTOP)
    try:
        _wait_for(lambda: _stopped(redis_server), limit_s=5)
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError, match="timed out"):
            cache.lock("lease", ttl_s=30).acquire(timeout_s=10)
        waited_s = time.monotonic() - started
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError):
            cache.lock("lease", ttl_s=30).acquire(timeout_s=10)
        refused_s = time.monotonic() - started
    finally:
        redis_server.process.send_signal(signal.SIGCONT)
    print(f"\nacquire against a stopped Redis: {waited_s:.3f} s, then {refused_s:.4f} s")
    assert waited_s <= TIMEOUT_S + MARGIN_S
    assert refused_s < FAST_S
