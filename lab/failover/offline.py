"""Reading a node whose server is down, without touching its data directory.

A fenced (killed, stopped) old primary still holds, on disk, the rows it committed: including the
ones that never reached a standby. To say what was there, copy its data directory beside it, start
the copy alone — no TCP listener at all (`listen_addresses=''`), a Unix socket in the copy's own
directory, no archiving, no replication, no synchronous standby to wait for — run one query over
that socket as the server user, stop it and remove the copy. The node itself is left exactly as
the failure left it (pg_rewind, the truth of the data loss and the rejoin still need it so).

Everything goes through the Runtime (run a program as the server user on the node, remove a
path), so it works alike on the local runtime and in a Docker node's container, which outlives its
killed postmaster. The copy keeps the node's cluster_name, so `pglab down` finds its processes too.
"""
from __future__ import annotations

from lab.cluster.context import Ctx
from lab.errors import LabError, NodeFailed

COPY_DIR = "offline-copy"


def read_copy(ctx: Ctx, node: str, query: str, timeout: float = 120) -> tuple[str, ...]:
    """Rows (one text line each) that `query` returns on a copy of the node's data directory.
    Raises NodeFailed when the node's server runs (its files are not a consistent copy) or when
    the copy cannot be started or read."""
    rt = ctx.rt
    p = rt.paths(node)
    if rt.postmaster_running(node):
        raise NodeFailed(f"{node}'s server runs: a copy of its files would not be consistent",
                         "read it over SQL instead")
    copy = f"{p.home}/{COPY_DIR}"
    port = str(ctx.state.nodes[node].peer_port)
    rt.remove_path(node, copy)
    try:
        rt.run(node, ["cp", "-a", p.data, copy], timeout=timeout)
        for stale in ("postmaster.pid", "standby.signal", "recovery.signal"):
            rt.remove_path(node, f"{copy}/{stale}")
        opts = (f"-c listen_addresses='' -c unix_socket_directories='{copy}' -c port={port} "
                "-c archive_mode=off -c synchronous_standby_names='' -c primary_conninfo=''")
        res = rt.run(node, ["pg_ctl", "-D", copy, "-l", f"{copy}/copy.log", "-w", "-t", "60", "-o", opts, "start"],
                     check=False, timeout=90)
        if res.rc != 0:
            log = rt.read_file(node, f"{copy}/copy.log") or res.out
            raise NodeFailed(f"a copy of {node}'s data directory did not start", details=log[-1500:])
        try:
            out = rt.run(node, ["psql", "-X", "-At", "-h", copy, "-p", port, "-U", "postgres", "-d", "postgres",
                                "-c", query], timeout=60).out
        finally:
            rt.run(node, ["pg_ctl", "-D", copy, "-m", "immediate", "-w", "-t", "30", "stop"], check=False, timeout=45)
        return tuple(line for line in out.splitlines() if line)
    finally:
        try:
            rt.remove_path(node, copy)
        except LabError:
            pass
