"""Every connection string of the lab is built here."""
from __future__ import annotations

from psycopg.conninfo import make_conninfo

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
