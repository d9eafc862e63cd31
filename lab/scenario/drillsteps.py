"""Scenario steps lessons use to show and ask about figures: the reading-from-followers and
shipping-methods drills, and `measure` (the lab's status as figures at that moment).

Figures of `consistency: DRILL`: `anomalies` and `reads` of the first run (no remedy), and per
remedy i (1, 2, …, in the drill's order) `remedy<i>.anomalies`, `remedy<i>.read_ms`,
`remedy<i>.waited_ms`, plus `remedy<i>.name`.
Figures of `methods`: `statement_diverged`, `statement_diverged_rewritten`, `wal_diverged`,
`logical_diverged`, `streaming_lag_ms`, `archive_lag_s`, `logical_lag_kb`, `logical_ddl_errors`.
"""
from __future__ import annotations

from typing import Any

from lab.api import Lab
from lab.cluster.status import Role
from lab.methods import compare
from lab.reads import consistency


def consistency_step(run, step) -> str:
    drill = str(step.arg)
    lab: Lab = run.lab
    if drill == "read-after-write":
        res = consistency.read_after_write(lab, follower=str(step.options.get("follower", "s2")))
    elif drill == "monotonic":
        res = consistency.monotonic_reads(lab)
    else:
        # consistent prefix needs a second partition: its own small lab, removed after the drill
        other = Lab.up(consistency.drill_topology(str(step.options.get("delay", "150ms")), False),
                       name=f"{lab.name}b", runtime=lab.runtime)
        try:
            res = consistency.consistent_prefix(lab, other)
        finally:
            other.down()
    figures: dict[str, Any] = {"anomalies": res.runs[0].anomalies, "reads": res.runs[0].reads,
                               "read_ms": res.runs[0].read_ms}
    for i, r in enumerate(res.runs[1:], 1):
        figures.update({f"remedy{i}.name": r.remedy, f"remedy{i}.anomalies": r.anomalies,
                        f"remedy{i}.read_ms": r.read_ms, f"remedy{i}.waited_ms": r.waited_ms,
                        f"remedy{i}.fell_back": r.fell_back})
    run.add_figures(figures)
    return "; ".join(f"{r.remedy}: {r.anomalies}/{r.reads} anomalies, read {r.read_ms:.1f} ms" for r in res.runs)


def methods_step(run, step) -> str:
    rep = compare.compare(runtime="local", seconds=float(step.options.get("seconds", 1.0)))
    lg, ship, st = rep.logical, rep.shipping, rep.statement
    run.add_figures({
        "statement_diverged": st.diverged_plain,
        "statement_diverged_rewritten": st.diverged_rewritten,
        "wal_diverged": 0 if ship.hashes_equal else None,   # unknown, not 0, when the hashes differ
        "logical_diverged": 0 if lg.hashes_equal else None,
        "streaming_lag_ms": round(1000 * max(ship.streaming_lag_s), 1) if ship.streaming_lag_s else None,
        "archive_lag_s": round(max(ship.archive_lag_s), 2) if ship.archive_lag_s else None,
        "logical_lag_kb": round(lg.lag_bytes_max / 1024, 1),
        "logical_ddl_errors": lg.apply_errors,
    })
    return "; ".join(f"{m.method}: {m.determinism}" for m in rep.methods)


def measure_step(run, step) -> str:
    """`primaries` (how many nodes accept writes now), `primary` (joined by commas if several) and
    `timeline` (the highest primary's); unknown figures are left out, never set to 0."""
    st = run.lab.status()
    prims = st.primaries
    figures: dict[str, Any] = {"primaries": len(prims), "primary": ",".join(prims)}
    tls = [n.timeline for n in st.nodes if n.role == Role.PRIMARY and n.timeline]
    if tls:
        figures["timeline"] = max(tls)
    run.add_figures(figures)
    return ", ".join(f"{k}={v}" for k, v in figures.items())
