"""Readers: clients that read from the primary or the standbys and record how stale what they saw was.

Staleness is measured in ids of a table whose ids only grow (default: the pgbench INSERT table,
id bigserial): a read sees `newest id visible on the node read`, compared with `newest id
acknowledged at that moment`. The acknowledged head comes from a callable: a writer running in
the same process can supply its own counter; by default the reader asks the primary just before
each read (what is committed there is at least what was acknowledged), one short query on a
connection of its own.

Targets: "primary", "standby" (round robin over the standbys), "any" (round robin over all
nodes), or a node name. A standby that does not answer counts as an error, not as a stale read.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

import psycopg

from lab.cluster import sql
from lab.cluster.context import Ctx
from lab.errors import InvalidInput
from lab.workload.pgbench import INSERT_TABLE, Latency, summarize


@dataclass(frozen=True)
class NodeReads:
    node: str
    reads: int
    errors: int
    stale: int                     # reads that saw less than what was acknowledged
    max_behind: int                # most ids behind in one read
    mean_behind: float
    latency: Latency


@dataclass(frozen=True)
class ReadResult:
    target: str
    clients: int
    elapsed_s: float
    reads: int
    errors: int
    per_node: tuple[NodeReads, ...]

    @property
    def stale_fraction(self) -> float:
        return sum(n.stale for n in self.per_node) / self.reads if self.reads else 0.0


def targets(ctx: Ctx, target: str) -> list[str]:
    primary = ctx.state.primary
    standbys = ctx.state.standbys
    if target == "primary":
        return [primary]
    if target == "standby":
        if not standbys:
            raise InvalidInput("this lab has no standby to read from", "read from the primary")
        return standbys
    if target == "any":
        return [primary, *standbys]
    if target in ctx.state.nodes:
        return [target]
    raise InvalidInput(f"unknown read target {target!r}", f"use primary, standby, any or a node: {', '.join(ctx.state.nodes)}")


def run(ctx: Ctx, *, target: str = "standby", clients: int = 2, duration: float | None = 5.0,
        count: int | None = None, table: str = INSERT_TABLE, column: str = "id",
        acked: Callable[[], int | None] | None = None, stop: threading.Event | None = None,
        on_read: Callable[[str, int, float], None] | None = None) -> ReadResult:
    """Read `SELECT max(column) FROM table` round robin over the target nodes, bounded by duration/count."""
    if duration is None and count is None:
        raise InvalidInput("a read workload needs a bound", "give a duration or a count")
    if not (table.replace("_", "").isalnum() and column.replace("_", "").isalnum()):
        raise InvalidInput(f"bad table or column name {table}.{column}", "use a plain identifier")
    nodes = targets(ctx, target)
    stop = stop or threading.Event()
    q = f"SELECT coalesce(max({column}), 0) FROM {table}"
    lock = threading.Lock()
    rec: dict[str, list] = {n: [[], 0, []] for n in nodes}   # latencies, errors, ids behind
    done = [0]
    deadline = time.monotonic() + duration if duration is not None else None

    def head_from_primary(conn: psycopg.Connection) -> int:
        return conn.execute(q, prepare=True).fetchone()[0]

    def client(i: int) -> None:
        conns: dict[str, psycopg.Connection | None] = {}
        head_conn = sql.connect(ctx.state, ctx.state.primary) if acked is None else None
        k = i
        try:
            while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
                with lock:
                    if count is not None and done[0] >= count:
                        break
                    done[0] += 1
                node = nodes[k % len(nodes)]
                k += 1
                try:
                    # the head first: what is acknowledged at this moment, then what the node shows
                    head = acked() if acked else head_from_primary(head_conn)
                    c = conns.get(node)
                    if c is None or c.closed:
                        c = conns[node] = sql.connect(ctx.state, node, connect_timeout=2)
                    t0 = time.perf_counter()
                    seen = c.execute(q, prepare=True).fetchone()[0]
                    lat = time.perf_counter() - t0
                except psycopg.Error:
                    with lock:
                        rec[node][1] += 1
                    conns[node] = None
                    time.sleep(0.05)
                    continue
                behind = max(0, (head or 0) - seen)
                with lock:
                    rec[node][0].append(lat)
                    rec[node][2].append(behind)
                if on_read:
                    on_read(node, behind, lat)
        finally:
            for c in conns.values():
                if c is not None:
                    c.close()
            if head_conn is not None:
                head_conn.close()

    t0 = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,), daemon=True, name=f"pglab-reader-{i}") for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join((duration or 3600) + 30)
    stop.set()
    elapsed = time.monotonic() - t0
    per = []
    for n in nodes:
        lats, errs, behind = rec[n]
        per.append(NodeReads(n, len(lats), errs, sum(1 for b in behind if b > 0), max(behind, default=0),
                             sum(behind) / len(behind) if behind else 0.0, summarize(lats)))
    return ReadResult(target, clients, elapsed, sum(p.reads for p in per), sum(p.errors for p in per), tuple(per))
