"""The split-brain drill: the primary is cut off from the other nodes (and from a manager's
consensus store) while its clients (on this machine) still reach it; the lab's failover manager
replaces it by its own rules. With pglab's promotion (managers none and pglab, the drill playing the
operator) and no fencing, both leaders acknowledge writes and the histories diverge; with fencing
the old leader accepts nothing after the promotion; with synchronous replication its commits hang
(and a cancelled one is only committed locally). Patroni decides by itself: the isolated leader
cannot renew its key and demotes itself, the others take the key once it expires.

While the drill runs, probes write every PROBE_EVERY seconds to the old leader directly, to every
other node directly and through the routed DSN (the manager's proxy, else libpq's multi-host DSN),
each write bounded by a timeout: when each side last and first acknowledged a write is measured on
the client side, not taken from the manager.

Needs the `isolate` fault: Docker, or the local runtime with per-node network namespaces.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import psycopg

from lab.cluster import sql
from lab.cluster.context import Ctx
from lab.cluster.handle import Cluster
from lab.errors import InvalidInput, LabError, WaitTimeout
from lab.failover import offline
from lab.ha import manager
from lab.model.conninfo import client_dsn, role_dsn
from lab.model.names import cluster_name
from lab.wait import wait_until

TABLE = "pglab_split_brain"
PROBE_EVERY = 0.2            # seconds between the probes' writes on each side
TAKEOVER_TIMEOUT = 120.0     # a manager's own failover (Patroni: ttl) is well within this


@dataclass(frozen=True)
class Attempt:
    node: str
    id: str
    outcome: str          # ok, ok_unreplicated (commit cancelled while waiting for a sync standby), error
    latency_s: float
    t_ack: float | None = None    # wall clock when the outcome came back (ok only)
    side: str = "drill"           # drill (the numbered writes), old, others, routed (the probes)
    t_sent: float | None = None   # wall clock when the write was started


@dataclass(frozen=True)
class SplitBrainResult:
    old_primary: str
    new_primary: str
    fence: str
    synchronous: bool
    fenced_at: float | None            # when the fencing acted (None: not fenced)
    promoted_at: float | None          # when the new leader left recovery (as its manager tells it)
    attempts: tuple[Attempt, ...]
    acked_on_old_after_promotion: int  # writes the old leader acknowledged while another led
    # conflicting rows: ids written in the drill (acknowledged, committed locally only, or even
    # reported failed) that one leader has and the other lacks. None: that node could not be read
    only_on_old: tuple[str, ...] | None
    only_on_new: tuple[str, ...] | None
    primaries_after_heal: int
    old_read_from: str | None = None   # "server", "copy of its data directory", or None (unread)
    old_read_error: str | None = None
    manager: str = "none"
    failsafe: bool | None = None       # Patroni's failsafe_mode during the drill (None: not set by it)
    isolated_at: float | None = None   # when the isolate fault was in force (it returned)
    old_last_ack: float | None = None  # the old leader's last acknowledged write (None: it acked none)
    new_first_ack: float | None = None  # the first write another node acknowledged after the isolation
    routed_first_new_ack: float | None = None   # the first routed write another node acknowledged
    probes: int = 0
    # writes the old leader acknowledged (before or after the isolation) that the new leader lacks:
    # read on the new leader, so known even when the old one cannot be read. None: new unreadable
    old_acks_missing_on_new: tuple[str, ...] | None = None
    probes_stopped_at: float | None = None
    old_tried_after_new: bool = False   # the old leader was written to directly after the new one acked

    @property
    def window_still_open(self) -> bool:
        """Both leaders still acknowledged when the probes stopped: the window is a lower bound
        (with pglab's unfenced promotion it lasts until someone fences the old leader)."""
        t = self.probes_stopped_at
        return (t is not None and self.old_last_ack is not None and self.new_first_ack is not None
                and self.old_last_ack >= t - 4 * PROBE_EVERY - 1.0 and self.old_last_ack > self.new_first_ack)

    @property
    def old_stopped_s(self) -> float | None:
        """From the isolation to the old leader's last acknowledged write (≤ 0: none after it)."""
        return None if self.old_last_ack is None or self.isolated_at is None else self.old_last_ack - self.isolated_at

    @property
    def new_accepted_s(self) -> float | None:
        return None if self.new_first_ack is None or self.isolated_at is None else self.new_first_ack - self.isolated_at

    @property
    def split_brain_window_s(self) -> float | None:
        """How long both leaders acknowledged writes: 0 when the old one stopped before the new one
        began, or acknowledged nothing though it was asked after the new one did (as seen every
        PROBE_EVERY s); None (unknown) when the new one was never seen acknowledging, or the old
        one was not asked after it."""
        if self.new_first_ack is None:
            return None
        if self.old_last_ack is None:     # the old one acked nothing: 0 if it was asked meanwhile
            return 0.0 if self.old_tried_after_new else None
        if self.old_last_ack < self.new_first_ack and not self.old_tried_after_new:
            return None
        return max(0.0, self.old_last_ack - self.new_first_ack)


def _write(ctx: Ctx, node: str, rid: str, timeout: float, *, side: str = "drill", dsn: str | None = None,
           seen: dict[tuple[str, int], str] | None = None) -> Attempt:
    """One INSERT on `node` (or wherever `dsn` leads), cancelled after `timeout` (a commit waiting
    for a synchronous standby ignores statement_timeout); the server's warning tells a locally-only
    commit apart, and its cluster_name which node served a routed write."""
    warned: list[str] = []
    t0, t_sent = time.monotonic(), time.time()
    served, t_ack = node, None
    try:
        conn = psycopg.connect(dsn, autocommit=True, connect_timeout=2) if dsn else sql.connect(ctx.state, node, connect_timeout=2)
        with conn:
            conn.add_notice_handler(lambda d: warned.append(d.message_primary or ""))
            timer = threading.Timer(timeout, _cancel, (conn,))
            timer.start()
            try:
                row = conn.execute(f"INSERT INTO {TABLE} VALUES (%s, %s) RETURNING current_setting('cluster_name'), "
                                   "host(inet_server_addr()), inet_server_port()", (rid, node)).fetchone()
            finally:
                timer.cancel()
        t_ack = time.time()
        served = _served_by(ctx, *row, seen=seen) if dsn else node
        outcome = "ok_unreplicated" if any("synchronous replication" in w for w in warned) else "ok"
    except psycopg.Error:
        outcome = "error"
    return Attempt(served, rid, outcome, time.monotonic() - t0, t_ack if outcome == "ok" else None, side, t_sent)


def _cancel(conn: psycopg.Connection) -> None:
    try:
        conn.cancel_safe()
    except psycopg.Error:
        pass        # the server went away (killed, fenced) in the meantime: nothing left to cancel


def _served_by(ctx: Ctx, name: str | None, addr: str | None, port: int | None,
               seen: dict[tuple[str, int], str] | None = None) -> str:
    """The node that served a routed write: by its cluster_name where that names the node, else by
    the address it was reached at (Patroni sets one cluster_name for all; on Docker a node's
    address is the one each node told when asked directly, `seen`); "?" when nothing tells."""
    for n, a in ctx.state.nodes.items():
        if cluster_name(ctx.name, n) == name or (port == a.port and addr in (a.host, a.peer_host)):
            return n
    return (seen or {}).get((addr or "", port or 0), "?")


def _addresses(ctx: Ctx) -> dict[tuple[str, int], str]:
    """Each node's own idea of its address and port, asked directly (before any fault)."""
    out = {}
    for n in ctx.state.nodes:
        try:
            row = sql.query(ctx.state, n, "SELECT host(inet_server_addr()), inet_server_port()")[0]
        except (psycopg.Error, IndexError):
            continue
        if row[0] is not None:
            out[(row[0], row[1])] = n
    return out


class _Probes:
    """Writes every PROBE_EVERY s to the old leader, to each other node and through the routed DSN,
    each in its own thread so that a hanging commit does not delay the next probe (bounded: every
    write ends within its timeout plus the connect timeout)."""

    def __init__(self, ctx: Ctx, old: str, routed: str, timeout: float):
        self.ctx, self.old, self.routed, self.timeout = ctx, old, routed, timeout
        self.seen = _addresses(ctx)
        self.stop_event = threading.Event()
        self.out: list[Attempt] = []
        self._lock = threading.Lock()
        self._writers: list[threading.Thread] = []
        self._ticker = threading.Thread(target=self._run, daemon=True)

    def _one(self, node: str, rid: str, side: str, dsn: str | None = None) -> None:
        a = _write(self.ctx, node, rid, self.timeout, side=side, dsn=dsn, seen=self.seen)
        with self._lock:
            self.out.append(a)

    def _run(self) -> None:
        i = 0
        while not self.stop_event.wait(PROBE_EVERY):
            jobs = [(self.old, f"probe-old-{i}", "old", None)]
            jobs += [(n, f"probe-{n}-{i}", "others", None) for n in self.ctx.state.nodes if n != self.old]
            jobs.append((self.old, f"probe-routed-{i}", "routed", self.routed))
            for job in jobs:
                t = threading.Thread(target=self._one, args=job, daemon=True)
                t.start()
                self._writers.append(t)
            self._writers = [t for t in self._writers if t.is_alive()]
            i += 1

    def start(self) -> "_Probes":
        self._ticker.start()
        return self

    def stop(self) -> list[Attempt]:
        self.stop_event.set()
        self._ticker.join()
        for t in self._writers:
            t.join(self.timeout + 5)
        with self._lock:
            return list(self.out)


def _routed_dsn(ctx: Ctx) -> str:
    """Where a client of the lab writes: the manager's proxy (HAProxy), else libpq's multi-host DSN."""
    at = manager(ctx).endpoints().get("primary")
    if at:
        return client_dsn(at[0], at[1], str(ctx.state.pgpass_path), connect_timeout=2)
    return role_dsn(ctx.state, "primary")


def _ids(ctx: Ctx, node: str) -> set[str] | None:
    """The node's rows, over SQL; None (unknown, never empty) when it does not answer."""
    try:
        return {r[0] for r in sql.query(ctx.state, node, f"SELECT id FROM {TABLE}")}
    except psycopg.Error:
        return None


def _old_ids(ctx: Ctx, node: str) -> tuple[set[str] | None, str | None, str | None]:
    """The old leader's rows: over SQL if its server answers (a supervisor may be restarting it as
    a standby: a few seconds' grace), else from a copy of its data directory started alone on no
    network (lab.failover.offline). (ids, read from, error)."""
    try:
        def read() -> tuple[set[str]] | None:
            ids = _ids(ctx, node)
            return None if ids is None else (ids,)     # an empty set is an answer too
        got = wait_until(read, timeout=5 if ctx.rt.postmaster_running(node) else 0.1, what=f"{node} to answer",
                         interval=0.3)
        return got[0], "server", None
    except WaitTimeout:
        pass
    try:
        rows = offline.read_copy(ctx, node, f"SELECT id FROM {TABLE}")
        return set(rows), "copy of its data directory", None
    except LabError as e:
        return None, None, e.line()


def drill(ctx: Ctx, *, fence: str = "none", writes: int = 3, timeout: float = 2.0,
          failsafe: bool | None = None) -> SplitBrainResult:
    """Isolate the primary, let the manager replace it, write to both sides, read both, heal.
    `failsafe`: Patroni's failsafe_mode for the drill (restored afterwards)."""
    mgr = manager(ctx)
    mgr.check_split_brain(fence=fence, failsafe=failsafe)
    old = mgr.leader() or ctx.state.primary
    if not ctx.standbys:
        raise InvalidInput("a split brain needs a standby to promote", "bring the lab up with --standbys 1 or more")
    if not 0.1 <= timeout <= 30:
        raise InvalidInput(f"--timeout {timeout} is out of range", "use 0.1 to 30 s per write")
    with mgr.failsafe_for_drill(failsafe):
        return _run(ctx, mgr, old, fence, writes, timeout, failsafe)


def _run(ctx: Ctx, mgr, old: str, fence: str, writes: int, timeout: float, failsafe: bool | None) -> SplitBrainResult:
    ctx.state.primary = old
    with sql.connect(ctx.state, old) as conn:
        # a fresh table: an id left by an earlier drill would make this drill's write fail
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        conn.execute(f"CREATE TABLE {TABLE} (id text PRIMARY KEY, node text)")
        # what the old leader's commits wait for (the manager's setting, e.g. Patroni's synchronous_mode)
        synchronous = bool(conn.execute("SHOW synchronous_standby_names").fetchone()[0].strip())
    Cluster(ctx).wait_caught_up()
    probes = _Probes(ctx, old, _routed_dsn(ctx), min(timeout, 1.0)).start()
    isolated = healed = False
    try:
        t_fault = time.time()
        mgr.fault(old, "isolate")     # refused (Unsupported) without per-node namespaces: nothing to heal
        isolated = True
        t_iso = time.time()     # in force from here (on Docker, setting the routes takes a moment)
        attempts = [_write(ctx, old, f"old-before-{i}", timeout) for i in range(writes)]
        tk = mgr.take_over_isolated(old, fence=fence, t_fault=t_fault, timeout=TAKEOVER_TIMEOUT)
        new = tk.new_primary
        after = [_write(ctx, old, f"old-after-{i}", timeout) for i in range(writes)]
        attempts += after + [_write(ctx, new, f"new-{i}", timeout) for i in range(writes)]
        time.sleep(1.0)     # the probes see both sides after the takeover for a moment
        probed = probes.stop()
        t_stopped = time.time()
        # both sides read before healing: a supervisor rewinds the old leader once it is back
        (on_old, read_from, read_error), on_new = _old_ids(ctx, old), _ids(ctx, new)
        mgr.heal(old, "isolate")
        healed = True
        mgr.settle(old, timeout=180)
    finally:
        if not probes.stop_event.is_set():
            probes.stop()
        if isolated and not healed:
            mgr.heal(old, "isolate")
    every = attempts + probed
    acks = [a for a in every if a.outcome == "ok" and a.t_ack is not None]
    old_acks = [a.t_ack for a in acks if a.node == old]
    # a write whose server is unknown ("?") counts for neither side
    new_acks = [a.t_ack for a in acks if a.node in ctx.state.nodes and a.node != old and a.t_ack >= t_iso]
    routed_new = [a.t_ack for a in acks if a.side == "routed" and a.node in ctx.state.nodes and a.node != old
                  and a.t_ack >= t_iso]
    promoted_at = tk.t_promoted or min(new_acks, default=None)
    fenced_at = tk.failover.t_fenced if tk.failover is not None else None
    tried = {a.id for a in every}
    primaries = sum(1 for n in ctx.state.nodes if _is_primary(ctx, n))
    both = on_old is not None and on_new is not None
    return SplitBrainResult(
        old, new, fence, synchronous, fenced_at, promoted_at, tuple(every),
        sum(1 for t in old_acks if promoted_at is not None and t > promoted_at) if promoted_at else
        sum(1 for a in after if a.outcome == "ok"),
        tuple(sorted((on_old - on_new) & tried)) if both else None,
        tuple(sorted((on_new - on_old) & tried)) if both else None,
        primaries, read_from, read_error, mgr.name, failsafe, t_iso, max(old_acks, default=None),
        min(new_acks, default=None), min(routed_new, default=None), len(probed),
        tuple(sorted({a.id for a in acks if a.node == old} - on_new)) if on_new is not None else None, t_stopped,
        bool(new_acks) and any(a.side in ("old", "drill") and a.node == old and a.t_sent is not None
                               and a.t_sent > min(new_acks) for a in every))


def _is_primary(ctx: Ctx, node: str) -> bool:
    try:
        return sql.scalar(ctx.state, node, "SELECT NOT pg_is_in_recovery()") is True
    except psycopg.Error:
        return False
