"""What one request costs the shared moderation as the window fills: admission and success bookkeeping.

    python benchmarks/moderation_scale.py [--sizes 1000,10000,100000] [--ops 300]

Meta's app window is an hour, so with pacing the send log and the success log hold an hour of calls:
many thousands at scale. For each size, a fresh SQLite cache (a file in a scratch directory) and an
in-process `LocalState` (the baseline) are filled with that many sends and successes inside the window,
then timed over --ops operations each:

  admit      `state.admit` with pacing on and a budget ten times the log (so it is read, not binding)
  success    `Moderator.succeeded` with an unchanging X-App-Usage reading, as a steady poll sees it:
             it logs the success and counts the window's successes only when the reading moves or a
             hundredth of a window has passed (`COUNTS_PER_WINDOW`)
  count      one `state.observe_success` that counts (the walk the moderator now rations)

Figures are microseconds per operation, and each size against the smallest (flat means the cost does
not grow with the window). Nothing is sent over a network; it is single-threaded on purpose.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from motion_meta_cli.config import ThrottleHandling
from motion_meta_cli.meta import Usage, UsageCounters
from motion_meta_cli.moderation.moderator import APP_SCOPE, Moderator, admit_rule
from motion_meta_cli.moderation.sqlite_state import SQLiteState
from motion_meta_cli.moderation.state import LocalState, ModerationState
from motion_meta_cli.storage.sqlite_cache import SQLiteCache

WINDOW_S = 3600.0
HANDLING = ThrottleHandling(window_s=WINDOW_S, window_guard_pct=0, pacing=True)


def _sqlite(work: Path, size: int) -> SQLiteState:
    state = SQLiteState(SQLiteCache(work / f"cache-{size}.db"))
    now = state.now_ms()
    state.raise_capacity(APP_SCOPE, size * 10, int(WINDOW_S * 10_000), precise=True)
    with state._db.transaction() as conn:  # bulk fill: what an hour of traffic leaves behind
        sends = [(APP_SCOPE, now - 1 - i % 3_000_000) for i in range(size)]
        conn.executemany("INSERT INTO mod_sends (scope, sent) VALUES (?, ?)", sends)
        conn.executemany(
            "INSERT INTO mod_ok (scope, back, left_ms) VALUES (?, ?, ?)",
            [(APP_SCOPE, now - 1 - i % 3_000_000, now - 2 - i % 3_000_000) for i in range(size)],
        )
    return state


def _local(size: int) -> LocalState:
    state = LocalState()
    state.raise_capacity(APP_SCOPE, size * 10, int(WINDOW_S * 10_000), precise=True)
    rule = admit_rule(HANDLING)
    for _ in range(size):
        state.admit(APP_SCOPE, rule)
        state.observe_success(APP_SCOPE, state.now_ms(), int(WINDOW_S * 1000), 0, count=False)
    return state


def _per_op_us(op: Callable[[], object], ops: int) -> float:
    start = time.perf_counter()
    for _ in range(ops):
        op()
    return (time.perf_counter() - start) / ops * 1e6


def _measure(state: ModerationState, ops: int) -> dict[str, float]:
    rule = admit_rule(HANDLING)
    moderator = Moderator(state)
    usage = Usage(app=UsageCounters(call_count_pct=40))
    window_ms = int(WINDOW_S * 1000)

    def success() -> None:
        moderator.succeeded(moderator.acquire([APP_SCOPE], HANDLING, budget_s=10), usage, HANDLING)

    return {
        "admit": _per_op_us(lambda: state.admit(APP_SCOPE, rule), ops),
        "success": _per_op_us(success, ops),
        "count": _per_op_us(lambda: state.observe_success(APP_SCOPE, state.now_ms(), window_ms, 0), max(ops // 10, 5)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000", help="entries in the window, comma-separated")
    parser.add_argument("--ops", type=int, default=300, help="operations timed per figure")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows: list[tuple[str, int, dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as scratch:
        for size in sizes:
            rows.append(("local", size, _measure(_local(size), args.ops)))
            rows.append(("sqlite", size, _measure(_sqlite(Path(scratch), size), args.ops)))
    print(f"µs per operation, {args.ops} operations each (count: a tenth as many); window {WINDOW_S:.0f} s")
    header = f"{'state':8} {'in window':>10} {'admit':>9} {'success':>9} {'count':>10}"
    print(f"{header}   vs smallest: admit  success  count")
    smallest = {name: figures for name, size, figures in rows if size == sizes[0]}
    for name, size, figures in rows:
        base = smallest[name]
        ratios = "  ".join(f"{figures[k] / base[k]:5.1f}×" for k in ("admit", "success", "count"))
        print(
            f"{name:8} {size:>10,} {figures['admit']:>9.0f} {figures['success']:>9.0f} {figures['count']:>10.0f}"
            f"   {ratios}"
        )
    print(
        "admit and success should stay flat as the window fills; count grows with it (it walks the successes),\n"
        "which is why the moderator counts at most when the reading moves or COUNTS_PER_WINDOW times a window."
    )


if __name__ == "__main__":
    main()
