"""Failover managers side by side: Patroni, pg_auto_failover and repmgr (profiles default and fast)
and pglab's monitor, the same drill, the same faults, the same checker, on this machine, against a
floor measured in the same run. pg_auto_failover and repmgr labs run PostgreSQL 15 (Debian packages
them for 15 only); the others the default.

    python bench/bench_ha.py [--repeat 3] [--managers patroni-fast,patroni-default,pg_auto_failover-fast,
                                                      pg_auto_failover-default,repmgr-fast,repmgr-default,pglab]
                             [--faults kill,kill-postgres,pause,partition,pause-short] [--markdown out.md]
                             [--runtime local|docker]

floor         kill -9 the primary, pg_promote() the synchronous standby at once, first write (what
              PostgreSQL itself costs; no detection, no election)
kill          the whole primary node (Patroni's agent too): the machine died
kill-postgres the postmaster only: a supervisor may restart it in place (Patroni does; pglab's monitor
              fails over)
pause         every process of the node frozen, agent included
partition     the node's link down (per-node network namespaces: its REST and etcd traffic too)
pause-short   frozen for half the manager's failover bound (Patroni: ttl / 2; pg_auto_failover:
              node_considered_unhealthy_timeout / 2; repmgr: (monitor interval + reconnect_attempts x
              reconnect_interval) / 2; pglab: timeout / 2),
              then resumed: any change of leader is a false failover; its "RTO" is the longest pause
              between acknowledged writes

Every drill: sync mode, 4 ledger clients writing through libpq's multi-host DSN, RTO = fault -> first
acknowledged write on the new (or restarted) primary; lost / unexpected from Jepsen's set checker.
Needs root (per-node namespaces for partition, Patroni as the postgres user). With --runtime docker
every lab is containers (PostgreSQL 18; Patroni's from the pglab-ha:18 image, `pglab image build
--pg 18 --ha`), and partition disconnects the node's container from the lab network.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_failover import floor  # noqa: E402

from lab import Lab  # noqa: E402
from lab.errors import LabError  # noqa: E402
from lab.ha.pgaf_conf import PROFILES as PGAF_PROFILES  # noqa: E402
from lab.model.haspec import REPMGR_PROFILES  # noqa: E402
from lab.workload.ledger import OK  # noqa: E402

MANAGERS = {
    "patroni-fast": {"ha": "patroni", "ha_profile": "fast"},
    "patroni-default": {"ha": "patroni", "ha_profile": "default"},
    # PostgreSQL 15 (pg_auto_failover's Debian packages), on 127.0.0.1 (no per-node namespaces)
    "pg_auto_failover-fast": {"ha": "pg_auto_failover", "ha_profile": "fast", "pg": 15, "netns": False},
    "pg_auto_failover-default": {"ha": "pg_auto_failover", "ha_profile": "default", "pg": 15, "netns": False},
    "repmgr-fast": {"ha": "repmgr", "ha_profile": "fast", "pg": 15},
    "repmgr-default": {"ha": "repmgr", "ha_profile": "default", "pg": 15},
    "pglab": {"ha": "pglab"},
}
FAULTS = ("kill", "kill-postgres", "pause", "partition", "pause-short")
# the old primary's restart in place is the expected outcome of these faults under Patroni
# (repmgr does not restart a crashed server: it fails over)
NO_FAILOVER_EXPECTED = {"patroni-fast": {"kill-postgres"}, "patroni-default": {"kill-postgres"}, "pglab": set(),
                        "pg_auto_failover-fast": {"kill-postgres"}, "pg_auto_failover-default": {"kill-postgres"},
                        "repmgr-fast": set(), "repmgr-default": set()}


def _bound_s(lab: Lab, manager: str) -> float:
    """How long the manager lets a silent primary be before it acts (pause-short holds half)."""
    if manager.startswith("patroni"):
        return lab.topology.ha.ttl
    if manager.startswith("pg_auto_failover"):
        return PGAF_PROFILES[lab.topology.ha.profile]["node_considered_unhealthy_timeout"] / 1000
    if manager.startswith("repmgr"):
        # repmgrd: a monitor interval, then reconnect_attempts tries reconnect_interval apart
        t = REPMGR_PROFILES[lab.topology.ha.profile]
        return t["monitor_interval_secs"] + t["reconnect_attempts"] * t["reconnect_interval"]
    return 2.0


def pause_short(lab: Lab, manager: str) -> dict:
    """Freeze the primary for half the manager's bound, resume, and see whether the leader moved."""
    ha = lab.topology.ha
    hold = _bound_s(lab, manager) / 2
    old = lab.manager.leader()
    w = lab.ledger(clients=2, duration=hold + 60).start()
    lab.wait_for(lambda _: sum(1 for o in w.ops() if o.outcome == OK) > 50, timeout=15, what="writes")
    t0 = time.time()
    lab.fault(old, "pause")
    time.sleep(hold)
    lab.heal(old, "pause")
    if manager.startswith("patroni"):
        time.sleep(2 * ha.loop_wait + 5)
    elif manager.startswith("repmgr"):
        time.sleep(_bound_s(lab, manager) / 2 + 5)
    else:
        time.sleep(_bound_s(lab, manager) + 3 if manager.startswith("pg_auto_failover") else 3)
    new = lab.manager.leader()
    w.stop()
    w.wait()
    # the outage a client saw: the longest pause between acknowledged writes around the freeze
    oks = sorted(o.t1 for o in w.ops() if o.outcome == OK and o.t1 >= t0 - 1)
    gap = max((b - a for a, b in zip(oks, oks[1:])), default=None)
    if new != old:    # put the old one back for the next drill
        lab.manager.recover(old, "pause")
    return {"old": old, "new": new, "hold_s": hold, "false_failover": new != old,
            "rto_s": gap, "lost": 0, "unexpected": 0, "unknown": 0}


def run_drill(lab: Lab, fault: str) -> dict:
    rep = lab.drill_failover(mode="sync", fault=fault)
    r = rep.results[0]
    return {"old": r.old_primary, "new": r.new_primary, "rto_s": r.times.rto_s, "client_gap_s": r.times.client_gap_s,
            "detect_s": r.times.detect_s, "promote_s": r.times.promote_s, "lost": len(r.check.lost),
            "unexpected": len(r.check.unexpected), "unknown": r.check.unknown, "ok": r.check.ok,
            "passed": r.passed, "problems": list(r.problems),
            "rejoin_s": r.rejoin.duration_s if r.rejoin else None}


def cell(rows: list[dict], manager: str, fault: str) -> list[str]:
    rtos = [r["rto_s"] for r in rows if r.get("rto_s") is not None]
    errors = sum(1 for r in rows if "error" in r)
    if fault == "pause-short":
        false = sum(1 for r in rows if r.get("false_failover"))
    else:
        expect_none = fault in NO_FAILOVER_EXPECTED.get(manager, set())
        false = sum(1 for r in rows if "error" not in r and expect_none and r["new"] != r["old"])
    moved = sum(1 for r in rows if "error" not in r and r.get("new") != r.get("old"))
    f = (lambda x: f"{x:.2f}")
    return [manager, fault, str(len(rows)), f(statistics.median(rtos)) if rtos else "-", f(max(rtos)) if rtos else "-",
            str(sum(r.get("lost", 0) for r in rows if "error" not in r)),
            str(sum(r.get("unexpected", 0) for r in rows if "error" not in r)),
            f"{moved}/{len(rows) - errors}", str(false), str(errors)]


HEAD = ["manager", "fault", "n", "RTO median s", "RTO max s", "lost", "unexpected", "leader moved", "false failovers",
        "errors"]


def markdown(table: list[list[str]]) -> str:
    out = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    out += ["| " + " | ".join(r) + " |" for r in table]
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--managers", default="patroni-fast,patroni-default,pglab")
    ap.add_argument("--faults", default=",".join(FAULTS))
    ap.add_argument("--markdown", default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("--runtime", default="local", choices=("local", "docker"))
    a = ap.parse_args()
    if not 1 <= a.repeat <= 20:
        print("--repeat: use 1 to 20", file=sys.stderr)
        return 2
    managers, faults = a.managers.split(","), a.faults.split(",")
    bad = [m for m in managers if m not in MANAGERS] + [f for f in faults if f not in FAULTS]
    if bad:
        print(f"unknown manager or fault {bad[0]!r}", file=sys.stderr)
        return 2
    netns = os.geteuid() == 0 and a.runtime == "local"
    where = {"runtime": a.runtime, **({"netns": netns} if a.runtime == "local" else {"pg": 18})}
    results: dict[str, dict[str, list[dict]]] = {}
    floors: list[float] = []
    t_start = time.time()
    # the floor, on a lab without a manager
    lab = Lab.up(name=f"bhf{uuid.uuid4().hex[:5]}", **{**where, "netns": False})
    try:
        floors = [floor(lab) for _ in range(2)]
    finally:
        lab.down()
    print(f"floor (kill -9, pg_promote at once, first write): {', '.join(f'{x:.2f}s' for x in floors)}", flush=True)
    for m in managers:
        results[m] = {}
        kw = {**where, **MANAGERS[m]}          # a manager may refuse per-node namespaces (netns False)
        lab = Lab.up(name=f"bh{uuid.uuid4().hex[:5]}", **kw)
        try:
            for f in faults:
                if f == "partition" and not (kw.get("netns") or a.runtime == "docker"):
                    continue
                rows = results[m].setdefault(f, [])
                for i in range(a.repeat):
                    try:
                        row = pause_short(lab, m) if f == "pause-short" else run_drill(lab, f)
                    except LabError as e:
                        row = {"error": e.line()}
                    rows.append(row)
                    print(f"{m} {f} #{i + 1}: " + json.dumps(row, default=str)[:300], flush=True)
                    if "error" in row:     # start again from a fresh lab
                        lab.down()
                        lab = Lab.up(name=f"bh{uuid.uuid4().hex[:5]}", **kw)
        finally:
            lab.down()
    table = [cell(rows, m, f) for m, per in results.items() for f, rows in per.items()]
    md = markdown(table)
    fl = statistics.median(floors)
    print()
    print(md)
    print(f"\nfloor median {fl:.2f}s; sync mode, {a.repeat} repeats, {time.time() - t_start:.0f}s in all; "
          f"runtime {a.runtime}, per-node namespaces: {netns}")
    if a.markdown:
        Path(a.markdown).write_text(md + f"\n\nfloor (kill -9 + pg_promote by hand + first write): median {fl:.2f}s\n")
    if a.json:
        Path(a.json).write_text(json.dumps({"floors": floors, "results": results}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
