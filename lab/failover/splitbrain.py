"""The split-brain drill: the primary is cut off from the other nodes while its clients (on this
machine) still reach it; the lab fails over anyway. Without fencing, both leaders acknowledge
writes and the histories diverge; with fencing the old leader accepts nothing after the promotion;
with synchronous replication its commits hang (and a cancelled one is only committed locally).

Needs the `isolate` fault: Docker, or the local runtime with per-node network namespaces.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import psycopg

from lab.cluster import faults, sql
from lab.cluster.context import Ctx
from lab.cluster.handle import Cluster
from lab.errors import InvalidInput, LabError
from lab.failover import offline, promotion
from lab.replication import syncpolicy

TABLE = "pglab_split_brain"


@dataclass(frozen=True)
class Attempt:
    node: str
    id: str
    outcome: str          # ok, ok_unreplicated (commit cancelled while waiting for a sync standby), error
    latency_s: float


@dataclass(frozen=True)
class SplitBrainResult:
    old_primary: str
    new_primary: str
    fence: str
    synchronous: bool
    fenced_at: float | None            # when the fencing acted (None: not fenced)
    promoted_at: float | None          # when pg_promote() returned on the new leader
    attempts: tuple[Attempt, ...]
    acked_on_old_after_promotion: int  # writes the old leader acknowledged while another led
    # conflicting rows: ids written in the drill (acknowledged, committed locally only, or even
    # reported failed) that one leader has and the other lacks. None: that node could not be read
    only_on_old: tuple[str, ...] | None
    only_on_new: tuple[str, ...] | None
    primaries_after_heal: int
    old_read_from: str | None = None   # "server", "copy of its data directory", or None (unread)
    old_read_error: str | None = None


def _write(ctx: Ctx, node: str, rid: str, timeout: float) -> Attempt:
    """One INSERT on `node`, cancelled after `timeout` (a commit waiting for a synchronous standby
    ignores statement_timeout); the server's warning tells a locally-only commit apart."""
    warned: list[str] = []
    t0 = time.monotonic()
    try:
        with sql.connect(ctx.state, node, connect_timeout=2) as conn:
            conn.add_notice_handler(lambda d: warned.append(d.message_primary or ""))
            timer = threading.Timer(timeout, conn.cancel_safe)
            timer.start()
            try:
                conn.execute(f"INSERT INTO {TABLE} VALUES (%s, %s)", (rid, node))
            finally:
                timer.cancel()
        outcome = "ok_unreplicated" if any("synchronous replication" in w for w in warned) else "ok"
    except psycopg.Error:
        outcome = "error"
    return Attempt(node, rid, outcome, time.monotonic() - t0)


def _ids(ctx: Ctx, node: str) -> set[str] | None:
    """The node's rows, over SQL; None (unknown, never empty) when it does not answer."""
    try:
        return {r[0] for r in sql.query(ctx.state, node, f"SELECT id FROM {TABLE}")}
    except psycopg.Error:
        return None


def _old_ids(ctx: Ctx, node: str) -> tuple[set[str] | None, str | None, str | None]:
    """The old leader's rows: over SQL if its server answers, else from a copy of its data
    directory started alone on no network (lab.failover.offline). (ids, read from, error)."""
    ids = _ids(ctx, node)
    if ids is not None:
        return ids, "server", None
    try:
        rows = offline.read_copy(ctx, node, f"SELECT id FROM {TABLE}")
        return set(rows), "copy of its data directory", None
    except LabError as e:
        return None, None, e.line()


def drill(ctx: Ctx, *, fence: str = "none", writes: int = 3, timeout: float = 2.0) -> SplitBrainResult:
    old = ctx.state.primary
    if not ctx.standbys:
        raise InvalidInput("a split brain needs a standby to promote", "bring the lab up with --standbys 1 or more")
    sync = syncpolicy.get(ctx)
    with sql.connect(ctx.state, old) as conn:
        conn.execute("SET synchronous_commit = local")
        conn.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (id text PRIMARY KEY, node text)")
    Cluster(ctx).wait_caught_up()
    faults.inject(ctx, old, "isolate")
    attempts = [_write(ctx, old, f"old-before-{i}", timeout) for i in range(writes)]
    fo = promotion.failover(ctx, None, allow_data_loss=True, fence_with=fence, force=True)
    new = ctx.state.primary
    promoted_at = fo.promotion.t_promoted if fo.promotion else None
    after = [_write(ctx, old, f"old-after-{i}", timeout) for i in range(writes)]
    attempts += after + [_write(ctx, new, f"new-{i}", timeout) for i in range(writes)]
    faults.heal(ctx, old, "isolate")
    (on_old, read_from, read_error), on_new = _old_ids(ctx, old), _ids(ctx, new)
    tried = {a.id for a in attempts}
    primaries = sum(1 for n in ctx.state.nodes if _is_primary(ctx, n))
    both = on_old is not None and on_new is not None
    return SplitBrainResult(old, new, fence, not sync.is_async, fo.t_fenced, promoted_at, tuple(attempts),
                            sum(1 for a in after if a.outcome == "ok"),
                            tuple(sorted((on_old - on_new) & tried)) if both else None,
                            tuple(sorted((on_new - on_old) & tried)) if both else None,
                            primaries, read_from, read_error)


def _is_primary(ctx: Ctx, node: str) -> bool:
    try:
        return sql.scalar(ctx.state, node, "SELECT NOT pg_is_in_recovery()") is True
    except psycopg.Error:
        return False
