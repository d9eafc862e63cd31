"""repmgr for a lab: is it installed for the lab's server, each node's repmgr.conf, its role (pure values).

repmgr 5.3 comes from Debian (`postgresql-15-repmgr`): packaged for PostgreSQL 15 only here, so a
repmgr lab runs 15: this machine's installation (local runtime) or the lab's 15 image, which holds
the package (Docker runtime, lab.runtime.images). The lab creates the servers itself (as without a
manager) and then registers them; repmgr connects as its own least-privileged role (no superuser: repmgr 5.1+ allows it) whose
generated password lives in a per-node passfile, never on a command line.
"""
from __future__ import annotations

import os

from lab.errors import RuntimeUnavailable, Unsupported
from lab.model.conninfo import REPLICATION_USER, make_conninfo
from lab.model.haspec import REPMGR_PROFILES
from lab.model.passwords import pgpass_line, scram_sha256
from lab.model.syncspec import slot_name
from lab.model.topology import Topology

PG_MAJOR = 15
USER = "repmgr"
DB = "repmgr"
INSTALL_HINT = f"apt-get install postgresql-{PG_MAJOR}-repmgr"
# repmgr's promotion, its CHECKPOINT, and what it reads about replication: granted, not superuser
_ROLES = ("pg_read_all_stats", "pg_read_all_settings", "pg_checkpoint")
_FUNCTIONS = ("pg_catalog.pg_promote(boolean, integer)", "pg_catalog.pg_wal_replay_resume()")


def check_major(major: int | None) -> None:
    """The lab's server is the one major repmgr is packaged for."""
    if major != PG_MAJOR:
        raise Unsupported(f"--ha repmgr needs PostgreSQL {PG_MAJOR} (repmgr is packaged for {PG_MAJOR} only here); "
                          f"this lab would run {major if major is not None else 'another version'}",
                          f"add --pg {PG_MAJOR} (or [postgres] version = {PG_MAJOR})")


def check(major: int | None, bindir: str) -> None:
    """Before anything is created (local runtime): the lab's server is 15 and repmgr is installed for it."""
    check_major(major)
    for prog in ("repmgr", "repmgrd"):
        if not os.access(os.path.join(bindir, prog), os.X_OK):
            raise RuntimeUnavailable(f"--ha repmgr needs {prog}, which is not installed for PostgreSQL {PG_MAJOR} "
                                     f"(no {bindir}/{prog})", INSTALL_HINT)


def timing(topology: Topology) -> dict[str, int]:
    return dict(REPMGR_PROFILES[topology.ha.profile])


def node_ids(topology: Topology) -> dict[str, int]:
    """repmgr's node_id per node: the topology's order, from 1."""
    return {n.name: i for i, n in enumerate(topology.nodes, start=1)}


def priority(topology: Topology, node: str) -> int:
    """repmgrd elects by LSN first, then priority, then the lower node_id. A standby the topology's
    synchronous_standby_names does not name (s2 by default) gets half the priority, so on equal LSNs
    the synchronous one (s1) wins; not 0: a standby ahead or level in LSN holds every acknowledged
    write, and priority 0 would leave no candidate at all when s1 is down too. A topology priority
    of 0 stays 0 (never promoted)."""
    p = topology.node(node).priority
    names = set(topology.sync.names)
    if p and names and node not in names and node != topology.primary.name:
        return max(1, p // 2)
    return p


def passfile(home: str) -> str:
    return f"{home}/.pgpass_repmgr"


def passfile_text(repmgr_password: str, replication_password: str) -> str:
    """repmgr's own role and the replication role (repmgr writes primary_conninfo with it on follow)."""
    return pgpass_line(USER, repmgr_password) + pgpass_line(REPLICATION_USER, replication_password)


def conninfo(host: str, port: int, home: str) -> str:
    # connect_timeout: without it a node cut off by a network fault stretches every reconnect
    # attempt to the TCP timeout (repmgr#47). It bounds connecting only: a query on a connection
    # that was open when the peer was cut off (packets dropped, no reset) waits for TCP's own
    # retransmission timeout, minutes; tcp_user_timeout and keepalives end such a wait in seconds.
    return make_conninfo(host=host, port=port, user=USER, dbname=DB, connect_timeout=2, passfile=passfile(home),
                         keepalives=1, keepalives_idle=2, keepalives_interval=1, keepalives_count=2,
                         tcp_user_timeout=4000)


def _q(v: object) -> str:
    return "'" + str(v).replace("\\", "\\\\").replace("'", "\\'") + "'"


def promote_script(*, topology: Topology, node: str, home: str, bindir: str, port: int,
                   socket_dir: str | None = None) -> str:
    """repmgrd's promote_command: `repmgr standby promote`, then on the new primary a physical slot
    for every other node under pglab's names, which the standbys' pglab.conf names as
    primary_slot_name: without them a standby that follows (even when pglab is not running) is
    refused ("replication slot does not exist"). Through the local socket (`socket_dir`, default
    `home`) as the server user (peer)."""
    slots = " ".join(slot_name(n.name) for n in topology.nodes if n.name != node)
    return f"""#!/bin/sh
# Written by pglab for node {node} (lab.ha.repmgr_conf.promote_script).
{bindir}/repmgr standby promote -f {home}/repmgr.conf --log-to-file || exit $?
for slot in {slots}; do
  {bindir}/psql -X -q -h {socket_dir or home} -p {port} -U postgres -d postgres -c \
    "SELECT pg_create_physical_replication_slot('$slot', true) WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = '$slot')" \
    >>{home}/repmgr.log 2>&1
done
exit 0
"""


def render(*, topology: Topology, node: str, host: str, port: int, home: str, data_dir: str, bindir: str,
           server_log: str) -> str:
    """repmgr.conf of one node."""
    conf = f"{home}/repmgr.conf"
    pg_ctl = f"{bindir}/pg_ctl -D {data_dir} -l {server_log} -w -t 60"
    settings: dict[str, object] = {
        "node_id": node_ids(topology)[node],
        "node_name": node,
        "conninfo": conninfo(host, port, home),
        "replication_user": REPLICATION_USER,
        "data_directory": data_dir,
        "pg_bindir": bindir,
        # pglab keeps its own slots (one per standby, named after it); repmgr's would be a second set
        "use_replication_slots": "no",
        "failover": "automatic",
        "priority": priority(topology, node),
        "promote_command": f"{home}/repmgr_promote.sh",
        "follow_command": f"{bindir}/repmgr standby follow -f {conf} --log-to-file --upstream-node-id=%n",
        **timing(topology),
        "primary_visibility_consensus": "no",
        "standby_disconnect_on_failover": "no",
        # the server log stays where pglab reads it: repmgr's default pg_ctl has no -l
        "service_start_command": f"{pg_ctl} start",
        "service_stop_command": f"{pg_ctl} -m fast stop",
        "service_restart_command": f"{pg_ctl} -m fast restart",
        "service_reload_command": f"{bindir}/pg_ctl -D {data_dir} reload",
        "promote_check_interval": 1,
        "log_level": "INFO",
        "log_file": f"{home}/repmgr.log",
        "log_status_interval": 60,
        "repmgrd_pid_file": f"{home}/repmgrd.pid",
    }
    lines = ["# Written by pglab for this node (lab.ha.repmgr_conf).\n"]
    lines += [f"{k}={v if isinstance(v, int) else _q(v)}\n" for k, v in settings.items()]
    return "".join(lines)


def role_sql(repmgr_password: str) -> list[str]:
    """As the superuser, on the primary (replicated to every standby): repmgr's role and database.
    The password goes in as a SCRAM verifier."""
    return [f"CREATE ROLE {USER} WITH LOGIN PASSWORD '{scram_sha256(repmgr_password)}'",
            *(f"GRANT {r} TO {USER}" for r in _ROLES),
            f"CREATE DATABASE {DB} OWNER {USER}"]


def extension_sql() -> list[str]:
    """In repmgr's database, as the superuser: the extension (only a superuser may create it), and
    repmgr's role given what the extension holds."""
    return ["CREATE EXTENSION IF NOT EXISTS repmgr",
            f"GRANT USAGE ON SCHEMA repmgr TO {USER}",
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA repmgr TO {USER}",
            f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA repmgr TO {USER}",
            f"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA repmgr TO {USER}",
            # function privileges belong to a database: granted where repmgr connects
            *(f"GRANT EXECUTE ON FUNCTION {f} TO {USER}" for f in _FUNCTIONS),
            f"ALTER ROLE {USER} SET search_path TO repmgr, public"]
