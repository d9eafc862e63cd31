"""Slow failovers: RTO against the monitor's --timeout (the detection trade-off), and whether a
freeze of the primary shorter than the timeout causes a (false) failover.

    python bench/bench_rto_vs_timeout.py [--timeouts 1 3 10] [--runtime local]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from lab import Lab  # noqa: E402
from lab.failover.drill import drill_failover  # noqa: E402


def false_positive(runtime: str, timeout: float, pause: float) -> int:
    """Freeze the primary for `pause` seconds under a monitor with `timeout`: failovers that happened."""
    with Lab.up(name=f"bench-fp-{os.getpid()}", runtime=runtime, standbys=1) as lab:
        mon = lab.monitor(interval=0.5, timeout=timeout, duration=pause + timeout + 10).start_thread()
        time.sleep(1)
        lab.fault("p1", "pause")
        time.sleep(pause)
        lab.heal("p1", "pause")
        time.sleep(timeout + 1)
        res = mon.stop()
        return len(res.failovers) if res else 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--timeouts", type=float, nargs="+", default=[1, 3, 10])
    ap.add_argument("--runtime", default="local")
    args = ap.parse_args()
    print(f"{'timeout':>8} {'RTO':>7} {'detect':>7} {'promote':>8} {'lost':>5}   pause<timeout  pause>timeout")
    for t in args.timeouts:
        with Lab.up(name=f"bench-rto-{os.getpid()}", runtime=args.runtime) as lab:
            r = drill_failover(lab.ctx, mode="sync", fault="kill", interval=min(0.5, t / 2), timeout=t)
        short = false_positive(args.runtime, t, max(0.3, t / 2))
        long_ = false_positive(args.runtime, t, t + 2)
        fmt = lambda x: "-" if x is None else f"{x:.2f}s"  # noqa: E731
        print(f"{t:>7.0f}s {fmt(r.times.rto_s):>7} {fmt(r.times.detect_s):>7} {fmt(r.times.promote_s):>8} "
              f"{len(r.check.lost):>5}   {short} failover(s)   {long_} failover(s)", flush=True)


if __name__ == "__main__":
    main()
