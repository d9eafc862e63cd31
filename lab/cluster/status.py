"""A fresh snapshot of every node: role, timeline, LSNs, sync state, lag per stage, slots."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
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
            ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END,
       extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8
"""
_REPL_SQL = """
SELECT application_name, state, sync_state, write_lsn::text, flush_lsn::text, replay_lsn::text,
       extract(epoch FROM write_lag)::float8, extract(epoch FROM flush_lag)::float8,
       extract(epoch FROM replay_lag)::float8
FROM pg_stat_replication
"""
_SLOT_SQL = """
SELECT slot_name, active, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint
FROM pg_replication_slots WHERE slot_type = 'physical'
"""


def _probe(ctx: Ctx, node: str) -> dict:
    try:
        with sql.connect(ctx.state, node, connect_timeout=2) as conn:
            asked = time.time()
            row = conn.execute(_NODE_SQL).fetchone()
            out = {"recovery": row[0], "current": row[1], "receive": row[2], "replay": row[3],
                   "paused": row[4] in ("paused", "pause requested"), "timeline": row[5],
                   "replay_age": row[6], "asked": asked}
            if not row[0]:
                out["repl"] = conn.execute(_REPL_SQL).fetchall()
                out["slots"] = conn.execute(_SLOT_SQL).fetchall()
            return out
    except psycopg.Error as e:
        running = ctx.rt.postmaster_running(node)
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return {"error": msg, "running": running}


def snapshot(ctx: Ctx) -> LabStatus:
    names = list(ctx.state.nodes)
    with ThreadPoolExecutor(max_workers=len(names)) as ex:
        probes = dict(zip(names, ex.map(lambda n: _probe(ctx, n), names)))
    taken = time.time()
    primaries = [n for n, p in probes.items() if "error" not in p and not p["recovery"]]
    # who streams from whom, as each primary sees it
    seen: dict[str, tuple[str, tuple]] = {}
    slots: dict[str, tuple] = {}
    for p in primaries:
        for r in probes[p]["repl"]:
            seen[r[0]] = (p, r)
        for s in probes[p]["slots"]:
            slots.setdefault(s[0], s)
    recorded = ctx.state.primary
    main = recorded if recorded in primaries else (primaries[0] if primaries else None)
    if recorded in primaries:
        p = probes[recorded]
        lab_state.record_primary_seen(ctx.name, lab_state.PrimarySeen(recorded, p["current"], p["timeline"],
                                                                      p["asked"], "pglab status"))
    nodes = []
    for n in names:
        p = probes[n]
        if "error" in p:
            role = Role.UNREACHABLE if p["running"] else Role.DOWN
            slot_row = slots.get(n.replace("-", "_"))
            # a standby that is away still holds WAL on the primary through its slot: show how much
            upstream, r = seen.get(n, (None, None))
            kw = {}
            if r:
                # the node does not answer, but its upstream still streams to it (a slow link, a
                # frozen process): the upstream's view is the best figure there is
                head = probes[upstream]["current"]
                kw = dict(upstream=upstream, stream_state=r[1], sync_state=r[2],
                          write_lag_bytes=lsn.diff(head, r[3]), flush_lag_bytes=lsn.diff(head, r[4]),
                          replay_lag_bytes=lsn.diff(head, r[5]), write_lag_s=r[6], flush_lag_s=r[7],
                          replay_lag_s=r[8])
            nodes.append(NodeStatus(n, role, error=p["error"], slot=slot_row[0] if slot_row else None,
                                    slot_active=slot_row[1] if slot_row else None,
                                    slot_retained_bytes=int(slot_row[2]) if slot_row and slot_row[2] is not None else None,
                                    **kw))
            continue
        if not p["recovery"]:
            nodes.append(NodeStatus(n, Role.PRIMARY, timeline=p["timeline"], current_lsn=p["current"]))
            continue
        upstream, r = seen.get(n, (None, None))
        slot_row = slots.get(n.replace("-", "_"))
        head_src = upstream or main
        head = probes[head_src]["current"] if head_src else None
        kw = {}
        if r:
            kw = dict(stream_state=r[1], sync_state=r[2],
                      write_lag_bytes=lsn.diff(head, r[3]), flush_lag_bytes=lsn.diff(head, r[4]),
                      write_lag_s=_secs(r[6], lsn.diff(head, r[3])), flush_lag_s=_secs(r[7], lsn.diff(head, r[4])),
                      replay_lag_s=_secs(r[8], lsn.diff(head, p["replay"])))
        if not r:
            gone = wal_gone(ctx, n)
            if gone:
                kw.update(unrecoverable=True, error=gone)
        behind = lsn.diff(head, p["replay"])
        if behind and p["replay_age"] is not None and p["replay_age"] > (kw.get("replay_lag_s") or 0):
            # PostgreSQL's replay_lag only moves when the standby replays; while it does not
            # (paused, delayed, stuck) the age of its last replayed commit is the honest figure
            kw["replay_lag_s"] = p["replay_age"]
        nodes.append(NodeStatus(
            n, Role.STANDBY, timeline=p["timeline"], receive_lsn=p["receive"], replay_lsn=p["replay"],
            upstream=upstream, replay_lag_bytes=lsn.diff(head, p["replay"]), replay_paused=p["paused"],
            slot=slot_row[0] if slot_row else None, slot_active=slot_row[1] if slot_row else None,
            slot_retained_bytes=int(slot_row[2]) if slot_row and slot_row[2] is not None else None, **kw))
    return LabStatus(ctx.name, ctx.state.runtime, main, tuple(nodes), taken)


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


def _secs(value: float | None, lag_bytes: int | None) -> float | None:
    # PostgreSQL reports NULL lag once a standby has caught up and the primary is idle
    if value is None and lag_bytes == 0:
        return 0.0
    return value
