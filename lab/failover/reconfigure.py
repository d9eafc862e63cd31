"""After a promotion: which synchronous_standby_names the new primary gets, slots, re-pointing.

The synchronous *policy* (method and count, e.g. FIRST 1) is what the lab keeps across changes of
leader; the *names* are recomputed from the standbys that are alive at that moment. A name copied
from the old configuration could point at the new primary itself or at the dead old primary, and
then every commit on the new primary would hang (seen on this machine with a hand-made failover).
"""
from __future__ import annotations


import psycopg

from lab.cluster import nodes as cluster, sql
from lab.cluster.context import Ctx
from lab.errors import InvalidInput, NodeFailed
from lab.replication import syncpolicy
from lab.model.syncspec import ASYNC, SyncSpec, parse_sync, slot_name
from lab.wait import poll

# A re-pointed standby retries streaming every wal_retrieve_retry_interval (5 s by default); a
# shorter retry lets it find its new upstream quickly after the old one died.
STANDBY_EXTRA = {"wal_retrieve_retry_interval": "200ms"}


def spec_for(ctx: Ctx, primary: str, live: list[str]) -> SyncSpec:
    """synchronous_standby_names for `primary` over the `live` standbys: the policy's own names that
    are still standbys first, then the others by priority, so that FIRST k always has k names to
    wait for (and never the primary itself nor a node that is not streaming)."""
    pol = syncpolicy.get(ctx)
    live = [n for n in live if n != primary]
    if pol.is_async or not live:
        return ASYNC
    prio = {n.name: n.priority for n in ctx.topology.nodes}
    preferred = [n for n in pol.names if n in live]
    rest = sorted((n for n in live if n not in preferred), key=lambda n: (-prio.get(n, 100), n))
    names = tuple(preferred + rest)
    return SyncSpec(pol.method, min(pol.num, len(names)), names)


def current_spec(ctx: Ctx, node: str) -> SyncSpec:
    """synchronous_standby_names as written in a node's pglab.conf (readable even when it is down)."""
    text = ctx.rt.read_file(node, f"{ctx.rt.paths(node).data}/pglab.conf") or ""
    for line in text.splitlines():
        if line.startswith("synchronous_standby_names"):
            value = line.split("=", 1)[1].strip().strip("'")
            try:
                return parse_sync(value, [n for n in ctx.state.nodes])
            except InvalidInput as e:
                # never guess "async" here: that would drop synchronous replication after a failover
                raise NodeFailed(f"cannot read synchronous_standby_names of {node} ({e.message})",
                                 f"check {ctx.rt.paths(node).data}/pglab.conf, or set it with `pglab sync set`") from None
    return ASYNC


def ensure_slot(ctx: Ctx, primary: str, node: str) -> None:
    """A physical slot for `node` on `primary`, reserving WAL now, so that nothing the standby needs
    is recycled between re-pointing and its first connection."""
    sql.query(ctx.state, primary,
              "SELECT pg_create_physical_replication_slot(%s, true) WHERE NOT EXISTS "
              "(SELECT 1 FROM pg_replication_slots WHERE slot_name = %s)", (slot_name(node), slot_name(node)))


def drop_slot_quietly(ctx: Ctx, on: str, node: str) -> None:
    try:
        cluster.drop_slot(ctx, on, node)
    except psycopg.Error:
        pass


def repoint(ctx: Ctx, node: str, upstream: str) -> str | None:
    """Make a running standby stream from `upstream`: primary_conninfo and primary_slot_name are
    reloadable (PostgreSQL 13+), so no restart. Returns an error text, or None."""
    try:
        cluster.write_config(ctx, node, upstream=upstream, extra=STANDBY_EXTRA)
        sql.query(ctx.state, node, "SELECT pg_reload_conf()", connect_timeout=2)
        return None
    except (psycopg.Error, OSError) as e:
        return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def streaming(ctx: Ctx, primary: str) -> set[str]:
    try:
        return {n for n, (state, _) in cluster.replication_rows(ctx, primary).items() if state == "streaming"}
    except psycopg.Error:
        return set()


def wait_streaming(ctx: Ctx, primary: str, nodes: list[str], timeout: float) -> set[str]:
    """Wait (bounded) until the nodes stream from primary; return those that do."""
    seen: list[set[str]] = [set()]

    def all_stream() -> bool:
        seen[0] = streaming(ctx, primary) & set(nodes)
        return seen[0] == set(nodes)
    poll(all_stream, timeout=timeout)
    return seen[0]


def restore_sync(ctx: Ctx, primary: str, *, wait: float = 10.0, expect: list[str] | None = None) -> SyncSpec:
    """Set synchronous_standby_names on the primary over the standbys that stream from it now
    (waiting up to `wait` s for `expect` to stream first). Returns the spec set."""
    expect = expect if expect is not None else [n for n in ctx.state.nodes if n != primary]
    live = sorted(wait_streaming(ctx, primary, expect, wait) if expect else set())
    spec = spec_for(ctx, primary, live)
    cluster.set_sync(ctx, primary, spec)
    return spec
