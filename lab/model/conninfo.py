"""Every connection string of the lab is built here.

`make_conninfo` writes libpq's key=value syntax itself instead of importing psycopg's: importing
psycopg takes longer than everything else `pglab dsn` does, and the syntax is small (a test
checks that libpq, through psycopg, parses what it writes back to the same values).
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

from lab.errors import InvalidInput

if TYPE_CHECKING:
    from lab.model.state import LabState

_PLAIN = re.compile(r"[^\s'\\]+")


def _quote(value: object) -> str:
    text = str(value)
    if _PLAIN.fullmatch(text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def make_conninfo(**params: object) -> str:
    """key=value pairs in libpq's syntax (values quoted where needed); None values are left out."""
    return " ".join(f"{k}={_quote(v)}" for k, v in params.items() if v is not None)


SUPERUSER = "postgres"
REPLICATION_USER = "replicator"
DEFAULT_DB = "postgres"


def client_dsn(host: str, port: int, passfile: str, *, dbname: str = DEFAULT_DB, user: str = SUPERUSER,
               connect_timeout: int = 3, **extra: str | int) -> str:
    """A DSN for a client on this machine; the password stays in the lab's passfile."""
    return make_conninfo(host=host, port=port, user=user, dbname=dbname, passfile=passfile,
                         connect_timeout=connect_timeout, **extra)


def multi_host_dsn(addrs: list[tuple[str, int]], passfile: str, target_session_attrs: str, *,
                   dbname: str = DEFAULT_DB, connect_timeout: int = 2) -> str:
    """One DSN over several nodes; libpq picks the first that matches target_session_attrs."""
    return make_conninfo(host=",".join(h for h, _ in addrs), port=",".join(str(p) for _, p in addrs),
                         user=SUPERUSER, dbname=dbname, passfile=passfile,
                         target_session_attrs=target_session_attrs, connect_timeout=connect_timeout)


def replication_conninfo(host: str, port: int, passfile: str, application_name: str) -> str:
    """primary_conninfo for a standby: the replication role, its password in a passfile on the node."""
    return make_conninfo(host=host, port=port, user=REPLICATION_USER, passfile=passfile,
                         application_name=application_name, connect_timeout=2)


def rewind_conninfo(host: str, port: int, user: str, passfile: str) -> str:
    """pg_rewind's source server: a least-privilege role whose password is in a passfile."""
    return make_conninfo(host=host, port=port, user=user, dbname=DEFAULT_DB, passfile=passfile, connect_timeout=5)


def clone_conninfo(host: str, port: int) -> str:
    """pg_basebackup's source: the replication role; its password comes from the node's .pgpass."""
    return make_conninfo(host=host, port=port, user=REPLICATION_USER, connect_timeout=10)


def with_password(host: str, port: int, user: str, password: str, dbname: str) -> str:
    """A subscription's connection (CREATE SUBSCRIPTION … CONNECTION): it is stored in the catalog
    of the subscriber, which has no passfile, so the (generated, lab-only) password goes inline."""
    return make_conninfo(host=host, port=port, user=user, password=password, dbname=dbname, connect_timeout=3)


def with_dbname(dsn: str, dbname: str) -> str:
    """The same connection string with another database."""
    from psycopg.conninfo import conninfo_to_dict  # lazy: parsing needs libpq (psycopg is slow to import)
    return make_conninfo(**{**conninfo_to_dict(dsn), "dbname": dbname})


# ---- DSNs of a lab, from its saved state --------------------------------------------------------
def node_dsn(state: "LabState", node: str, **extra: str | int) -> str:
    """One node, as the lab's superuser."""
    a = state.nodes[node]
    return client_dsn(a.host, a.port, str(state.pgpass_path), **extra)


ROLE_ATTRS = {"primary": "read-write", "standby": "standby", "any": "any"}


def role_dsn(state: "LabState", role: str = "primary", *, dbname: str = DEFAULT_DB) -> str:
    """Every node, listed so that libpq tries the likeliest first: the primary for 'primary' and
    'any', the standbys for 'standby'; libpq connects to the first whose role matches."""
    order = [*state.standbys, state.primary] if role == "standby" else [state.primary, *state.standbys]
    return multi_host_dsn([(state.nodes[n].host, state.nodes[n].port) for n in order],
                          str(state.pgpass_path), ROLE_ATTRS[role], dbname=dbname)


def lab_dsn(state: "LabState", node: str | None = None, *, role: str | None = None, dbname: str = DEFAULT_DB) -> str:
    """What `pglab dsn` prints: one node's DSN, or with a role ('primary', 'standby', 'any') a
    multi-host DSN over every node, where libpq picks whichever matches when it connects."""
    if node and role:
        raise InvalidInput("give a node or --role, not both", "e.g. `pglab dsn s1` or `pglab dsn --role primary`")
    if node:
        if node not in state.nodes:
            raise InvalidInput(f"no node {node!r} in lab {state.name}", f"nodes are: {', '.join(state.nodes)}")
        return node_dsn(state, node, dbname=dbname)
    role = role or "primary"
    if role not in ROLE_ATTRS:
        raise InvalidInput(f"unknown role {role!r}", "use primary, standby or any")
    return role_dsn(state, role, dbname=dbname)
