"""Losing etcd's quorum under a Patroni lab, with failsafe_mode off and on.

    python bench/bench_etcd_quorum.py [--hold 40] [--profile fast]

Two of the three etcd members are killed for `--hold` seconds (longer than the ttl), then restarted
with their data. A ledger writes through libpq's multi-host DSN the whole time. Reported per run:
whether the primary stopped accepting writes (Patroni demotes a leader that cannot renew its key,
unless failsafe_mode keeps it because every member answers its POST /failsafe), the longest pause
between acknowledged writes, when writes came back, and lost / unexpected acknowledged writes
(Jepsen's set checker). The floor is the same lab's write gap with etcd healthy.
"""
from __future__ import annotations

import argparse
import sys
import time
import uuid

from lab import Lab
from lab.failover.checker import check
from lab.model.haspec import ha_from_dict
from lab.model.topology import default_topology
from lab.workload.ledger import OK, final_ids


def gap(oks: list[float], t0: float, t1: float) -> float:
    xs = sorted(t for t in oks if t0 - 1 <= t <= t1)
    return max((b - a for a, b in zip(xs, xs[1:])), default=t1 - t0)


def run(failsafe: bool, hold: float, profile: str) -> dict:
    topo = default_topology(2).with_changes(ha=ha_from_dict({"manager": "patroni", "profile": profile,
                                                             "failsafe_mode": failsafe}))
    lab = Lab.up(topo, name=f"bq{uuid.uuid4().hex[:5]}", runtime="local")
    try:
        w = lab.ledger(clients=2, duration=hold + 120).start()
        lab.wait_for(lambda _: sum(1 for o in w.ops() if o.outcome == OK) > 100, timeout=20, what="writes")
        time.sleep(5)
        t_base = time.time()
        time.sleep(5)
        t0 = time.time()
        killed = [c.name for c in lab.ha_view().components if c.kind == "etcd" and c.name.startswith("e")][:2]
        for m in killed:
            lab.fault(m, "kill")
        demoted_at = None
        while time.time() - t0 < hold:
            if demoted_at is None and not lab.status().primaries:
                demoted_at = time.time() - t0
            time.sleep(0.5)
        for m in killed:
            lab.heal(m)
        t_heal = time.time()
        lab.wait_for(lambda lb: lb.manager.leader() is not None and lb.status().primaries, timeout=120,
                     what="a leader again", interval=0.5)
        t_back = time.time()
        time.sleep(5)
        w.stop()
        w.wait()
        ops = w.ops()
        oks = [o.t1 for o in ops if o.outcome == OK]
        lab.ctx.state.primary = lab.manager.leader()
        res = check([(o.id, o.outcome) for o in ops], final_ids(lab.dsn(lab.ctx.state.primary), w.run))
        first_after = min((t for t in oks if t > t0 + (demoted_at or hold)), default=None)
        return {"failsafe": failsafe, "floor_gap_s": gap(oks, t_base, t0), "demoted_after_s": demoted_at,
                "longest_write_gap_s": gap(oks, t0, t_back + 5), "writes_back_after_heal_s":
                (first_after - t_heal) if first_after and demoted_at else None,
                "leader_back_after_heal_s": t_back - t_heal, "lost": len(res.lost), "unexpected": len(res.unexpected),
                "ok": res.ok}
    finally:
        lab.down()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hold", type=float, default=40.0)
    ap.add_argument("--profile", default="fast")
    a = ap.parse_args()
    if not 5 <= a.hold <= 300:
        print("--hold: use 5 to 300 s", file=sys.stderr)
        return 2
    rows = [run(fs, a.hold, a.profile) for fs in (False, True)]
    print("| failsafe_mode | primary demoted after | longest write gap | writes back after heal | leader back after heal "
          "| lost | unexpected | write-gap floor |")
    print("|---|---|---|---|---|---|---|---|")
    f = (lambda x: "-" if x is None else f"{x:.1f} s")
    for r in rows:
        print(f"| {'on' if r['failsafe'] else 'off'} | {f(r['demoted_after_s'])} | {f(r['longest_write_gap_s'])} | "
              f"{f(r['writes_back_after_heal_s'])} | {f(r['leader_back_after_heal_s'])} | {r['lost']} | {r['unexpected']} "
              f"| {f(r['floor_gap_s'])} |")
    print(f"\ntwo of three etcd members killed for {a.hold:.0f} s, profile {a.profile}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
