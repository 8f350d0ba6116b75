"""Start-up cost: median wall time of `motion-meta --help`, `python -c pass` and a whole `fetch --json`.

    python benchmarks/startup.py [--runs 15]

`fetch` runs against an emulator started by this script, in a throwaway MOTION_META_HOME. Targets:
--help under 0.25 s, a whole fetch under 0.5 s. Figures depend on the machine; the ratios to a bare
interpreter start are the comparable part.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from motion_meta_cli.emulator import DEMO_TOKEN, EmulatorConfig, GraphEmulator


def _median_s(command: list[str], runs: int, env: dict[str, str]) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    runs = max(args.runs, 10)
    cli = shutil.which("motion-meta") or str(Path(sys.executable).with_name("motion-meta"))
    home = tempfile.mkdtemp(prefix="motion-meta-bench-")
    with GraphEmulator(EmulatorConfig()) as emulator:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("META_", "MOTION_META_"))},
            "MOTION_META_HOME": home,
            "META_GRAPH_URL": emulator.url,
            "META_ACCESS_TOKEN": DEMO_TOKEN,
        }
        subprocess.run([cli, "fetch", "--json"], env=env, check=True, stdout=subprocess.DEVNULL)  # warm: create DBs
        baseline = _median_s([sys.executable, "-c", "pass"], runs, env)
        rows = [
            ("python -c pass", baseline, None),
            ("motion-meta --help", _median_s([cli, "--help"], runs, env), 0.25),
            ("motion-meta fetch --json", _median_s([cli, "fetch", "--json"], runs, env), 0.5),
        ]
    shutil.rmtree(home, ignore_errors=True)
    print(f"median of {runs} runs each")
    print(f"{'command':<28}{'median':>10}{'× python':>10}{'target':>10}  verdict")
    for name, seconds, target in rows:
        verdict = "" if target is None else ("ok" if seconds <= target else "OVER")
        target_text = "" if target is None else f"{target:.2f} s"
        print(f"{name:<28}{seconds:>8.3f} s{seconds / baseline:>9.1f}×{target_text:>10}  {verdict}")


if __name__ == "__main__":
    main()
