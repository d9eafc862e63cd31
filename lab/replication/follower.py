"""Follower failure and catch-up, measured on a running lab.

- catchup: with writes running, take a standby away for T seconds (stop/kill/pause/partition),
  bring it back, and measure the WAL it missed, the time until it is caught up again, and that it
  resumed from its slot (same system identifier and timeline, slot restart_lsn moved on, no
  re-clone). While it is away, its slot makes the primary keep WAL: we report how much, and the
  guard (max_slot_wal_keep_size, the slot's wal_status / safe_wal_size).
- noslot: the same outage without a slot and with little WAL kept: the primary recycles the
  segments the standby needs, the standby logs "requested WAL segment … has already been
  removed" forever, status marks it unrecoverable, and a re-clone is the way back.
- sync_failure: a synchronous standby goes away; commits block (the server's own view: backends
  waiting on SyncRep), a cancelled wait yields ok_unreplicated (COMMIT "succeeds" with a
  WARNING), and the remedies (quorum, a second candidate, switching to async) are measured under
  the same outage.

The write load is the real pgbench (lab.workload.pgbench) in a thread: its per-transaction log
gives the exact time each COMMIT was acknowledged, which is what "writes blocked" means.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import psycopg

from lab.cluster import nodes as cluster, faults, server, sql
from lab.model import lsn
from lab.cluster.context import Ctx
from lab.replication import syncpolicy
from lab.errors import InvalidInput, LabError
from lab.cluster.status import Role, snapshot, wal_gone
from lab.model.syncspec import SyncSpec, parse_sync, slot_name
from lab.wait import wait_until
from lab.workload import pgbench

MB = 1024 * 1024


# ---- synchronous_standby_names, live ---------------------------------------------------------------
def set_sync(ctx: Ctx, text: str | SyncSpec) -> SyncSpec:
    """Change synchronous_standby_names on the primary now (reload, no restart) and remember it in
    the lab's saved topology, so that later reconfigurations (failover, re-clone) keep it."""
    standbys = ctx.state.standbys
    spec = text if isinstance(text, SyncSpec) else parse_sync(text, standbys)
    cluster.set_sync(ctx, ctx.state.primary, spec)
    syncpolicy.put(ctx, spec)
    want = spec.render()
    wait_until(lambda: sql.scalar(ctx.state, ctx.state.primary, "SHOW synchronous_standby_names") == want,
               timeout=10, what="the primary to load the new synchronous_standby_names")
    ctx.event("sync", None, spec=want or "none")
    return spec


def current_sync(ctx: Ctx) -> SyncSpec:
    standbys = ctx.state.standbys
    return parse_sync(sql.scalar(ctx.state, ctx.state.primary, "SHOW synchronous_standby_names"), standbys)


# ---- a write load in the background ----------------------------------------------------------------
class Load:
    """pgbench's single-row INSERT in a thread until stop() (bounded by max_s)."""

    def __init__(self, ctx: Ctx, *, clients: int = 2, max_s: float = 60):
        self.ctx, self.clients, self.max_s = ctx, clients, max_s
        self._stop = threading.Event()
        self.result: pgbench.PgbenchResult | None = None
        self.error: BaseException | None = None
        self._t = threading.Thread(target=self._run, daemon=True, name="pglab-load")

    def _run(self) -> None:
        try:
            self.result = pgbench.run(self.ctx, clients=self.clients, duration=self.max_s, insert=True,
                                      stop=self._stop, keep_tx=True)
        except BaseException as e:  # noqa: BLE001 - reported by stop()
            self.error = e

    def __enter__(self) -> "Load":
        pgbench.prepare_insert_table(self.ctx)
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> pgbench.PgbenchResult:
        self._stop.set()
        self._t.join(self.max_s + 30)
        if self.error:
            raise self.error
        assert self.result is not None
        return self.result


def _primary_lsn(ctx: Ctx) -> int:
    return lsn.parse(sql.scalar(ctx.state, ctx.state.primary, "SELECT pg_current_wal_lsn()::text")) or 0


def _slot(ctx: Ctx, node: str) -> tuple | None:
    rows = sql.query(ctx.state, ctx.state.primary,
                     "SELECT restart_lsn::text, wal_status, safe_wal_size, "
                     "pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint "
                     "FROM pg_replication_slots WHERE slot_name = %s", (slot_name(node),))
    return rows[0] if rows else None


def _sysid(ctx: Ctx, node: str) -> int:
    return int(sql.scalar(ctx.state, node, "SELECT system_identifier FROM pg_control_system()"))


# ---- catch-up through the slot -----------------------------------------------------------------
@dataclass(frozen=True)
class CatchupResult:
    node: str
    fault: str
    outage_s: float
    missed_bytes: int                 # WAL written on the primary that the standby did not have at heal time
    catchup_s: float | None           # heal -> replay lag under the threshold (None: not within timeout)
    threshold_bytes: int
    retained_max_bytes: int | None    # WAL the primary kept for the standby's slot while it was away
    max_slot_wal_keep_size: str       # the guard: -1 means no limit (a slot may fill the disk)
    wal_status: str | None            # reserved / extended / unreserved / lost, while away
    safe_wal_size: int | None
    same_system: bool                 # same system identifier: not a new base backup
    same_timeline: bool
    slot_advanced: bool               # the slot's restart_lsn moved past where it stopped
    recloned: bool                    # a re-clone happened during the drill (must be False)
    load_tps: float


def catchup(ctx: Ctx, node: str, *, fault: str = "stop", outage: float = 3.0, threshold_bytes: int = 256 * 1024,
            clients: int = 2, timeout: float = 60, rate: str = "1mbit") -> CatchupResult:
    if node == ctx.state.primary:
        raise InvalidInput(f"{node} is the primary", "take a standby away, e.g. s2")
    f = faults.parse_fault(fault)
    before = snapshot(ctx).node(node)
    if before.role != Role.STANDBY or before.stream_state != "streaming":
        raise InvalidInput(f"{node} is not a streaming standby ({before.role.value})", "heal or re-clone it first")
    sysid, tl = _sysid(ctx, node), before.timeline
    guard = sql.scalar(ctx.state, ctx.state.primary, "SHOW max_slot_wal_keep_size")
    n_events = len(ctx.state.events)
    retained, wal_status, safe = None, None, None
    with Load(ctx, clients=clients, max_s=outage + timeout + 10) as load:
        time.sleep(0.5)                              # the load is running before the fault
        faults.inject(ctx, node, f, rate=rate)
        t_fault = time.monotonic()
        stopped_at = None
        while time.monotonic() - t_fault < outage:
            s = _slot(ctx, node)
            if s:
                stopped_at = stopped_at or s[0]
                retained = max(retained or 0, int(s[3] or 0))
                wal_status, safe = s[1], s[2]
            time.sleep(0.2)
        s = _slot(ctx, node)
        head = _primary_lsn(ctx)
        pos_at_heal = lsn.parse(s[0]) if s else lsn.parse(stopped_at)
        faults.heal(ctx, node, f.value)
        t_heal = time.monotonic()

        def caught_up() -> bool:
            n = snapshot(ctx).node(node)
            return (n.stream_state == "streaming" and n.replay_lag_bytes is not None
                    and n.replay_lag_bytes <= threshold_bytes)
        try:
            wait_until(caught_up, timeout=timeout, what=f"{node} to catch up", interval=0.1)
            catch = time.monotonic() - t_heal
        except LabError:
            catch = None
        res = load.stop()
    after = _slot(ctx, node)
    recloned = any(e.get("kind") == "reclone" and e.get("node") == node for e in ctx.state.events[n_events:])
    return CatchupResult(
        node=node, fault=f.value, outage_s=t_heal - t_fault, missed_bytes=lsn.diff(head, pos_at_heal) or 0,
        catchup_s=catch, threshold_bytes=threshold_bytes, retained_max_bytes=retained,
        max_slot_wal_keep_size=str(guard), wal_status=wal_status, safe_wal_size=safe,
        same_system=_sysid(ctx, node) == sysid, same_timeline=snapshot(ctx).node(node).timeline == tl,
        slot_advanced=bool(after and pos_at_heal is not None and (lsn.parse(after[0]) or 0) > pos_at_heal),
        recloned=recloned, load_tps=res.tps)


# ---- no slot, little WAL kept: unrecoverable ----------------------------------------------------
@dataclass(frozen=True)
class NoSlotResult:
    node: str
    wal_keep_size: str
    segment_needed: str               # the WAL file the standby needed when it went away
    segments_written: int             # segment switches it took until the primary removed that file
    unrecoverable: bool               # status marked the standby unrecoverable
    log_line: str | None              # what the standby's log says
    recloned: bool
    reclone_s: float | None
    streaming_after: bool


def detach_slot(ctx: Ctx, node: str) -> None:
    """Make a standby stream without its slot (and drop the slot): the primary no longer keeps WAL
    for it. A re-clone (cluster.reclone) gives it a slot again."""
    cluster.write_config(ctx, node, upstream=ctx.state.primary, extra={"primary_slot_name": ""})
    sql.query(ctx.state, node, "SELECT pg_reload_conf()")
    cluster.force_drop_slot(ctx, ctx.state.primary, node)
    ctx.event("slot-dropped", node)


def noslot(ctx: Ctx, node: str, *, reclone: bool = True, max_segments: int = 64, timeout: float = 30) -> NoSlotResult:
    primary = ctx.state.primary
    if node == primary:
        raise InvalidInput(f"{node} is the primary", "pick a standby")
    keep = str(sql.scalar(ctx.state, primary, "SHOW wal_keep_size"))
    detach_slot(ctx, node)
    replay = sql.scalar(ctx.state, node, "SELECT pg_last_wal_replay_lsn()::text")
    faults.inject(ctx, node, faults.Fault.STOP)
    needed = sql.scalar(ctx.state, primary, "SELECT pg_walfile_name(%s::pg_lsn)", (replay,))
    # write and switch WAL segments until the primary's checkpoint has removed the one it needs;
    # synchronous_commit = local: the standby may be the synchronous one, and it is away
    written = 0
    with sql.connect(ctx.state, primary) as conn:
        conn.execute("SET synchronous_commit = local")
        conn.execute("CREATE TABLE IF NOT EXISTS pglab_wal_churn (x int)")
        while written < max_segments:
            if not conn.execute("SELECT 1 FROM pg_ls_waldir() WHERE name = %s", (needed,)).fetchone():
                break
            for _ in range(4):
                conn.execute("INSERT INTO pglab_wal_churn VALUES (1)")
                conn.execute("SELECT pg_switch_wal()")
                written += 1
            conn.execute("CHECKPOINT")
    faults.heal(ctx, node, faults.Fault.STOP)

    def stuck() -> str | None:
        n = snapshot(ctx).node(node)
        return n.error if n.unrecoverable else None
    try:
        line = wait_until(stuck, timeout=timeout, what=f"{node} to report the missing WAL", interval=0.2)
    except LabError:
        line = wal_gone(ctx, node)
    unrecoverable = line is not None
    if unrecoverable:
        ctx.event("unrecoverable", node)
    took = None
    if reclone:
        t0 = time.monotonic()
        cluster.reclone(ctx, node)
        cluster.wait_streaming(ctx, primary, [node], current_sync(ctx))
        took = time.monotonic() - t0
    st = snapshot(ctx).node(node)
    return NoSlotResult(node, keep, needed, written, unrecoverable, line, reclone, took,
                        st.stream_state == "streaming" and not st.unrecoverable)


# ---- a synchronous follower fails ----------------------------------------------------------------
REMEDIES = ("none", "any", "first2", "async")
_CANCEL_WARNING = "canceling wait for synchronous replication"


@dataclass(frozen=True)
class SyncFailureResult:
    remedy: str                       # none | any | first2 | async
    spec: str                         # synchronous_standby_names during the outage
    node: str                         # the synchronous standby that went away
    outage_s: float
    tps_before: float                 # acknowledged commits per second before the outage
    tps_during: float                 # … while it was away
    max_waiting: int                  # most backends waiting on SyncRep at once
    longest_wait_s: float             # the longest such wait seen
    cancel_outcome: str | None        # ok_unreplicated when a cancelled wait returned with the WARNING
    cancel_warning: str | None
    resume_s: float | None            # heal -> first acknowledged commit (remedy none)
    sync_during: tuple[tuple[str, str], ...]   # (standby, sync_state) while it was away
    unprotected_s: float | None       # remedy async: writes acknowledged without a synchronous copy
    acked_unprotected: int | None


def _waiting(ctx: Ctx) -> tuple[int, float]:
    row = sql.query(ctx.state, ctx.state.primary,
                    "SELECT count(*), coalesce(max(extract(epoch FROM now() - state_change)), 0)::float8 "
                    "FROM pg_stat_activity WHERE wait_event = 'SyncRep'")[0]
    return int(row[0]), float(row[1])


def cancelled_commit(ctx: Ctx, after_s: float = 0.5) -> tuple[str, str | None]:
    """One INSERT whose wait for the synchronous standby is cancelled (pg_cancel_backend, as an
    impatient client or pooler would). COMMIT then returns success with a WARNING: the row is
    committed locally, maybe not replicated. Capturing that notice is what tells ok_unreplicated
    from ok. (statement_timeout can't do it: the server disarms it before the commit wait.)"""
    notices: list[str] = []
    with sql.connect(ctx.state, ctx.state.primary) as conn:
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        pid = conn.info.backend_pid

        def cancel() -> None:
            time.sleep(after_s)
            sql.query(ctx.state, ctx.state.primary, "SELECT pg_cancel_backend(%s)", (pid,))
        t = threading.Thread(target=cancel, daemon=True)
        t.start()
        try:
            conn.execute("INSERT INTO pglab_cancel_probe DEFAULT VALUES")
            outcome = "ok"
        except psycopg.errors.QueryCanceled:
            outcome = "fail"      # cancelled before COMMIT: definitely not committed
        t.join()
    warn = next((n for n in notices if _CANCEL_WARNING in n), None)
    return ("ok_unreplicated" if warn and outcome == "ok" else outcome), warn


def sync_failure(ctx: Ctx, *, remedy: str = "none", node: str | None = None, other: str | None = None,
                 outage: float = 3.0, clients: int = 2, switch_after: float = 1.0,
                 fault: str = "stop") -> SyncFailureResult:
    """Take the synchronous standby away for `outage` seconds under a write load and measure.
    remedy: none = FIRST 1 (node); any = ANY 1 (node, other); first2 = FIRST 1 (node, other);
    async = FIRST 1 (node) and, after switch_after seconds of blocked writes, the lab switches to ''."""
    if remedy not in REMEDIES:
        raise InvalidInput(f"unknown remedy {remedy!r}", f"use one of {', '.join(REMEDIES)}")
    standbys = ctx.state.standbys
    node = node or standbys[0]
    other = other or next((s for s in standbys if s != node), None)
    if remedy in ("any", "first2") and not other:
        raise InvalidInput(f"remedy {remedy} needs a second standby", "bring the lab up with --standbys 2")
    spec = {"none": f"FIRST 1 ({node})", "async": f"FIRST 1 ({node})",
            "any": f"ANY 1 ({node}, {other})", "first2": f"FIRST 1 ({node}, {other})"}[remedy]
    original = current_sync(ctx)
    # made before the outage: DDL commits wait for the synchronous standby like any other commit
    sql.query(ctx.state, ctx.state.primary, "CREATE TABLE IF NOT EXISTS pglab_cancel_probe (at timestamptz DEFAULT now())")
    set_sync(ctx, spec)
    cluster.wait_streaming(ctx, ctx.state.primary, [s for s in standbys if s in (node, other)], current_sync(ctx))
    max_wait, longest, cancel, warn, sync_during = 0, 0.0, None, None, ()
    t_async = t_protected = None
    try:
        with Load(ctx, clients=clients, max_s=outage + 60) as load:
            time.sleep(1.0)
            faults.inject(ctx, node, fault)
            t_fault_wall = time.time()       # after the fault is in force (a stop takes a moment)
            t0 = time.monotonic()
            while time.monotonic() - t0 < outage:
                n, w = _waiting(ctx)
                max_wait, longest = max(max_wait, n), max(longest, w)
                if remedy == "async" and t_async is None and time.monotonic() - t0 >= switch_after:
                    set_sync(ctx, "none")
                    t_async = time.time()
                if remedy == "none" and cancel is None and time.monotonic() - t0 >= min(1.0, outage / 2):
                    cancel, warn = cancelled_commit(ctx)
                if not sync_during and time.monotonic() - t0 >= min(1.0, outage / 2):
                    rows = sql.query(ctx.state, ctx.state.primary,
                                     "SELECT application_name, sync_state FROM pg_stat_replication")
                    sync_during = tuple(sorted((r[0], r[1]) for r in rows))
                time.sleep(0.1)
            t_heal_wall = time.time()
            faults.heal(ctx, node, fault)
            if remedy == "async":
                # protection comes back when the standby streams again and the rule is restored
                cluster.wait_streaming(ctx, ctx.state.primary, [node], parse_sync("none", standbys))
                set_sync(ctx, spec)
                cluster.wait_streaming(ctx, ctx.state.primary, [node], parse_sync(spec, standbys))
                t_protected = time.time()
            time.sleep(1.0)
            res = load.stop()
    finally:
        if faults.active(ctx, node) or not ctx.rt.postmaster_running(node):
            faults.heal(ctx, node)
        set_sync(ctx, original)
    after = [end for end, _ in res.tx if end >= t_heal_wall]
    before = res.acked_between(t_fault_wall - 1.0, t_fault_wall)
    during = res.acked_between(t_fault_wall + 0.05, t_heal_wall)
    return SyncFailureResult(
        remedy=remedy, spec=spec, node=node, outage_s=t_heal_wall - t_fault_wall, tps_before=before / 1.0,
        tps_during=during / max(1e-9, t_heal_wall - t_fault_wall - 0.05), max_waiting=max_wait,
        longest_wait_s=longest, cancel_outcome=cancel, cancel_warning=warn,
        resume_s=(after[0] - t_heal_wall) if after and remedy == "none" else None, sync_during=sync_during,
        unprotected_s=(t_protected - t_async) if t_async and t_protected else None,
        acked_unprotected=res.acked_between(t_async, t_protected) if t_async and t_protected else None)


def server_log_mentions(ctx: Ctx, node: str, text: str) -> bool:
    return text in server.log_tail(ctx.rt, node, 200)
