"""Ledger writer TPS vs pgbench TPS, single-row INSERT, same clients, same lab, same run.

pgbench (C, prepared INSERT into pglab_pgbench_insert) is the floor; the ledger writer (Python
threads, prepared INSERT of a unique id into pglab_ledger, every outcome recorded to a JSON-lines
file) must reach at least half of it. Runs alternate (pgbench, ledger, pgbench, ledger, …) so
that drift on this noisy 2-core machine hits both; medians are compared.

    python bench/bench_ledger_vs_pgbench.py [--clients 4] [--duration 5] [--repeat 3] [--sync 'FIRST 1 (s1)']
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from lab import Lab  # noqa: E402
from lab.workload.ledger import LedgerWriter  # noqa: E402

TARGET = 0.5


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sync", default=None, help="synchronous_standby_names of the lab (default: FIRST 1 (s1))")
    ap.add_argument("--runtime", default="local")
    a = ap.parse_args()
    name = f"bench{uuid.uuid4().hex[:6]}"
    lab = Lab.up(name=name, runtime=a.runtime, sync=a.sync)
    try:
        nodes = {f"{n.host}:{n.port}": k for k, n in lab.ctx.state.nodes.items()}
        pg, led = [], []
        with tempfile.TemporaryDirectory() as tmp:
            for i in range(a.repeat):
                r = lab.pgbench(clients=a.clients, duration=a.duration, insert=True, log_latencies=False)
                pg.append(r.tps)
                w = LedgerWriter(lambda: lab.dsn(role="primary"), f"{tmp}/ledger{i}.jsonl", clients=a.clients,
                                 duration=a.duration, nodes=nodes)
                w.start()
                s = w.wait()
                led.append(s.ok_tps)
                print(f"round {i + 1}: pgbench {r.tps:8.0f} tps   ledger {s.ok_tps:8.0f} ok/s "
                      f"({s.attempted} writes, {s.outcomes['ok'].count} ok)", flush=True)
        p, l_ = statistics.median(pg), statistics.median(led)
        ratio = l_ / p if p else 0.0
        print(f"\nlab {lab.runtime}, synchronous_standby_names = {lab.topology.sync.render() or 'none'}, "
              f"{a.clients} clients, {a.duration:.0f} s per run, {a.repeat} rounds, {os.cpu_count()} cores")
        print(f"median pgbench  {p:8.0f} tps")
        print(f"median ledger   {l_:8.0f} ok/s")
        print(f"ratio ledger/pgbench = {ratio:.2f} (target >= {TARGET})  {'PASS' if ratio >= TARGET else 'FAIL'}")
        return 0 if ratio >= TARGET else 1
    finally:
        lab.down()


if __name__ == "__main__":
    sys.exit(main())
