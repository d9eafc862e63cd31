"""Losing etcd's quorum under a Patroni lab, with failsafe_mode off and on.

    python bench/bench_etcd_quorum.py [--hold 40] [--profile fast]

The drill is the library's (lab.failover.quorumloss, `pglab drill quorum-loss`): two of the three
etcd members are killed for `--hold` seconds (longer than the ttl), then restarted with their data,
while a ledger writes through libpq's multi-host DSN the whole time. Reported per run: whether the
primary stopped accepting writes (Patroni demotes a leader that cannot renew its key, unless
failsafe_mode keeps it because every member answers its POST /failsafe), the longest pause between
acknowledged writes, when writes came back, and lost / unexpected acknowledged writes (Jepsen's set
checker). The floor is the same lab's write gap with etcd healthy. One lab serves both runs.
"""
from __future__ import annotations

import argparse
import sys
import uuid

from lab import Lab
from lab.failover.quorumloss import HOLD_RANGE
from lab.model.haspec import ha_from_dict
from lab.model.topology import default_topology


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hold", type=float, default=40.0)
    ap.add_argument("--profile", default="fast")
    a = ap.parse_args()
    if not HOLD_RANGE[0] <= a.hold <= HOLD_RANGE[1]:
        print(f"--hold: use {HOLD_RANGE[0]:.0f} to {HOLD_RANGE[1]:.0f} s", file=sys.stderr)
        return 2
    topo = default_topology(2).with_changes(ha=ha_from_dict({"manager": "patroni", "profile": a.profile}))
    lab = Lab.up(topo, name=f"bq{uuid.uuid4().hex[:5]}", runtime="local")
    try:
        rows = [lab.drill_quorum_loss(failsafe=fs, hold=a.hold) for fs in (False, True)]
    finally:
        lab.down()
    print("| failsafe_mode | primary demoted after | longest write gap | writes back after heal | leader back after heal "
          "| lost | unexpected | write-gap floor |")
    print("|---|---|---|---|---|---|---|---|")
    f = (lambda x: "-" if x is None else f"{x:.1f} s")
    for r in rows:
        print(f"| {'on' if r.failsafe else 'off'} | {f(r.demoted_after_s)} | {f(r.longest_write_gap_s)} | "
              f"{f(r.writes_back_after_heal_s)} | {f(r.leader_back_after_heal_s)} | {len(r.check.lost)} | "
              f"{len(r.check.unexpected)} | {f(r.floor_gap_s)} |")
    print(f"\ntwo of three etcd members killed for {a.hold:.0f} s, profile {a.profile}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
