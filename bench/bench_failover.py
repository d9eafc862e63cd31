"""Failover and switchover cost on the local runtime, against a floor measured in the same run.

    python bench/bench_failover.py [--drills 10] [--switchovers 5] [--floors 3]

1. floor: kill -9 the primary, pg_promote() the synchronous standby by hand at once, first write
   (no detection, no election: what PostgreSQL itself costs);
2. failover: `drill failover` (sync mode, kill, default monitor: interval 0.5 s, timeout 2 s) N
   times; RTO = fault -> first acknowledged write on the new primary, through the routed DSN;
   targets: median <= timeout + 1 s, max <= timeout + 2 s, 0 lost acknowledged writes (since
   issue 17 the monitor's fast path is on by default, so a kill is declared without the timeout;
   bench_rto_vs_timeout.py compares both paths);
3. switchover with the ledger writer running: window (writes blocked -> pg_promote() returned) and
   the client-observed gap (longest pause between acknowledged writes); target median <= 1 s, 0 lost.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid

from lab import Lab
from lab.bench.ha import floor
from lab.failover import drill, rejoin
from lab.cluster.bootstrap import down
from lab.failover.checker import check
from lab.workload.ledger import OK, final_ids


def med_max(xs: list[float]) -> tuple[float, float]:
    return statistics.median(xs), max(xs)


# the floor is lab.bench.ha.floor (the same as `pglab bench ha` measures)


def switchover_once(lab: Lab) -> tuple[float, float, int]:
    w = lab.ledger(clients=4, duration=30).start()
    lab.wait_for(lambda _: sum(1 for o in w.ops() if o.outcome == OK) > 100, timeout=10, what="writes")
    s = lab.switchover()
    lab.wait_for(lambda _: w.first_ok_after(s.promotion.t_promoted, s.new_primary), timeout=15, what="writes on new")
    time.sleep(0.5)
    w.stop()
    w.wait()
    oks = sorted(o.t1 for o in w.ops() if o.outcome == OK)
    gap = max(b - a for a, b in zip(oks, oks[1:]))
    res = check([(o.id, o.outcome) for o in w.ops()], final_ids(lab.dsn(role="primary"), w.run))
    if not s.demoted:
        rejoin.rejoin(lab.ctx, s.old_primary)
    return s.window_s, gap, len(res.lost)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--drills", type=int, default=10)
    ap.add_argument("--switchovers", type=int, default=5)
    ap.add_argument("--floors", type=int, default=3)
    a = ap.parse_args()
    name = f"bf{uuid.uuid4().hex[:6]}"
    timeout = 2.0
    lab = Lab.up(name=name, runtime="local")
    try:
        floors = [floor(lab) for _ in range(a.floors)]
        rep = drill.repeat(lab.ctx, a.drills, mode="sync", fault="kill", interval=0.5, timeout=timeout)
        rtos = [r.times.rto_s for r in rep.results if r.times.rto_s is not None]
        gaps = [r.times.client_gap_s for r in rep.results if r.times.client_gap_s is not None]
        lost = sum(len(r.check.lost) for r in rep.results)
        sw = [switchover_once(lab) for _ in range(a.switchovers)]
    finally:
        down(name)
    f_med, f_max = med_max(floors)
    r_med, r_max = med_max(rtos)
    g_med, g_max = med_max(gaps)
    w_med, w_max = med_max([s[0] for s in sw])
    c_med, c_max = med_max([s[1] for s in sw])
    sw_lost = sum(s[2] for s in sw)
    print(f"floor (kill -> pg_promote by hand -> first write), {len(floors)} runs: median {f_med:.3f}s max {f_max:.3f}s")
    print(f"failover drills (sync, kill, interval 0.5 s, timeout {timeout:.0f} s), {len(rtos)} runs:")
    print(f"  RTO fault -> first ok on new primary: median {r_med:.3f}s max {r_max:.3f}s "
          f"(targets {timeout + 1:.1f}s / {timeout + 2:.1f}s); median/floor = {r_med / f_med:.1f}x; "
          f"median - timeout = {r_med - timeout:.3f}s")
    print(f"  client gap last ok -> first ok: median {g_med:.3f}s max {g_max:.3f}s; lost acknowledged writes: {lost}")
    for k, (lo, md, hi) in rep.stats.items():
        print(f"    {k:<22} min {lo:9.3f}  median {md:9.3f}  max {hi:9.3f}")
    print(f"switchover, {len(sw)} runs with 4 ledger clients: window median {w_med:.3f}s max {w_max:.3f}s "
          f"(target median 1.0s); client-observed gap median {c_med:.3f}s max {c_max:.3f}s; lost: {sw_lost}")
    ok = (r_med <= timeout + 1 and r_max <= timeout + 2 and lost == 0 and w_med <= 1.0 and sw_lost == 0
          and rep.passed)
    print("targets met" if ok else "TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
