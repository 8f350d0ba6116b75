"""A partition: what two `poll` instances on one Redis send to Meta while one of them is cut off Redis.

    sudo python benchmarks/partition.py [--baseline 03319b0] [--limit 40] [--window-s 6] [--cut-windows 1.5]

Each instance runs in a network namespace of its own, with a veth pair to the namespace running Redis and one
to this one, where the emulator listens (`tests/integration/netns.py`; making namespaces needs root). The
emulator allows `--limit` calls per `--window-s` for the whole app, 50 ms a call; each instance polls 20
customers of its own every 0.5 s, 4 at a time: far more than the budget, so pacing binds throughout. After
two windows of pacing together, once the window's budget is spent, instance a's link to Redis goes down for
`--cut-windows` windows, then up again, and both run two more windows.

The same run is made twice: with the instances on the `--baseline` commit (extracted with `git archive`,
run through PYTHONPATH) and on this checkout; the emulator is this checkout's in both. Printed per run:
throttled answers during the cut and after it, the most calls in any one window against the limit, and the
calls each instance made while a was cut off. A cut longer than two windows (the time the others count an
instance away) shows the bound the README gives for it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.integration.netns import busiest_window, quiet, two_instances_on_one_redis, until


def _run(work: Path, args: argparse.Namespace, pythonpath: str | None) -> dict[str, Any]:
    window = args.window_s
    with two_instances_on_one_redis(
        work, limit=args.limit, window_s=window, customers=20, pythonpath=pythonpath
    ) as pair:

        def total() -> int:
            return int(pair.stats()["requests"])

        until(lambda: total() >= 2 * args.limit, "two windows of pacing", timeout_s=120)
        until(quiet(total, 0.5), "the window's budget is spent")
        before = pair.stats()["throttled"]
        pair.cut()
        pair.a.wait_for("moderating in this process only")
        a0, b0, cut_at = pair.calls(pair.a), pair.calls(pair.b), time.monotonic()
        until(lambda: time.monotonic() - cut_at >= args.cut_windows * window, "the cut's end", timeout_s=600)
        a_cut, b_cut, during = pair.calls(pair.a) - a0, pair.calls(pair.b) - b0, pair.stats()["throttled"] - before
        pair.restore()
        pair.a.wait_for("moderation is shared again")
        after_start = total()
        until(lambda: total() >= after_start + 2 * args.limit, "two windows together again", timeout_s=120)
        after = pair.stats()["throttled"] - before - during
        for instance in (pair.a, pair.b):
            instance.stop()
        return {
            "throttled_before": before,
            "throttled_cut": during,
            "throttled_after": after,
            "busiest": busiest_window(pair.timeline(), window),
            "a_cut": a_cut,
            "b_cut": b_cut,
            "cut_s": args.cut_windows * window,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", default="03319b0", help="The commit to compare with (before the fair share).")
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument("--window-s", type=float, default=6.0)
    parser.add_argument("--cut-windows", type=float, default=1.5, help="How long a is cut off, in windows.")
    args = parser.parse_args()
    root = Path(__file__).resolve().parent.parent
    results = {}
    with tempfile.TemporaryDirectory(prefix="mm-partition-") as tmp:
        work = Path(tmp)
        baseline = work / "baseline"
        baseline.mkdir()
        archive = subprocess.run(["git", "-C", str(root), "archive", args.baseline], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(baseline)], input=archive.stdout, check=True)
        for label, pythonpath in ((f"baseline {args.baseline}", str(baseline)), ("this checkout", None)):
            run_dir = work / label.replace(" ", "-")
            run_dir.mkdir()
            results[label] = _run(run_dir, args, pythonpath)
            print(f"{label}: {results[label]}", flush=True)

    limit = args.limit
    print(f"\nTwo poll instances, one cut off Redis for {args.cut_windows:g} windows of {args.window_s:g} s;")
    print(f"Meta (the emulator) allows {limit} calls per window for the whole app.\n")
    print(f"{'':34}" + "".join(f"{label:>24}" for label in results))
    rows = [
        ("throttled answers, before the cut", "throttled_before"),
        ("throttled answers, during the cut", "throttled_cut"),
        ("throttled answers, after it", "throttled_after"),
        ("most calls in one window", "busiest"),
        ("calls by a while cut off", "a_cut"),
        ("calls by b meanwhile", "b_cut"),
    ]
    for title, key in rows:
        cells = []
        for result in results.values():
            value = result[key]
            cells.append(f"{value} ({value / limit:.2f} x limit)" if key == "busiest" else str(value))
        print(f"{title:34}" + "".join(f"{cell:>24}" for cell in cells))


if __name__ == "__main__":
    main()
