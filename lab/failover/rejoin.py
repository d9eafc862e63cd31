"""Bringing a failed old primary (or a stray standby) back as a standby of the current primary.

pg_rewind first (the lab sets wal_log_hints=on), through a least-privilege role; a fresh clone when
rewind is impossible. Before anything is changed, the node's own WAL is read to measure what the
rewind throws away: the old timeline's WAL beyond the fork point recorded in the new timeline's
history file (an independent measure of the writes a failover lost).
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from lab.cluster import nodes as cluster, server, sql
from lab.model import lsn as lsn_mod
from lab.failover import reconfigure
from lab.cluster.context import Ctx
from lab.model.conninfo import rewind_conninfo
from lab.errors import InvalidInput, LabError, NodeFailed
from lab.model.passwords import generate, pgpass_line, scram_sha256
from lab.failover.promotion import probe
from lab.wait import poll

REWIND_USER = "pglab_rewind"
# what pg_rewind needs on the source, per the PostgreSQL documentation: no superuser
_REWIND_GRANTS = (
    "pg_catalog.pg_ls_dir(text, boolean, boolean)",
    "pg_catalog.pg_stat_file(text, boolean)",
    "pg_catalog.pg_read_binary_file(text)",
    "pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)",
)
_LSN_RE = re.compile(r"\b([0-9A-F]{1,8}/[0-9A-F]{1,8})\b")

#: a walreceiver's error when the upstream has recycled the segment it asks for
WAL_GONE = "has already been removed"


@dataclass(frozen=True)
class WalEnd:
    timeline: int | None
    end_lsn: str | None          # end of the last valid WAL record on the node
    state: str | None            # pg_controldata's "Database cluster state"


@dataclass(frozen=True)
class Rejoin:
    node: str
    primary: str
    method: str                  # "rewind", "reclone", "already streaming", "no rewind needed"
    reason: str
    old_timeline: int | None
    old_end_lsn: str | None
    fork_lsn: str | None         # where the primary's timeline left the node's timeline
    discarded_bytes: int | None  # old-timeline WAL beyond the fork point
    discarded_commits: int | None
    inspected: tuple[str, ...] | None  # rows read from the node's own data before the rewind
    duration_s: float
    streaming: bool
    notes: tuple[str, ...] = field(default_factory=tuple)


# ---- reading the node's WAL before touching it -------------------------------------------------
def controldata(ctx: Ctx, node: str) -> dict[str, str]:
    res = ctx.rt.run(node, ["pg_controldata", "-D", ctx.rt.paths(node).data], check=False, timeout=30)
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in res.out.splitlines()) if v}


def wal_end(ctx: Ctx, node: str) -> WalEnd:
    """Where the node's WAL ends: pg_waldump from the last checkpoint's redo point until the first
    invalid record (works on a crashed node, which cannot be asked over SQL)."""
    cd = controldata(ctx, node)
    tli = int(cd["Latest checkpoint's TimeLineID"]) if cd.get("Latest checkpoint's TimeLineID") else None
    redo = cd.get("Latest checkpoint's REDO location")
    if not redo or tli is None:
        return WalEnd(tli, None, cd.get("Database cluster state"))
    res = ctx.rt.run(node, ["pg_waldump", "-q", "-p", f"{ctx.rt.paths(node).data}/pg_wal", "-t", str(tli), "-s", redo],
                     check=False, timeout=120)
    # "error in WAL record at A: invalid record length at B: …": B is where valid WAL ends
    found = _LSN_RE.findall(res.out)
    end = found[-1] if found else None
    return WalEnd(tli, end, cd.get("Database cluster state"))


def fork_point(ctx: Ctx, primary: str, old_tli: int) -> str | None:
    """The LSN at which the primary's history left timeline old_tli (from its .history file)."""
    tli = sql.timeline(ctx.state, primary)
    if not tli or tli <= old_tli:
        return None
    text = sql.scalar(ctx.state, primary, "SELECT pg_read_file(%s)", (f"pg_wal/{tli:08X}.history",))
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].isdigit() and int(parts[0]) == old_tli:
            return parts[1]
    return None


def commits_after(ctx: Ctx, node: str, tli: int, start: str) -> int | None:
    """Transactions committed on the old timeline after the fork point (None if that WAL is gone)."""
    res = ctx.rt.run(node, ["pg_waldump", "-p", f"{ctx.rt.paths(node).data}/pg_wal", "-t", str(tli), "-s", start,
                            "-r", "Transaction"], check=False, timeout=120)
    if "could not find file" in res.out or "could not locate" in res.out:
        return None
    return sum(1 for line in res.out.splitlines() if "desc: COMMIT" in line)


def inspect_isolated(ctx: Ctx, node: str, query: str) -> tuple[str, ...]:
    """Start the node with no TCP listener (no client, no standby can reach it), run one query over
    its local socket as the server user, stop it cleanly. A crashed node finishes crash recovery
    on its own timeline in the process, which is also what pg_rewind needs (a clean shutdown)."""
    p = ctx.rt.paths(node)
    port = str(ctx.state.nodes[node].peer_port)
    opts = "-c listen_addresses='' -c synchronous_standby_names='' -c hot_standby=on"
    res = ctx.rt.run(node, ["pg_ctl", "-D", p.data, "-l", p.log, "-w", "-t", "60", "-o", opts, "start"],
                     check=False, timeout=90)
    if res.rc != 0:
        raise NodeFailed(f"{node} did not start isolated for inspection", details=server.log_tail(ctx.rt, node))
    try:
        out = ctx.rt.run(node, ["psql", "-X", "-At", "-h", p.socket_dir, "-p", port, "-U", "postgres", "-d", "postgres",
                                "-c", query], timeout=60).out
        return tuple(line for line in out.splitlines() if line)
    finally:
        server.stop(ctx.rt, node, mode="fast")


# ---- the rewind role ---------------------------------------------------------------------------
def _rewind_passfile(ctx: Ctx, node: str) -> str:
    return f"{ctx.rt.paths(node).home}/.pgpass_rewind"


def prepare_rewind_role(ctx: Ctx, primary: str, node: str) -> str:
    """LOGIN + EXECUTE on four functions; a fresh password each time, whose SCRAM verifier goes to
    the server and whose plain text goes only into a passfile on the node. Returns the conninfo."""
    pw = generate()
    with sql.connect(ctx.state, primary) as c:
        c.execute("SET synchronous_commit = local")   # no standby needs to confirm a role change
        exists = c.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (REWIND_USER,)).fetchone()
        verb = "ALTER" if exists else "CREATE"
        c.execute(f"{verb} ROLE {REWIND_USER} WITH LOGIN PASSWORD '{scram_sha256(pw)}'")
        for fn in _REWIND_GRANTS:
            c.execute(f"GRANT EXECUTE ON FUNCTION {fn} TO {REWIND_USER}")
    ctx.rt.write_file(node, _rewind_passfile(ctx, node), pgpass_line(REWIND_USER, pw))
    a = ctx.state.nodes[primary]
    return rewind_conninfo(a.peer_host, a.peer_port, REWIND_USER, _rewind_passfile(ctx, node))


# ---- rejoin ------------------------------------------------------------------------------------
def rejoin(ctx: Ctx, node: str, *, inspect: str | None = None, allow_reclone: bool = True,
           timeout: float = 60) -> Rejoin:
    """Make `node` a streaming standby of the current primary. `inspect` is a query run on the
    node's own data before the rewind (e.g. the ledger ids an old primary has)."""
    primary = ctx.state.primary
    if node == primary or node not in ctx.state.nodes:
        raise InvalidInput(f"cannot rejoin {node!r}", f"rejoin a node other than the primary {primary}")
    t0 = time.time()
    notes: list[str] = []
    ctx.rt.resume(node)
    if "partition" in ctx.state.faults.get(node, []):
        ctx.rt.heal_partition(node)
        notes.append("healed its partition")
    ctx.state.faults[node] = [f for f in ctx.state.faults.get(node, []) if f not in ("pause", "partition", "stop", "kill")]
    if ctx.rt.postmaster_running(node):
        c = probe(ctx, node)
        if c.reachable and c.in_recovery and node in reconfigure.streaming(ctx, primary):
            return Rejoin(node, primary, "already streaming", f"{node} streams from {primary}", None, None, None,
                          0, 0, None, time.time() - t0, True, tuple(notes))
        server.stop(ctx.rt, node, mode="fast")
    end = wal_end(ctx, node)
    fork = fork_point(ctx, primary, end.timeline) if end.timeline else None
    discarded = lsn_mod.diff(end.end_lsn, fork) if fork and end.end_lsn else None
    commits = commits_after(ctx, node, end.timeline, fork) if fork and end.timeline and discarded else (0 if discarded == 0 else None)
    inspected = inspect_isolated(ctx, node, inspect) if inspect else None
    if end.state and end.state not in ("shut down", "shut down in recovery") and not inspect:
        notes.append(f"was not shut down cleanly ({end.state}); pg_rewind runs crash recovery first")
    method, reason = "rewind", ""
    try:
        conninfo = prepare_rewind_role(ctx, primary, node)
        # pg_rewind reads the source's timeline from its control file, which a just-promoted
        # primary updates only at its next checkpoint: without one it may say "no rewind required"
        sql.query(ctx.state, primary, "CHECKPOINT")
        res = ctx.rt.run(node, ["pg_rewind", "-D", ctx.rt.paths(node).data, f"--source-server={conninfo}"],
                         check=False, timeout=600)
        if res.rc != 0:
            raise NodeFailed(f"pg_rewind of {node} failed", details=res.out.strip()[-1500:])
        reason = "no rewind required" if "no rewind required" in res.out else "rewound onto " + primary
        if "no rewind required" in res.out:
            method = "no rewind needed"
        reconfigure.ensure_slot(ctx, primary, node)
        cluster.write_config(ctx, node, upstream=primary, extra=reconfigure.STANDBY_EXTRA)
        log = ctx.rt.paths(node).log
        seen = len(ctx.rt.read_file(node, log) or "")
        server.start(ctx.rt, node)

        def settled() -> str | None:
            if node in reconfigure.streaming(ctx, primary):
                return "streaming"
            # the primary no longer has WAL the rewound node needs: it asks again forever, so
            # re-clone now rather than after the whole timeout (seen when many timelines were
            # born within one WAL segment: the new primary counts that segment number removed)
            return "gone" if WAL_GONE in (ctx.rt.read_file(node, log) or "")[seen:] else None
        outcome = poll(settled, timeout=timeout, interval=0.2)
        if outcome != "streaming":
            why = "the primary has removed WAL it needs" if outcome == "gone" else "it did not"
            raise NodeFailed(f"{node} does not stream from {primary} after the rewind: {why}",
                             details=server.log_tail(ctx.rt, node))
    except LabError as e:
        if not allow_reclone:
            raise
        method, reason = "reclone", f"rewind impossible: {e.message}" + (f" ({e.details.splitlines()[-1]})" if e.details else "")
        cluster.reclone(ctx, node)
        reconfigure.wait_streaming(ctx, primary, [node], timeout)
    expect = sorted(reconfigure.streaming(ctx, primary) | {node})
    spec = reconfigure.restore_sync(ctx, primary, wait=5.0, expect=expect)
    streaming_now = node in reconfigure.streaming(ctx, primary)
    ctx.event("rejoin", node, method=method, primary=primary, discarded_bytes=discarded, sync=spec.render())
    return Rejoin(node, primary, method, reason, end.timeline, end.end_lsn, fork, discarded, commits, inspected,
                  time.time() - t0, streaming_now, tuple(notes))
