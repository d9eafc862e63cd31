"""Changing the leader: promote a standby, switch over (planned), fail over (unplanned).

Every step talks to the servers through fresh short-lived connections and to the nodes through the
Runtime protocol only, so the same code runs on every runtime.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Mapping

import psycopg

from lab.cluster import nodes as cluster, server, sql
from lab.model import lsn as lsn_mod
from lab.model import state as lab_state
from lab.failover import reconfigure
from lab.cluster.context import Ctx
from lab.errors import FailoverRefused, InvalidInput, LabError, NodeFailed
from lab.failover import truth as truth_mod
from lab.failover.election import DEFAULT_MAX_LAG_BYTES, Candidate, Decision, LastSeen, elect
from lab.failover.truth import LossTruth
from lab.model.syncspec import SyncSpec
from lab.wait import wait_until

FENCES = ("none", "stop", "kill", "partition")


@dataclass(frozen=True)
class Promotion:
    new_primary: str
    old_primary: str
    timeline: int
    sync: str                       # synchronous_standby_names set on the new primary
    repointed: tuple[str, ...]      # standbys now streaming from the new primary
    problems: tuple[str, ...]       # standbys that could not be re-pointed, and why
    t_start: float                  # wall clock (time.time()) of each step, for drill reports
    t_promoted: float               # pg_promote() returned: the new primary accepts writes
    t_done: float                   # standbys re-pointed and synchronous replication restored

    @property
    def promote_s(self) -> float:
        return self.t_promoted - self.t_start


@dataclass(frozen=True)
class Failover:
    decision: Decision
    promotion: Promotion | None
    fence: str
    t_start: float
    t_fenced: float | None
    t_elected: float
    # the data-loss estimate the guard decided on (a lower bound; None: unknown) and the truth read
    # afterwards from the old primary's data directory (None: not readable, e.g. it still runs)
    loss_estimate_bytes: int | None = None
    loss_true_bytes: int | None = None
    loss_true_commits: int | None = None
    truth: LossTruth | None = None

    @property
    def loss_line(self) -> str:
        return truth_mod.compare_line(self.decision, self.truth)


@dataclass(frozen=True)
class Switchover:
    old_primary: str
    new_primary: str
    checkpoint_lsn: str
    promotion: Promotion
    window_s: float                 # writes impossible: from blocking writes until pg_promote() returned
    demoted: bool                   # the old primary streams from the new one
    steps: tuple[tuple[str, float], ...] = field(default_factory=tuple)


# ---- probing ----------------------------------------------------------------------------------
_PROBE_SQL = """
SELECT pg_is_in_recovery(), pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text,
       CASE WHEN pg_is_in_recovery()
            -- a standby whose walreceiver is gone (its primary died) has no received_tli, and its
            -- checkpoint's timeline may predate a switch: the newest history file it fetched
            -- names the timeline it follows
            THEN greatest((SELECT received_tli FROM pg_stat_wal_receiver),
                          (SELECT timeline_id FROM pg_control_checkpoint()),
                          (SELECT max(('x' || substr(f, 1, 8))::bit(32)::int) FROM pg_ls_dir('pg_wal') f
                           WHERE f ~ '^[0-9A-F]{8}[.]history$'))
            ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END
"""


def probe(ctx: Ctx, node: str, timeout: int = 2, session: psycopg.Connection | None = None) -> Candidate:
    """One candidate row, on `session` (an open connection to the node) if there is one, else from
    a fresh connection with a short timeout (libpq's minimum is 2 s)."""
    prio = ctx.topology.node(node).priority if node in ctx.topology.node_names else 100
    if session is not None and not session.closed:
        try:
            rec, rcv, rpl, tl = session.execute(_PROBE_SQL).fetchone()
            return Candidate(node, True, rec, tl, rcv, rpl, prio)
        except psycopg.Error:
            pass        # broken since it was opened (a restart): ask on a fresh connection
    try:
        with sql.connect(ctx.state, node, connect_timeout=timeout, options=f"-c statement_timeout={timeout * 1000}") as c:
            rec, rcv, rpl, tl = c.execute(_PROBE_SQL).fetchone()
        return Candidate(node, True, rec, tl, rcv, rpl, prio)
    except psycopg.Error as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return Candidate(node, False, None, None, None, None, prio, error=msg)


def probe_all(ctx: Ctx, nodes: list[str], sessions: Mapping[str, psycopg.Connection] | None = None) -> list[Candidate]:
    if not nodes:
        return []
    sessions = sessions or {}
    with ThreadPoolExecutor(max_workers=len(nodes)) as ex:
        return list(ex.map(lambda n: probe(ctx, n, session=sessions.get(n)), nodes))


# ---- promote and reconfigure --------------------------------------------------------------------
#: how long pg_promote() may take before the promotion counts as failed
PROMOTE_TIMEOUT = 60


def promote(ctx: Ctx, node: str, *, old_primary: str | None = None, dead: set[str] | None = None,
            sync_wait: float = 10.0, session: psycopg.Connection | None = None) -> Promotion:
    """pg_promote() on `node` and wait; then reconfigure the rest of the lab around it. `session`:
    an open connection to `node` to promote through (it stays open), else a fresh one."""
    if node not in ctx.state.nodes:
        raise InvalidInput(f"no node {node!r} in lab {ctx.name}", f"nodes are: {', '.join(ctx.state.nodes)}")
    old = old_primary or ctx.state.primary
    t0 = time.time()
    if session is not None:
        try:
            session.execute("SELECT 1")
        except psycopg.Error:
            session = None   # closed or broken since it was opened: promote through a fresh connection
    with (nullcontext(session) if session is not None else sql.connect(ctx.state, node, connect_timeout=3)) as c:
        if not c.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
            raise InvalidInput(f"{node} is already a primary", "promote a standby")
        # pg_promote(wait => true) looks every 100 ms, which alone was a third of a fail-stop
        # failover here: signal, then look every 5 ms on this connection
        c.execute("SELECT pg_promote(false)")
        deadline = time.monotonic() + PROMOTE_TIMEOUT
        while c.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
            if time.monotonic() > deadline:
                raise NodeFailed(f"pg_promote() on {node} did not finish within {PROMOTE_TIMEOUT} s",
                                 details=server.log_tail(ctx.rt, node))
            time.sleep(0.005)
    t_promoted = time.time()
    ctx.state.primary = node
    ctx.event("promote", node, old_primary=old)
    return _reconfigure(ctx, node, old, t0, t_promoted, dead or {old}, sync_wait)


def _reconfigure(ctx: Ctx, new: str, old: str, t0: float, t_promoted: float, dead: set[str],
                 sync_wait: float) -> Promotion:
    # The new primary must not keep a standby's configuration: rewrite it as a primary, async for
    # now (nobody streams from it yet, and a name there would make commits hang), then re-point.
    cluster.write_config(ctx, new, sync=None)
    sql.query(ctx.state, new, "SELECT pg_reload_conf()")
    timeline = sql.timeline(ctx.state, new)
    others = [n for n in ctx.state.nodes if n != new and n not in dead]
    problems: list[str] = []
    movable = []
    for n in others:
        # slots first: a standby re-pointed before its slot exists could find its WAL recycled
        try:
            reconfigure.ensure_slot(ctx, new, n)
        except psycopg.Error as e:
            problems.append(f"{n}: slot: {str(e).strip().splitlines()[0]}")
            continue
        movable.append(n)
    errors = {}
    if movable:
        with ThreadPoolExecutor(max_workers=len(movable)) as ex:
            errors = dict(zip(movable, ex.map(lambda n: reconfigure.repoint(ctx, n, new), movable)))
    for n, err in errors.items():
        if err:
            problems.append(f"{n}: {err}")
    reachable = [n for n in movable if not errors.get(n)]
    spec = reconfigure.restore_sync(ctx, new, wait=sync_wait, expect=reachable)
    now_streaming = reconfigure.streaming(ctx, new)
    for n in reachable:
        if n not in now_streaming:
            problems.append(f"{n}: not streaming from {new} after {sync_wait:.0f}s (needs `pglab rejoin {n}`?)")
    ctx.event("reconfigure", new, sync=spec.render(), repointed=sorted(now_streaming & set(reachable)),
              problems=problems)
    return Promotion(new, old, int(timeline or 0), spec.render(), tuple(sorted(now_streaming & set(reachable))),
                     tuple(problems), t0, t_promoted, time.time())


# ---- failover (unplanned) -----------------------------------------------------------------------
def fence(ctx: Ctx, node: str, how: str) -> None:
    """Make sure the old primary accepts no more writes before another node is promoted."""
    if how == "none":
        return
    if how == "kill":
        ctx.rt.kill(node)          # SIGKILL works on a frozen (SIGSTOPped) process too
    elif how == "stop":
        ctx.rt.resume(node)
        server.stop(ctx.rt, node, mode="immediate", timeout=10)
    elif how == "partition":
        ctx.rt.partition(node)
        faults = ctx.state.faults.setdefault(node, [])
        if "partition" not in faults:
            faults.append("partition")
    else:
        raise InvalidInput(f"unknown fencing {how!r}", f"use one of: {', '.join(FENCES)}")
    ctx.event(f"fence:{how}", node)


def last_seen(ctx: Ctx, old: str, now: float | None = None) -> LastSeen | None:
    """The old primary's last sampled position, as the lab's status, monitor or lag recorder
    recorded it (lab.model.state.primary_seen), if it is of this node and newer than the lab's
    last promotion (an older sighting may be of a history that a rewind has since discarded)."""
    s = lab_state.primary_seen(ctx.name)
    if s is None or s.node != old or not s.lsn:
        return None
    promoted = max((e["t"] for e in ctx.state.events if e.get("kind") == "promote"), default=0.0)
    if s.t < promoted:
        return None
    return LastSeen(s.node, s.lsn, s.timeline, max(0.0, (now or time.time()) - s.t), s.source)


def failover(ctx: Ctx, to: str | None = None, *, allow_data_loss: bool = False,
             max_lag_bytes: int = DEFAULT_MAX_LAG_BYTES, fence_with: str = "none",
             known_position: str | None = None, known_timeline: int | None = None,
             seen: LastSeen | None = None, force: bool = False,
             sessions: Mapping[str, psycopg.Connection] | None = None) -> Failover:
    """The primary is gone: ask every standby for its position, elect, fence, promote, reconfigure.
    The data-loss guard compares the winner with the old primary's last sampled position: `seen`
    (or `known_position`), else what the lab last recorded of it. Raises FailoverRefused (with the
    decision table) when no candidate is acceptable. Afterwards, if the old primary's server is
    down, the WAL really lost is read from its data directory (lab.failover.truth). `sessions`:
    open connections to standbys (a monitor's), asked instead of fresh ones: a connection costs
    more than the question, and the failover is racing the clients' timeouts."""
    if fence_with not in FENCES:
        raise InvalidInput(f"unknown fencing {fence_with!r}", f"use one of: {', '.join(FENCES)}")
    t0 = time.time()
    old = ctx.state.primary
    if not force and old:
        p = probe(ctx, old)
        if p.reachable and p.in_recovery is False:
            raise InvalidInput(f"the primary {old} answers", "use `pglab switchover` for a planned change "
                               "(or force a failover with --force)")
    cands = probe_all(ctx, [n for n in ctx.state.nodes if n != old], sessions)
    if seen is None and known_position:
        seen = LastSeen(old or "the old primary", known_position, known_timeline, None, "the caller")
    if seen is None and old:
        seen = last_seen(ctx, old)
    decision = elect(cands, max_lag_bytes=max_lag_bytes, allow_data_loss=allow_data_loss, to=to, seen=seen)
    t_elected = time.time()
    ctx.event("election", decision.winner, refused=decision.refused, reason=decision.reason,
              loss=decision.loss_line, estimate_bytes=decision.data_loss_bytes)
    if decision.refused or not decision.winner:
        raise FailoverRefused(decision)
    t_fenced = None
    if fence_with != "none" and old:
        fence(ctx, old, fence_with)
        t_fenced = time.time()
    dead = {old} | {c.name for c in cands if not c.reachable}
    prom = promote(ctx, decision.winner, old_primary=old, dead=dead,
                   session=(sessions or {}).get(decision.winner))
    truth = truth_mod.read(ctx, old, decision.chosen_position) if old else None
    ctx.event("failover", decision.winner, old_primary=old, fence=fence_with,
              estimate_bytes=decision.data_loss_bytes, true_bytes=truth.bytes if truth else None,
              true_commits=truth.commits if truth else None)
    return Failover(decision, prom, fence_with, t0, t_fenced, t_elected, decision.data_loss_bytes,
                    truth.bytes if truth else None, truth.commits if truth else None, truth)


# ---- switchover (planned) -----------------------------------------------------------------------
def _checkpoint_lsn(ctx: Ctx, node: str) -> str:
    out = ctx.rt.run(node, ["pg_controldata", "-D", ctx.rt.paths(node).data], timeout=30).out
    for line in out.splitlines():
        if line.startswith("Latest checkpoint location:"):
            return line.split(":", 1)[1].strip()
    raise NodeFailed(f"pg_controldata on {node} shows no checkpoint location", details=out[-800:])


def switchover(ctx: Ctx, to: str | None = None, *, timeout: float = 30) -> Switchover:
    """Planned change of leader with zero lost writes:
    1. block writes: stop the old primary cleanly (`-m fast`); its walsenders send everything up to
       the shutdown checkpoint and wait for the standbys to confirm before the server exits;
    2. wait until the target has replayed past that checkpoint: it has every committed write;
    3. promote it and re-point the other standbys;
    4. restart the old primary as a standby of the new one (it stopped cleanly on the fork point,
       so no rewind is needed)."""
    old = ctx.state.primary
    steps: list[tuple[str, float]] = []
    if to is None:
        # a synchronous standby first: it is never behind on acknowledged commits, and after the
        # clean stop every streaming standby catches up anyway
        rows = cluster.replication_rows(ctx, old)
        sync = sorted(n for n, (state, sync_state) in rows.items() if state == "streaming" and sync_state in ("sync", "quorum"))
        to = sync[0] if sync else None
    if to is None:
        cands = probe_all(ctx, [n for n in ctx.state.nodes if n != old])
        d = elect(cands, max_lag_bytes=1 << 62)
        if not d.winner:
            raise FailoverRefused(d)
        to = d.winner
    if to == old or to not in ctx.state.nodes:
        raise InvalidInput(f"cannot switch over to {to!r}", f"choose a standby of {old}")
    target = probe(ctx, to)
    if not target.reachable or not target.in_recovery:
        raise InvalidInput(f"{to} is not a reachable standby", target.error or "check `pglab status`")
    if to not in reconfigure.streaming(ctx, old):
        raise InvalidInput(f"{to} does not stream from {old}", "a switchover target must be streaming")
    t0 = time.time()
    server.stop(ctx.rt, old, mode="fast", timeout=int(timeout))
    steps.append(("old primary stopped", time.time() - t0))
    ckpt = _checkpoint_lsn(ctx, old)

    def replayed() -> bool:
        r = sql.scalar(ctx.state, to, "SELECT pg_last_wal_replay_lsn()::text")
        return (lsn_mod.parse(r) or 0) > (lsn_mod.parse(ckpt) or 0)
    wait_until(replayed, timeout=timeout, what=f"{to} to replay the shutdown checkpoint {ckpt} of {old}",
               interval=0.01)
    steps.append(("target replayed shutdown checkpoint", time.time() - t0))
    prom = promote(ctx, to, old_primary=old, dead={old}, sync_wait=5.0)
    steps.append(("promoted", prom.t_promoted - t0))
    # writes are possible again once pg_promote() returned (the re-pointing after it does not block
    # writes); the client-observed gap is measured by the ledger writer in drills and the bench
    window = prom.t_promoted - t0
    # demote the old primary: a standby of the new one, through its own slot
    demoted = False
    try:
        reconfigure.ensure_slot(ctx, to, old)
        cluster.write_config(ctx, old, upstream=to, extra=reconfigure.STANDBY_EXTRA)
        server.start(ctx.rt, old)
        reconfigure.restore_sync(ctx, to, wait=10.0, expect=[n for n in ctx.state.nodes if n != to])
        demoted = old in reconfigure.streaming(ctx, to)
    except LabError as e:
        ctx.event("switchover:demote-failed", old, error=e.line())
    steps.append(("old primary streams from new" if demoted else "old primary not streaming", time.time() - t0))
    ctx.event("switchover", to, old_primary=old, window_s=round(window, 3))
    return Switchover(old, to, ckpt, prom, window, demoted, tuple(steps))


def current_sync(ctx: Ctx) -> SyncSpec:
    return reconfigure.current_spec(ctx, ctx.state.primary)
