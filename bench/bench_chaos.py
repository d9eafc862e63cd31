"""The chaos soak, 10 minutes by default: `pglab chaos` on a fresh lab (local runtime with a network
namespace per node, so every fault kind is available; root), sync mode, monitor fast path on.

    python bench/bench_chaos.py [--seed 2026] [--duration 600] [--runtime local] [--timeout 2]

Prints the schedule, the per-fault table, a line per failover (path, RTO) and the invariants;
exit 0 when every invariant holds (0 acknowledged writes lost, at most one writable primary in
every sample, every node streaming after the final heal, nothing left after `down`) and no
failover was false. The result goes into docs/failover.md by hand.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from lab import Lab  # noqa: E402
from lab.cli.chaos import render  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--duration", type=float, default=600)
    ap.add_argument("--runtime", default="local")
    ap.add_argument("--timeout", type=float, default=2.0)
    ap.add_argument("--faults", default="kill,stop,pause,partition,isolate,throttle")
    a = ap.parse_args()
    t0 = time.time()
    lab = Lab.up(name=f"bench-chaos-{os.getpid()}", runtime=a.runtime, netns=(a.runtime == "local"))
    try:
        r = lab.chaos(seed=a.seed, duration=a.duration, faults=tuple(a.faults.split(",")), timeout=a.timeout,
                      down=True, say=lambda line: print(line, flush=True))
    finally:
        lab.down()
    print(f"\nschedule (seed {a.seed}, {a.duration:.0f}s, {len(r.schedule)} planned):")
    for ev in r.schedule:
        print("  " + ev.describe())
    render(r)
    print(f"{time.time() - t0:.0f}s in all; load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 0 if r.passed and r.false_failovers == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
