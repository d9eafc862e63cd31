"""How long a primary restart (`pg_ctl restart -m fast`) refuses connections here: the fast path's
confirmation window (monitor --confirm, default 0.3 s) must be longer, or a restart fails over.

    python bench/bench_restart_window.py [--runs 10] [--runtime local]

A thread probes the primary's port (TCP connect, as the monitor's fast path does, to the address
the monitor probes) every 2 ms during each restart and records the longest run of refused probes.
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from lab import Lab  # noqa: E402


def refused_window(lab: Lab, node: str) -> float:
    """Restart `node` once; the longest stretch (s) during which its port refused connections."""
    host, port = lab.ctx.rt.probe_address(node, lab.ctx.state.nodes[node])
    stop = threading.Event()
    longest = [0.0]

    def probe() -> None:
        since = None
        while not stop.is_set():
            t = time.monotonic()
            try:
                socket.create_connection((host, port), timeout=0.2).close()
                refused = False
            except ConnectionRefusedError:
                refused = True
            except OSError:
                refused = False
            if refused and since is None:
                since = t
            elif not refused and since is not None:
                longest[0] = max(longest[0], t - since)
                since = None
            time.sleep(0.002)

    th = threading.Thread(target=probe, daemon=True)
    th.start()
    p = lab.ctx.rt.paths(node)
    lab.ctx.rt.run(node, ["pg_ctl", "-D", p.data, "-l", p.log, "-m", "fast", "-w", "restart"], timeout=60)
    time.sleep(0.3)
    stop.set()
    th.join()
    return longest[0]


def measure(lab: Lab, runs: int) -> list[float]:
    return [refused_window(lab, lab.primary) for _ in range(runs)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--runtime", default="local")
    a = ap.parse_args()
    with Lab.up(name=f"bench-rw-{os.getpid()}", runtime=a.runtime, standbys=1) as lab:
        xs = measure(lab, a.runs)
    print(f"pg_ctl restart -m fast on {a.runtime}, {len(xs)} runs: port refused for median "
          f"{statistics.median(xs) * 1000:.0f} ms, max {max(xs) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
