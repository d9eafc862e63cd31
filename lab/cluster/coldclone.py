"""Bringing a lab up from a cached, initialised cluster, faster than the commands a person types.

initdb runs once per server build and recipe (the runtime keeps the result). Every node's data
directory is a file copy of that stopped cluster: a valid cold base backup with the same system
identifier, so no pg_basebackup is needed. What is the lab's own (its passwords, the standbys'
slots) goes into the primary in single-user mode before any server starts, so no standby ever
connects to find its slot or role missing. Then all servers start at once; a standby that came up
before its primary retries after wal_retrieve_retry_interval (100 ms, see pgconf).

`node reclone` and the catch-up drills still use pg_basebackup from a running primary
(nodes.clone): there, cloning while the primary works is the point.
"""
from __future__ import annotations

from lab.cluster import nodes as cluster, server
from lab.cluster.context import Ctx
from lab.errors import NodeFailed
from lab.model import lsn, pgconf
from lab.model.conninfo import REPLICATION_USER, SUPERUSER
from lab.model.passwords import scram_sha256
from lab.model.syncspec import slot_name
from lab.model.topology import Topology


def recipe(topology: Topology) -> str:
    """What a template is made of; the runtime's cache key includes it."""
    critical = " ".join(f"-c {k}={v}" for k, v in pgconf.hot_standby_critical(topology).items())
    return f"initdb {' '.join(cluster.INITDB_OPTIONS)} --no-sync; include pglab.conf; single-user {critical}; v1"


def _build_template(ctx: Ctx, node: str, topology: Topology) -> None:
    # --no-sync: a template is a cache entry, remade if lost; fsync would cost a second here
    cluster.initdb(ctx, node, "--no-sync")
    ctx.rt.write_file(node, f"{ctx.rt.paths(node).data}/pglab.conf", "")   # each node writes its own
    # one run with the lab's hot-standby-critical settings writes them into pg_control: a standby
    # copied from the template then never finds them "lower than on the primary"
    run_single_user(ctx, node, [], settings=pgconf.hot_standby_critical(topology))
    thin_wal(ctx, node)


def controldata(ctx: Ctx, node: str) -> dict[str, str]:
    out = ctx.rt.run(node, ["pg_controldata", "-D", ctx.rt.paths(node).data], env={"LC_ALL": "C"}).out
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines()) if v}


def wal_hole(control: dict[str, str]) -> tuple[str, int, int] | None:
    """(segment file, offset, length) of the WAL a stopped cluster never reads again: after the
    segment's first page (always read, to check the segment's header) up to the page holding the
    last checkpoint's redo point. initdb leaves about 7 MB there."""
    block = int(control["WAL block size"])
    redo = lsn.parse(control["Latest checkpoint's REDO location"]) or 0
    offset_in_segment = redo % int(control["Bytes per WAL segment"])
    end = offset_in_segment // block * block
    if end <= block:
        return None
    return control["Latest checkpoint's REDO WAL file"], block, end - block


def thin_wal(ctx: Ctx, node: str) -> None:
    """Make the stopped cluster's WAL segment sparse: the part before the redo point is never read,
    the part after it is zeros. Every cold clone then copies about 22 MB instead of 39 MB."""
    rt, data = ctx.rt, ctx.rt.paths(node).data
    hole = wal_hole(controldata(ctx, node))
    if hole is None:
        return
    segment, offset, length = hole
    path = f"{data}/pg_wal/{segment}"
    # best effort: a file system without hole punching just copies the whole segment
    rt.run(node, ["fallocate", "--punch-hole", "--offset", str(offset), "--length", str(length), path], check=False)
    rt.run(node, ["fallocate", "--dig-holes", path], check=False)


def lab_sql(ctx: Ctx, standbys: list[str]) -> list[str]:
    """The statements that make a copied template this lab's primary (one per line: single-user
    mode reads a statement per line). Passwords go in as SCRAM verifiers."""
    st = ctx.state
    stmts = [f"CREATE ROLE {REPLICATION_USER} WITH LOGIN REPLICATION PASSWORD '{scram_sha256(st.replication_password)}';",
             f"ALTER ROLE {SUPERUSER} PASSWORD '{scram_sha256(st.superuser_password)}';"]
    stmts += [f"SELECT pg_create_physical_replication_slot('{slot_name(s)}', true);" for s in standbys]
    return stmts


def single_user_script(ctx: Ctx, node: str, statements: list[str]) -> dict[str, str]:
    """The file run_single_user reads its statements from (to be written with the node's others)."""
    return {f"{ctx.rt.paths(node).home}/.pglab-setup.sql": "\n".join(statements) + "\n"}


def run_single_user(ctx: Ctx, node: str, statements: list[str] | None, settings: dict[str, str] | None = None) -> None:
    """Run statements in the node's stopped cluster with `postgres --single` (no server, no
    connection: nothing else can see the cluster half made). None: the caller has written the
    script (single_user_script) already."""
    rt, p = ctx.rt, ctx.rt.paths(node)
    [(script, text)] = single_user_script(ctx, node, statements or []).items()
    if statements is not None:
        rt.write_file(node, script, text)
    res = None
    try:
        # synchronous_commit=local: the primary's pglab.conf names synchronous standbys already.
        # The shell removes the script itself: one round trip fewer where each costs one (Docker)
        options = [f"-c{k}={v}" for k, v in (settings or {}).items()]
        res = rt.run(node, ["sh", "-c", 'd="$1" f="$2"; shift 2; '
                                        'postgres --single -D "$d" -c synchronous_commit=local "$@" postgres < "$f"; '
                                        'rc=$?; rm -f "$f"; exit $rc',
                            "sh", p.data, script, *options], check=False, timeout=60)
    finally:
        if res is None or res.rc != 0:
            rt.remove_path(node, script)
    if res.rc != 0 or "ERROR:" in res.out or "FATAL:" in res.out:
        lines = [ln for ln in res.out.splitlines() if "ERROR:" in ln or "FATAL:" in ln] or res.out.splitlines()[-5:]
        raise NodeFailed(f"setting up the primary {node} in single-user mode failed", details="\n".join(lines))


def bring_up(ctx: Ctx, topology: Topology) -> bool:
    """The lab's nodes as copies of the runtime's template, all started at once and streaming.
    False (nothing done) when the runtime keeps no templates."""
    primary = topology.primary.name
    standbys = [s.name for s in topology.standbys]
    if not ctx.rt.data_from_template([primary, *standbys], recipe(topology),
                                     lambda node: _build_template(ctx, node, topology)):
        return False

    def configure(node: str) -> None:
        # every file of a node in one write: the template is a primary with no standby.signal
        files = cluster.access_files(ctx, node)
        if node == primary:
            files |= cluster.config_files(ctx, node, sync=None if topology.sync.is_async else topology.sync)
            files |= single_user_script(ctx, node, lab_sql(ctx, standbys))
            ctx.rt.write_files(node, files)
            run_single_user(ctx, node, None)
        else:
            # the template has no slots; a standby's copy holds none of its peers' either
            ctx.rt.write_files(node, files | cluster.config_files(ctx, node, upstream=primary))

    cluster.parallel(configure, [primary, *standbys])
    server.start_all(ctx.rt, [primary, *standbys])
    cluster.wait_streaming(ctx, primary, standbys, topology.sync)
    return True
