"""A fresh snapshot of every node: role, timeline, LSNs, sync state, lag per stage, slots."""
from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from enum import Enum

import psycopg

from lab.model import lsn
from lab.model import state as lab_state
from lab.cluster import sql
from lab.cluster.context import Ctx
from lab.cluster.server import log_tail
from lab.errors import InvalidInput


class Role(str, Enum):
    PRIMARY = "primary"
    STANDBY = "standby"
    DOWN = "down"             # no server process
    UNREACHABLE = "unreachable"  # a process, but no answer (paused, partitioned)


@dataclass(frozen=True)
class NodeStatus:
    name: str
    role: Role
    timeline: int | None = None
    current_lsn: str | None = None     # on a primary: pg_current_wal_lsn()
    receive_lsn: str | None = None     # on a standby: pg_last_wal_receive_lsn()
    replay_lsn: str | None = None      # on a standby: pg_last_wal_replay_lsn()
    upstream: str | None = None        # the primary it streams from
    stream_state: str | None = None    # pg_stat_replication.state seen from the upstream
    sync_state: str | None = None      # sync / async / quorum / potential
    slot: str | None = None
    slot_active: bool | None = None
    slot_retained_bytes: int | None = None
    write_lag_bytes: int | None = None
    flush_lag_bytes: int | None = None
    replay_lag_bytes: int | None = None
    write_lag_s: float | None = None
    flush_lag_s: float | None = None
    replay_lag_s: float | None = None
    replay_paused: bool = False
    reply_age_s: float | None = None   # seconds since the standby's last reply, as its upstream saw it
    note: str | None = None            # "ahead of p1", "timeline 2, p1 on 1": the lag figures are not lag
    error: str | None = None
    # a running standby that cannot stream because the primary removed WAL it still needs
    # ("requested WAL segment … has already been removed"): only `pglab node reclone` helps
    unrecoverable: bool = False


@dataclass(frozen=True)
class LabStatus:
    lab: str
    runtime: str
    primary: str | None
    nodes: tuple[NodeStatus, ...]
    taken_at: float

    def node(self, name: str) -> NodeStatus:
        for n in self.nodes:
            if n.name == name:
                return n
        raise InvalidInput(f"no node {name!r} in this status of lab {self.lab}",
                           f"nodes are: {', '.join(n.name for n in self.nodes)}")

    @property
    def primaries(self) -> list[str]:
        return [n.name for n in self.nodes if n.role == Role.PRIMARY]

    def to_dict(self) -> dict:
        d = asdict(self)
        for n in d["nodes"]:
            n["role"] = n["role"].value
        return d


_NODE_SQL = """
SELECT pg_is_in_recovery(),
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END,
       pg_last_wal_receive_lsn()::text,
       pg_last_wal_replay_lsn()::text,
       CASE WHEN pg_is_in_recovery() THEN pg_get_wal_replay_pause_state() END,
       CASE WHEN pg_is_in_recovery()
            THEN coalesce((SELECT received_tli FROM pg_stat_wal_receiver),
                          (SELECT timeline_id FROM pg_control_checkpoint()))
            ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END
"""
# reply age: how long ago the standby last told its upstream where it is. The primary's own WAL
# position is read in the same statement, after the rows (a set-returning function is read
# first), so no standby position in a row can be past it: bytes behind are never a race.
_REPL_SQL = """
SELECT application_name, state, sync_state, write_lsn::text, flush_lsn::text, replay_lsn::text,
       extract(epoch FROM write_lag)::float8, extract(epoch FROM flush_lag)::float8,
       extract(epoch FROM replay_lag)::float8,
       extract(epoch FROM clock_timestamp() - reply_time)::float8,
       pg_current_wal_lsn()::text
FROM pg_stat_replication
"""
_SLOT_SQL = """
SELECT slot_name, active, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint
FROM pg_replication_slots WHERE slot_type = 'physical'
"""

# How long the view waits for a node. A frozen node (SIGSTOP, docker pause) accepts the TCP
# connection in the kernel and then never answers; libpq's connect_timeout cannot go below 2 s.
# So every node is probed in its own thread and the view waits PROBE_TIMEOUT_S, not 2 s.
PROBE_TIMEOUT_S = 1.0
# ... except for a node its upstream heard from within LIVE_REPLY_S (wal_receiver_status_interval
# is 1 s in a lab, so a live standby replies at least that often): it is alive and merely slow
# (a loaded machine), so it gets the full connect timeout rather than being called unreachable.
LIVE_REPLY_S = 1.5
# A reply older than this is not a live standby's (it replies at least every 1 s)
STALE_REPLY_S = 1.2
CONNECT_TIMEOUT_S = 2


def _probe(ctx: Ctx, node: str) -> dict:
    try:
        with sql.connect(ctx.state, node, connect_timeout=CONNECT_TIMEOUT_S) as conn:
            asked = time.time()
            row = conn.execute(_NODE_SQL).fetchone()
            out = {"recovery": row[0], "current": row[1], "receive": row[2], "replay": row[3],
                   "paused": row[4] in ("paused", "pause requested"), "timeline": row[5], "asked": asked}
            if not row[0]:
                out["repl"] = conn.execute(_REPL_SQL).fetchall()
                out["slots"] = conn.execute(_SLOT_SQL).fetchall()
            return out
    except psycopg.Error as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return {"error": msg}


def _probe_all(ctx: Ctx, names: list[str], timeout: float) -> dict[str, dict]:
    """Probe every node in parallel; a node that has not answered after `timeout` seconds is
    reported as such. Daemon threads: a probe stuck on a frozen node ends by itself (its connect
    timeout, or the node's resumption) and never holds up the caller, nor its exit."""
    out: dict[str, dict] = {}

    def run(n: str) -> None:
        out[n] = _probe(ctx, n)

    threads = {n: threading.Thread(target=run, args=(n,), name=f"pglab-probe-{n}", daemon=True) for n in names}
    t0 = time.monotonic()
    for t in threads.values():
        t.start()
    for t in threads.values():
        t.join(max(0.0, t0 + timeout - time.monotonic()))
    late = [n for n in names if n not in out]
    if late:
        # a late node that its upstream heard from just now is alive: give it its full connect time
        heard = {ctx.state.node_of(r[0]): r[9] for p in dict(out).values() if "error" not in p and not p["recovery"]
                 for r in p["repl"]}
        for n in late:
            age = heard.get(n)
            if age is not None and age < LIVE_REPLY_S:
                threads[n].join(max(0.0, t0 + CONNECT_TIMEOUT_S + 0.5 - time.monotonic()))
    # a copy: a probe that answers from now on must not change what this snapshot decided
    got = dict(out)
    waited = time.monotonic() - t0
    res: dict[str, dict] = {}
    for n in names:
        p = dict(got.get(n) or {"error": f"no answer within {waited:.1f} s", "late": True})
        if "error" in p:
            p["running"] = ctx.rt.postmaster_running(n)
        res[n] = p
    return res


def snapshot(ctx: Ctx, *, timeout: float = PROBE_TIMEOUT_S) -> LabStatus:
    names = list(ctx.state.nodes)
    probes = _probe_all(ctx, names, timeout)
    taken = time.time()
    primaries = [n for n, p in probes.items() if "error" not in p and not p["recovery"]]
    # who streams from whom, as each primary sees it
    seen: dict[str, tuple[str, tuple]] = {}
    slots: dict[str, tuple] = {}
    for p in primaries:
        for r in probes[p]["repl"]:
            seen[ctx.state.node_of(r[0])] = (p, r)
        for s in probes[p]["slots"]:
            slots.setdefault(ctx.state.node_of(s[0]).replace("-", "_"), s)
    recorded = ctx.state.primary
    main = recorded if recorded in primaries else (primaries[0] if primaries else None)
    if recorded in primaries:
        p = probes[recorded]
        lab_state.record_primary_seen(ctx.name, lab_state.PrimarySeen(recorded, p["current"], p["timeline"],
                                                                      p["asked"], "pglab status"))
    nodes = []
    for n in names:
        p = probes[n]
        slot_row = slots.get(n.replace("-", "_"))
        slot_kw = dict(slot=slot_row[0] if slot_row else None, slot_active=slot_row[1] if slot_row else None,
                       slot_retained_bytes=int(slot_row[2]) if slot_row and slot_row[2] is not None else None)
        upstream, r = seen.get(n, (None, None))
        if "error" in p:
            role = Role.UNREACHABLE if p["running"] else Role.DOWN
            # a standby that is away still holds WAL on the primary through its slot: show how much
            kw = {}
            if r:
                # the node does not answer, but its upstream still streams to it (a slow link, a
                # frozen process): the upstream's view is the best figure there is
                kw = dict(upstream=upstream, **_stream_figures(r))
            elif slot_kw["slot_retained_bytes"] is not None:
                kw = _slot_figures(slot_kw["slot_retained_bytes"])
            nodes.append(NodeStatus(n, role, error=p["error"], **slot_kw, **kw))
            continue
        if not p["recovery"]:
            nodes.append(NodeStatus(n, Role.PRIMARY, timeline=p["timeline"], current_lsn=p["current"]))
            continue
        head_src = upstream or main
        if r:
            kw = _stream_figures(r, p["replay"])
        else:
            # not streaming: its own replay position against the primary's. A standby cannot get
            # past what it received, so a negative figure is real (not a race): it is ahead
            kw = {"replay_lag_bytes": lsn.diff(probes[head_src]["current"] if head_src else None, p["replay"])}
            if slot_kw["slot_retained_bytes"] is not None:
                kw.update(flush_lag_bytes=slot_kw["slot_retained_bytes"])
            gone = wal_gone(ctx, n)
            if gone:
                kw.update(unrecoverable=True, error=gone)
        if head_src and p["timeline"] != probes[head_src]["timeline"]:
            kw["note"] = f"timeline {p['timeline']}, {head_src} on {probes[head_src]['timeline']}"
        elif (kw.get("replay_lag_bytes") or 0) < 0:
            kw["note"] = f"ahead of {head_src}"
        nodes.append(NodeStatus(
            n, Role.STANDBY, timeline=p["timeline"], receive_lsn=p["receive"], replay_lsn=p["replay"],
            upstream=upstream, replay_paused=p["paused"], **slot_kw, **kw))
    return LabStatus(ctx.name, ctx.state.runtime, main, tuple(nodes), taken)


def _slot_figures(retained: int) -> dict:
    """A standby its upstream no longer streams to (down, or frozen past wal_sender_timeout): its
    slot's restart_lsn is the last flush position it confirmed, so the WAL the slot holds is its
    flush lag as the primary last saw it. Where it wrote or replayed to is not known."""
    return {"flush_lag_bytes": retained}


def _stream_figures(r: tuple, own_replay: str | None = None) -> dict:
    """Lag per stage of one standby from its upstream's pg_stat_replication row `r`, against the
    upstream's WAL position read in the same statement (r[10]); `own_replay` is the standby's own
    pg_last_wal_replay_lsn() when it answered (fresher than what it last reported).

    Seconds: PostgreSQL computes write/flush/replay_lag only when the standby replies (the value
    says how old the position the standby confirmed already was then) and then leaves it as it
    was. A live standby replies on receiving WAL and at least every wal_receiver_status_interval
    (1 s in a lab), but reports replay progress only in those replies, and a frozen one never
    replies. While WAL waits at a stage and the standby's position there has not moved since its
    last reply, that position keeps getting older: shown = PostgreSQL's value + the reply's age
    (what PostgreSQL itself would show if the standby replied now). That holds when
    - the reply is older than a live standby's (STALE_REPLY_S): frozen, cut off, stuck; or
    - for replay, the standby itself says it has not replayed past what it reported (paused,
      recovery_min_apply_delay, a conflict).
    Otherwise the stage is moving and PostgreSQL's value (at most one interval old) stands."""
    age, head = r[9], r[10]
    stale = age is None or age > STALE_REPLY_S
    out = dict(stream_state=r[1], sync_state=r[2], reply_age_s=age)
    for stage, pos, pg in (("write", r[3], r[6]), ("flush", r[4], r[7]), ("replay", r[5], r[8])):
        stuck = stale
        if stage == "replay" and own_replay is not None:
            stuck = stale or lsn.parse(own_replay) == lsn.parse(pos)
            # the standby's own position is fresher; it cannot be past what the upstream had sent,
            # which is no further than `head` (read after its reply): a negative figure is a race
            b = lsn.diff(head, own_replay)
            pos = own_replay if b is not None and b >= 0 else head
        b = lsn.diff(head, pos)
        out[f"{stage}_lag_bytes"] = b
        out[f"{stage}_lag_s"] = _secs(pg, b, age if stuck else None)
    return out


def _secs(pg: float | None, lag_bytes: int | None, stuck_for: float | None) -> float | None:
    if lag_bytes is None:
        return None
    if lag_bytes < 0:
        return None     # ahead: no lag to speak of, and the note says so
    if lag_bytes == 0:
        # caught up: PostgreSQL's value is the time the last WAL took to get there (NULL once the
        # primary is idle and the standby has reported it caught up)
        return 0.0 if pg is None else pg
    if stuck_for is None:
        return pg
    return (pg or 0.0) + max(0.0, stuck_for)


WAL_GONE = "has already been removed"


def wal_gone(ctx: Ctx, node: str, lines: int = 40) -> str | None:
    """The log line saying the primary no longer has the WAL this standby needs, when that is the
    latest word on its replication (a later "started streaming" means it got over it)."""
    last = None
    for line in log_tail(ctx.rt, node, lines).splitlines():
        if WAL_GONE in line:
            last = line[line.find("requested WAL"):] if "requested WAL" in line else line
        elif "started streaming WAL" in line:
            last = None
    return last
