"""The whole scenarios/ suite on one runtime: per-scenario and total time (target: <= 10 min local).

    python bench/bench_scenarios.py [--runtime local]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from lab.scenario.runner import run_scenario  # noqa: E402
from lab.scenario.spec import load_scenario  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runtime", default="local")
    args = ap.parse_args()
    files = sorted(Path(__file__).resolve().parent.parent.joinpath("scenarios").glob("*.yaml"))
    t_all = time.monotonic()
    failed = 0
    for f in files:
        t0 = time.monotonic()
        res = run_scenario(load_scenario(f), runtime=args.runtime)
        failed += res.exit_code != 0
        print(f"{f.stem:32} {time.monotonic() - t0:6.1f} s  {'PASSED' if res.exit_code == 0 else 'FAILED'}", flush=True)
    total = time.monotonic() - t_all
    print(f"total {total:.0f} s for {len(files)} scenarios on {args.runtime} (target <= 600 s); {failed} failed")


if __name__ == "__main__":
    main()
