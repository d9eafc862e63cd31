"""Fail-stop vs fail-slow: failover RTO against the monitor's --timeout, with the fast path on and
off, beside the floor measured in the same run; and the failovers that must not happen.

    python bench/bench_rto_vs_timeout.py [--timeouts 2 10] [--drills 10] [--slow-drills 3] [--runtime local]

For each timeout, on one lab (p1, s1 sync, s2 async; sync mode, ledger writer with 4 clients):
  fast path   `drill failover --fault kill`, fast path on: RTO = fault -> first acknowledged write
              on the new primary, as the client sees it (median over --drills);
  slow path   the same with --no-fast-path (the timeout decides);
  pause       the primary frozen for half the timeout (fast path on): failovers (target 0);
  restart     `pg_ctl restart -m fast` of the primary, 3 times (fast path on): failovers (target 0).
Once per run: the floor (kill -9 -> pg_promote() by hand on the sync standby -> first write, no
detection, no election) and how long a restart refuses connections (bench_restart_window).
Targets (issue 17): fast-path median <= 0.6 s whatever the timeout; 0 failovers for the pause and
the restarts. The machine is shared (2 cores): every figure is printed with the floor beside it.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))
from lab import Lab  # noqa: E402
from lab.errors import LabError  # noqa: E402
from lab.failover import drill  # noqa: E402
from bench_failover import floor  # noqa: E402
from bench_restart_window import measure as restart_windows  # noqa: E402


def pause_failovers(lab: Lab, timeout: float, pause: float) -> int:
    """Freeze the primary for `pause` seconds under a monitor (fast path on) with `timeout`."""
    p = lab.primary
    mon = lab.monitor(interval=min(0.5, timeout / 2), timeout=timeout, duration=pause + timeout + 30).start_thread()
    lab.wait_for(lambda _: any(" ok " in ln for ln in mon.lines), timeout=10, what="the monitor's first good check")
    lab.fault(p, "pause")
    time.sleep(pause)
    lab.heal(p, "pause")
    time.sleep(timeout + 1)
    res = mon.stop()
    n = len(res.failovers) if res else 0
    if n:
        lab.rejoin(p)
    return n


def med(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}s"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--timeouts", type=float, nargs="+", default=[2, 10])
    ap.add_argument("--drills", type=int, default=10)
    ap.add_argument("--slow-drills", type=int, default=3)
    ap.add_argument("--floors", type=int, default=3)
    ap.add_argument("--runtime", default="local")
    a = ap.parse_args()
    t_run = time.time()
    rows = []
    with Lab.up(name=f"bench-rto-{os.getpid()}", runtime=a.runtime) as lab:
        floors = [floor(lab) for _ in range(a.floors)]
        windows = restart_windows(lab, 5)
        print(f"floor runs: {', '.join(f'{x:.3f}' for x in floors)}; restart refused (ms): "
              f"{', '.join(f'{x * 1000:.0f}' for x in windows)}", flush=True)
        for t in a.timeouts:
            iv = min(0.5, t / 2)
            try:
                fast = drill.repeat(lab.ctx, a.drills, mode="sync", fault="kill", interval=iv, timeout=t)
                print(f"  timeout {t:g}s fast: RTO " + ", ".join(fmt(r.times.rto_s) for r in fast.results)
                      + "; paths " + ", ".join(str(r.path) for r in fast.results), flush=True)
                slow = drill.repeat(lab.ctx, a.slow_drills, mode="sync", fault="kill", interval=iv, timeout=t,
                                    fast_path=False)
                print(f"  timeout {t:g}s slow: RTO " + ", ".join(fmt(r.times.rto_s) for r in slow.results), flush=True)
                paused = pause_failovers(lab, t, t / 2)
                rs = drill.drill_restart(lab.ctx, restarts=3, interval=iv, timeout=t)
                print(f"  timeout {t:g}s: pause {paused} failover(s), restarts {rs.failovers} failover(s)", flush=True)
            except LabError as e:          # report what was measured, and why the rest was not
                print(f"  timeout {t:g}s: stopped: {e.line()}", flush=True)
                break
            rows.append((t, fast, slow, paused, rs))
    f_med = statistics.median(floors)
    print(f"\nruntime {a.runtime}; load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; "
          f"{time.time() - t_run:.0f}s")
    print(f"floor (kill -> pg_promote by hand -> first write), {len(floors)} runs: median {f_med:.3f}s "
          f"(all: {', '.join(f'{x:.3f}' for x in floors)})")
    print(f"pg_ctl restart refuses connections for median {statistics.median(windows) * 1000:.0f} ms, max "
          f"{max(windows) * 1000:.0f} ms (5 runs); the fast path's confirmation window is 300 ms")
    print(f"{'timeout':>8} {'path':>5} {'drills':>6} {'RTO med':>8} {'RTO max':>8} {'x floor':>7} {'detect':>8} "
          f"{'lost':>5} {'fired':>12}")
    ok = True
    for t, fast, slow, paused, rs in rows:
        for name, rep in (("fast", fast), ("slow", slow)):
            rtos = [r.times.rto_s for r in rep.results if r.times.rto_s is not None]
            det = [r.times.detect_s for r in rep.results if r.times.detect_s is not None]
            paths = [r.path for r in rep.results]
            lost = sum(len(r.check.lost) for r in rep.results)
            fired = ", ".join(f"{paths.count(p)} {p}" for p in ("fast", "slow") if paths.count(p))
            print(f"{t:>7g}s {name:>5} {len(rep.results):>6} {fmt(med(rtos)):>8} {fmt(max(rtos, default=None)):>8} "
                  f"{(med(rtos) or 0) / f_med:>6.1f}x {fmt(med(det)):>8} {lost:>5} {fired:>12}")
            ok &= lost == 0 and rep.passed
            if name == "fast":
                ok &= (med(rtos) or 99) <= 0.6 and paths.count("fast") == len(paths)
        print(f"{'':>8} pause of {t / 2:g}s (half the timeout): {paused} failover(s); "
              f"{rs.restarts} restarts: {rs.failovers} failover(s), evidence lasted "
              f"{', '.join(f'{x * 1000:.0f}ms' for x in rs.evidence_s) or '-'}")
        ok &= paused == 0 and rs.failovers == 0
    print("targets met" if ok else "TARGETS MISSED (see above; the machine is shared, compare with the floor)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
