"""Cluster operations shared by every runtime: configure, initialise, clone, wait for streaming."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import psycopg


from lab.model import pgconf
from lab.cluster import server, sql
from lab.model.conninfo import REPLICATION_USER, clone_conninfo
from lab.cluster.context import Ctx
from lab.errors import InvalidInput, NodeFailed
from lab.model.passwords import pgpass_line, scram_sha256
from lab.model.syncspec import SyncSpec, slot_name
from lab.wait import wait_until


def node_pgpass(ctx: Ctx, node: str) -> str:
    return f"{ctx.rt.paths(node).home}/.pgpass"


def pgpass_file(ctx: Ctx, node: str) -> dict[str, str]:
    """The node's passfile: the standby's walreceiver and pg_basebackup read the replication
    password from it."""
    return {node_pgpass(ctx, node): pgpass_line(REPLICATION_USER, ctx.state.replication_password)}


def write_pgpass(ctx: Ctx, node: str) -> None:
    ctx.rt.write_files(node, pgpass_file(ctx, node))


def config_files(ctx: Ctx, node: str, *, upstream: str | None = None, sync: SyncSpec | None = None,
                 extra: dict[str, str] | None = None) -> dict[str, str]:
    """pglab.conf of a node (a primary when upstream is None, else a standby of upstream), and
    for a standby its standby.signal."""
    rt, p = ctx.rt, ctx.rt.paths(node)
    up = None
    if upstream:
        a = ctx.state.nodes[upstream]
        up = (a.peer_host, a.peer_port)
    text = pgconf.render(ctx.topology, lab=ctx.name, node=node, listen=rt.listen_address(node),
                         port=_listen_port(ctx, node), socket_dir=p.socket_dir, sync=sync, upstream=up,
                         pgpass=node_pgpass(ctx, node), extra=extra)
    return {f"{p.data}/pglab.conf": text, **({f"{p.data}/standby.signal": ""} if upstream else {})}


def write_config(ctx: Ctx, node: str, *, upstream: str | None = None, sync: SyncSpec | None = None,
                 extra: dict[str, str] | None = None) -> None:
    """(Re)write pglab.conf of a node: a primary when upstream is None, else a standby of upstream."""
    ctx.rt.write_files(node, config_files(ctx, node, upstream=upstream, sync=sync, extra=extra))
    if not upstream:
        ctx.rt.remove_path(node, f"{ctx.rt.paths(node).data}/standby.signal")


def _listen_port(ctx: Ctx, node: str) -> int:
    # inside its own network (container, namespace) a node listens on its peer port
    return ctx.state.nodes[node].peer_port


def check_settings(ctx: Ctx, node: str) -> None:
    """Refuse settings the server does not know, before anything starts (with a suggestion)."""
    names = [k for k, _ in ctx.topology.settings]
    if not names:
        return
    out = ctx.rt.run(node, ["postgres", "--describe-config"], timeout=60).out
    known = {line.split("\t", 1)[0] for line in out.splitlines() if "\t" in line}
    for name in names:
        if name not in known:
            import difflib
            close = difflib.get_close_matches(name, known, n=1)
            where = ctx.topology.source or "the topology"
            raise InvalidInput(f"unknown setting {name!r} in [settings] of {where}",
                               f"did you mean {close[0]!r}?" if close else "see the PostgreSQL documentation for parameter names")


# Data checksums on every version: PostgreSQL 18's initdb turns them on by default, 15 and 17 need
# the option; the same on all keeps the versions comparable (and pg_rewind works either way).
INITDB_OPTIONS = ("-U", "postgres", "--auth-local=peer", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C",
                  "--data-checksums")


def initdb(ctx: Ctx, node: str, *extra: str) -> None:
    """A new cluster in the node's data directory, its postgresql.conf including pglab.conf."""
    rt, p = ctx.rt, ctx.rt.paths(node)
    rt.run(node, ["initdb", "-D", p.data, *INITDB_OPTIONS, *extra], timeout=120)
    conf = rt.read_file(node, f"{p.data}/postgresql.conf") or ""
    rt.write_file(node, f"{p.data}/postgresql.conf", conf + "\n" + pgconf.INCLUDE_LINE)


def access_files(ctx: Ctx, node: str) -> dict[str, str]:
    """pg_hba.conf for the lab's networks, and the node's passfile."""
    return {f"{ctx.rt.paths(node).data}/pg_hba.conf": pgconf.hba(ctx.rt.hba_networks()), **pgpass_file(ctx, node)}


def write_access(ctx: Ctx, node: str) -> None:
    ctx.rt.write_files(node, access_files(ctx, node))


def init_primary(ctx: Ctx, node: str) -> None:
    rt, p = ctx.rt, ctx.rt.paths(node)
    pwfile = f"{p.home}/.pwfile"
    rt.write_file(node, pwfile, ctx.state.superuser_password + "\n")
    try:
        initdb(ctx, node, f"--pwfile={pwfile}")
    finally:
        rt.remove_path(node, pwfile)
    write_access(ctx, node)
    write_config(ctx, node)


def create_roles(ctx: Ctx, node: str) -> None:
    """The replication role: LOGIN REPLICATION and nothing else. The password goes to the server
    as a SCRAM verifier, so it never appears in a statement or a log."""
    with sql.connect(ctx.state, node) as conn:
        conn.execute("SET synchronous_commit = local")
        conn.execute(f"CREATE ROLE {REPLICATION_USER} WITH LOGIN REPLICATION PASSWORD "
                     f"'{scram_sha256(ctx.state.replication_password)}'")


def clone(ctx: Ctx, node: str, source: str) -> None:
    """pg_basebackup from source through this standby's own physical slot. The slot is made
    (reserving WAL) before the backup starts: with `-C` pg_basebackup makes it only after the
    backup's start point, and a concurrent clone's checkpoint can remove WAL in between
    ("requested WAL segment … has already been removed", seen with parallel Docker clones)."""
    rt, p = ctx.rt, ctx.rt.paths(node)
    src = ctx.state.nodes[source]
    write_pgpass(ctx, node)
    sql.query(ctx.state, source, "SELECT pg_create_physical_replication_slot(%s, true) WHERE NOT EXISTS "
                                 "(SELECT 1 FROM pg_replication_slots WHERE slot_name = %s)",
              (slot_name(node), slot_name(node)))
    rt.remove_path(node, p.data)
    # a conninfo rather than -h/-p, for connect_timeout: an unreachable source fails in seconds,
    # not after the kernel's two minutes of SYN retries
    src_dsn = clone_conninfo(src.peer_host, src.peer_port)
    res = rt.run(node, ["pg_basebackup", "-D", p.data, "-d", src_dsn, "-w", "-X", "stream", "-c", "fast",
                        "-S", slot_name(node)],
                 env={"PGPASSFILE": node_pgpass(ctx, node)}, check=False, timeout=600)
    if res.rc != 0:
        raise NodeFailed(f"cloning {node} from {source} with pg_basebackup failed",
                         details=res.out.strip()[-1500:])


def drop_slot(ctx: Ctx, on: str, node: str) -> None:
    sql.query(ctx.state, on, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                             "WHERE slot_name = %s AND NOT active", (slot_name(node),))


def force_drop_slot(ctx: Ctx, on: str, node: str, timeout: float = 10) -> None:
    """Drop a standby's slot even while a walsender still holds it (the standby is going away)."""
    def dropped() -> bool:
        rows = sql.query(ctx.state, on, "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s",
                         (slot_name(node),))
        if not rows:
            return True
        if rows[0][0] is not None:
            sql.query(ctx.state, on, "SELECT pg_terminate_backend(%s)", (rows[0][0],))
            return False
        sql.query(ctx.state, on, "SELECT pg_drop_replication_slot(%s)", (slot_name(node),))
        return True
    wait_until(dropped, timeout=timeout, what=f"the slot of {node} on {on} to be dropped",
               transient=(psycopg.errors.ObjectInUse, psycopg.OperationalError))


def set_sync(ctx: Ctx, primary: str, spec: SyncSpec) -> None:
    write_config(ctx, primary, sync=spec)
    sql.query(ctx.state, primary, "SELECT pg_reload_conf()")


def replication_rows(ctx: Ctx, primary: str) -> dict[str, tuple[str, str]]:
    rows = sql.query(ctx.state, primary, "SELECT application_name, state, sync_state FROM pg_stat_replication")
    return {ctx.state.node_of(r[0]): (r[1], r[2]) for r in rows}


def wait_streaming(ctx: Ctx, primary: str, standbys: list[str], sync: SyncSpec, timeout: float = 60) -> None:
    """Until every standby streams from primary, and the synchronous ones are counted as such."""
    def ready() -> bool:
        rows = replication_rows(ctx, primary)
        for s in standbys:
            st = rows.get(s)
            if not st or st[0] != "streaming":
                return False
            if s in sync.names and st[1] == "async":
                return False
        return True
    wait_until(ready, timeout=timeout, what=f"standbys {', '.join(standbys)} to stream from {primary}",
               logs=lambda: "\n".join(f"--- {s} ---\n{server.log_tail(ctx.rt, s)}" for s in standbys))


def parallel(fn, items: list[str]) -> None:
    """Run fn(item) for every item at once; raise the first error after all have finished."""
    if not items:
        return
    with ThreadPoolExecutor(max_workers=len(items)) as ex:
        futures = [ex.submit(fn, i) for i in items]
        errors = [f.exception() for f in futures if f.exception()]
    if errors:
        raise errors[0]


def reclone(ctx: Ctx, node: str) -> None:
    """Rebuild a standby from the current primary: a fresh base backup through a fresh slot.
    The way back for a standby that lost the WAL it needs, or an old primary pg_rewind can't fix."""
    primary = ctx.state.primary
    if node == primary:
        raise InvalidInput(f"{node} is the primary; only a standby can be re-cloned",
                           "switch over first, or re-clone another node")
    ctx.rt.resume(node)
    if ctx.rt.postmaster_running(node):
        server.stop(ctx.rt, node, mode="immediate")
    force_drop_slot(ctx, primary, node)
    clone(ctx, node, primary)
    write_config(ctx, node, upstream=primary)
    server.start(ctx.rt, node)
    ctx.event("reclone", node)
