"""The server configuration the lab writes: pglab.conf (included from postgresql.conf) and pg_hba.conf."""
from __future__ import annotations

from lab.model.names import cluster_name
from lab.model.conninfo import REPLICATION_USER, replication_conninfo
from lab.model.syncspec import SyncSpec, slot_name
from lab.model.topology import Topology

INCLUDE_LINE = "include 'pglab.conf'\n"


def quote(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


# A hot standby refuses to start when one of these is lower than the value its pg_control holds
# from the server that wrote it; clones of one template must agree with it on them.
HOT_STANDBY_CRITICAL = ("max_connections", "max_worker_processes", "max_wal_senders",
                        "max_prepared_transactions", "max_locks_per_transaction")


def max_senders(topology: Topology) -> int:
    # room for re-pointed standbys, rewinds and logical work; at least PostgreSQL's default (10),
    # so that most shapes share one template (lab.cluster.coldclone)
    return max(10, len(topology.nodes) + 4)


def hot_standby_critical(topology: Topology) -> dict[str, str]:
    """The values of HOT_STANDBY_CRITICAL that a lab's pglab.conf sets (others stay initdb's)."""
    mine = {"max_wal_senders": str(max_senders(topology))}
    mine.update((k, v) for k, v in topology.settings if k in HOT_STANDBY_CRITICAL)
    return dict(sorted(mine.items()))


def render(topology: Topology, *, lab: str, node: str, listen: str, port: int, socket_dir: str,
           sync: SyncSpec | None = None, upstream: tuple[str, int] | None = None, pgpass: str | None = None,
           extra: dict[str, str] | None = None) -> str:
    """pglab.conf for one node. A primary gets `sync`; a standby gets `upstream` (host, port) and
    replicates from it through its own slot."""
    n_slots = max_senders(topology)
    settings: dict[str, str] = {
        "listen_addresses": listen,
        "port": str(port),
        "unix_socket_directories": socket_dir,
        "cluster_name": cluster_name(lab, node),
        "wal_level": topology.wal_level,
        "wal_log_hints": "on",             # pg_rewind needs it
        "hot_standby": "on",
        "max_wal_senders": str(n_slots),
        "max_replication_slots": str(n_slots),
        "synchronous_standby_names": (sync.render() if sync else ""),
        "synchronous_commit": topology.synchronous_commit,
        "hot_standby_feedback": "on" if topology.hot_standby_feedback else "off",
        "wal_receiver_status_interval": "1s",  # fresher lag figures than the 10s default
        # A standby that cannot reach its upstream (not up yet, or failing over) retries after
        # this long; the default 5s would be most of a lab's bring-up when all start at once.
        "wal_retrieve_retry_interval": "100ms",
        "password_encryption": "scram-sha-256",
        "log_line_prefix": "%m [%p] %q%a ",
        "shared_buffers": "64MB",
    }
    spec = topology.node(node)
    if upstream:
        settings["primary_conninfo"] = replication_conninfo(upstream[0], upstream[1], pgpass or "", node)
        settings["primary_slot_name"] = slot_name(node)
        if spec.apply_delay:
            settings["recovery_min_apply_delay"] = spec.apply_delay
    settings.update(dict(topology.settings))
    if topology.ha.manager == "repmgr":
        # repmgrd keeps its state in shared memory that the repmgr library sets up at server start
        libs = [x.strip() for x in settings.get("shared_preload_libraries", "").split(",") if x.strip()]
        settings["shared_preload_libraries"] = ",".join([*libs, "repmgr"] if "repmgr" not in libs else libs)
    settings.update(extra or {})
    lines = ["# Written by pglab for this node; the lab rewrites it on every reconfiguration.\n"]
    lines += [f"{k} = {quote(v)}\n" for k, v in settings.items()]
    return "".join(lines)


def hba(networks: list[str]) -> str:
    lines = [
        "# Written by pglab: passwords (scram-sha-256) over TCP, peer on the local socket, no trust.\n",
        "local all all peer\n",
        "local replication all peer\n",
    ]
    for net in networks:
        lines.append(f"host replication {REPLICATION_USER} {net} scram-sha-256\n")
        lines.append(f"host all all {net} scram-sha-256\n")
    return "".join(lines)
