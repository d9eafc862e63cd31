"""Failover managers side by side: now `pglab bench ha` (lab.bench.ha); this script only forwards
its arguments, for the commands quoted in docs/ha-managers.md's measured sections.

    python bench/bench_ha.py [--managers none,pglab,patroni,pg_auto_failover,repmgr] [--profiles default,fast]
                             [--faults kill,kill-postgres,stop,partition,isolate,pause-short,pause-long]
                             [--modes sync,async] [--repeat 3] [--runtime local|docker] [--json]
                             [--markdown FILE] [--chart FILE.png]

The former labels (patroni-fast, pg_auto_failover-default, ...) are split into --managers and
--profiles; the former `pause` fault is `pause-long`.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from lab.cli import load  # noqa: E402


def translate(argv: list[str]) -> list[str]:
    """The former --managers labels (manager-profile) and fault `pause`, in the command's terms."""
    out, i = [], 0
    while i < len(argv):
        a = argv[i]
        if a == "--managers" and i + 1 < len(argv) and "-" in argv[i + 1].replace("pg_auto_failover", "pgaf"):
            ms, ps = [], []
            for label in argv[i + 1].split(","):
                m, _, p = label.rpartition("-") if label.rsplit("-", 1)[-1] in ("fast", "default") else (label, "", "")
                ms.append(m)
                if p:
                    ps.append(p)
            out += ["--managers", ",".join(dict.fromkeys(ms))]
            if ps and "--profiles" not in argv:
                out += ["--profiles", ",".join(dict.fromkeys(ps))]
            i += 2
            continue
        if a == "--faults" and i + 1 < len(argv):
            out += [a, ",".join("pause-long" if f == "pause" else f for f in argv[i + 1].split(","))]
            i += 2
            continue
        out.append(a)
        i += 1
    return out


if __name__ == "__main__":
    sys.argv = ["pglab", "bench", "ha", *translate(sys.argv[1:])]
    sys.exit(load(("bench", "benchha"))())
