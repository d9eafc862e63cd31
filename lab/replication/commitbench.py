"""The price of synchronous commit, measured in one run on one machine.

For each synchronous_standby_names rule (none, FIRST 1 (s1), ANY 1 (s1, s2), FIRST 2 (s1, s2)) and
each synchronous_commit level (off, local, remote_write, on, remote_apply): the same pgbench
single-row INSERT load (same clients, same duration), commit latency p50/p99 from pgbench's
per-transaction log, throughput, and ratios to `local` under the same rule (measured minutes
apart at most, so machine drift cancels out).

Visibility: a probe client commits a row at that level and immediately looks for it on the
synchronous standbys. remote_apply promises the row is there (on `num` of the named standbys);
`on` only promises it is flushed to disk there, so the probe counts how often it is not yet
visible. Cells run one after another so they never compete for the 2 cores.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

from lab.cluster import nodes as cluster, sql
from lab.cluster.context import Ctx
from lab.errors import InvalidInput
from lab.model.syncspec import BENCH_SPECS, SyncSpec, parse_sync
from lab.model.topology import SYNC_COMMIT_LEVELS
from lab.wait import wait_until
from lab.workload import pgbench

DEFAULT_SPECS = BENCH_SPECS
PROBE_TABLE = "pglab_commit_probe"


@dataclass(frozen=True)
class CommitCell:
    spec: str                      # synchronous_standby_names ('none' = asynchronous)
    level: str                     # synchronous_commit
    tps: float
    p50_ms: float | None
    p99_ms: float | None
    transactions: int
    p50_x_local: float | None      # p50 / p50 of `local` under the same rule
    tps_x_local: float | None
    probes: int                    # commits checked for visibility on the synchronous standbys
    not_visible: int               # … that were not yet visible right after the acknowledgement


@dataclass(frozen=True)
class CommitBench:
    clients: int
    duration_s: float
    cells: tuple[CommitCell, ...]
    skipped: tuple[str, ...]       # rules that name standbys this lab does not have


def _probe(ctx: Ctx, spec: SyncSpec, level: str, stop: threading.Event, out: list[int]) -> None:
    """Commit, then at once look for the row on the named standbys; count misses."""
    probes = missing = 0
    with sql.connect(ctx.state, ctx.state.primary) as p:
        p.execute(f"SET synchronous_commit = {level}")
        readers = [sql.connect(ctx.state, n) for n in spec.names]
        try:
            while not stop.is_set():
                rid = p.execute(f"INSERT INTO {PROBE_TABLE} DEFAULT VALUES RETURNING id", prepare=True).fetchone()[0]
                seen = sum(1 for r in readers
                           if r.execute(f"SELECT 1 FROM {PROBE_TABLE} WHERE id = %s", (rid,), prepare=True).fetchone())
                probes += 1
                missing += seen < spec.num       # the promise is about `num` of the named standbys
                stop.wait(0.01)                  # a probe every ~10 ms: a light extra load
        finally:
            for r in readers:
                r.close()
    out.extend([probes, missing])


def _apply_spec(ctx: Ctx, spec: SyncSpec) -> None:
    cluster.set_sync(ctx, ctx.state.primary, spec)
    want = spec.render()
    wait_until(lambda: sql.scalar(ctx.state, ctx.state.primary, "SHOW synchronous_standby_names") == want,
               timeout=10, what="the primary to load synchronous_standby_names")
    standbys = ctx.state.standbys
    cluster.wait_streaming(ctx, ctx.state.primary, standbys, spec, timeout=30)


def run(ctx: Ctx, *, clients: int = 4, duration: float = 2.0, levels: tuple[str, ...] = SYNC_COMMIT_LEVELS,
        specs: tuple[str, ...] = DEFAULT_SPECS, visibility: bool = True,
        on_cell: Callable[[CommitCell], None] | None = None) -> CommitBench:
    bad = [lv for lv in levels if lv not in SYNC_COMMIT_LEVELS]
    if bad:
        raise InvalidInput(f"unknown synchronous_commit level {bad[0]!r}", f"use {', '.join(SYNC_COMMIT_LEVELS)}")
    standbys = ctx.state.standbys
    parsed: list[tuple[str, SyncSpec]] = []
    skipped: list[str] = []
    for text in specs:
        try:
            parsed.append((text, parse_sync(text, standbys)))
        except InvalidInput:
            skipped.append(text)
    original = ctx.topology.sync     # the lab's saved rule: restored even if a previous run was killed
    pgbench.prepare_insert_table(ctx)
    sql.query(ctx.state, ctx.state.primary, f"CREATE TABLE IF NOT EXISTS {PROBE_TABLE} (id bigserial PRIMARY KEY)")
    cells: list[CommitCell] = []
    try:
        for text, spec in parsed:
            _apply_spec(ctx, spec)
            group: list[CommitCell] = []
            for level in levels:
                stop, counts = threading.Event(), []
                probe = None
                if visibility and not spec.is_async:
                    probe = threading.Thread(target=_probe, args=(ctx, spec, level, stop, counts), daemon=True)
                    probe.start()
                try:
                    r = pgbench.run(ctx, clients=clients, duration=duration, insert=True, jobs=min(clients, 2),
                                    options=f"-c synchronous_commit={level}")
                finally:
                    stop.set()
                    if probe:
                        probe.join(10)
                cell = CommitCell(text if not spec.is_async else "none", level, r.tps, r.latency.p50_ms,
                                  r.latency.p99_ms, r.transactions, None, None,
                                  counts[0] if counts else 0, counts[1] if counts else 0)
                group.append(cell)
                if on_cell:
                    on_cell(cell)
            local = next((c for c in group if c.level == "local"), None)
            for c in group:
                cells.append(CommitCell(**{**c.__dict__,
                                           "p50_x_local": _ratio(c.p50_ms, local.p50_ms if local else None),
                                           "tps_x_local": _ratio(c.tps, local.tps if local else None)}))
    finally:
        cluster.set_sync(ctx, ctx.state.primary, original)
    return CommitBench(clients, duration, tuple(cells), tuple(skipped))


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def markdown(b: CommitBench) -> str:
    """The table for the README (docs/workloads.md)."""
    lines = ["| synchronous_standby_names | synchronous_commit | TPS | p50 ms | p99 ms | p50 × local | TPS × local "
             "| not visible on sync standby |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for c in b.cells:
        vis = "-" if not c.probes else f"{c.not_visible}/{c.probes}"
        lines.append(f"| {c.spec} | {c.level} | {c.tps:.0f} | {_f(c.p50_ms)} | {_f(c.p99_ms)} | "
                     f"{_f(c.p50_x_local)} | {_f(c.tps_x_local)} | {vis} |")
    return "\n".join(lines)


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


__all__ = ["CommitBench", "CommitCell", "run", "markdown", "DEFAULT_SPECS"]
