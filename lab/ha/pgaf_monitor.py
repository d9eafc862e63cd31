"""Reading pg_auto_failover's monitor: its node table and its event log, as plain values.

The monitor is a PostgreSQL server with the pgautofailover extension; the lab reads it as its
superuser over TCP (scram-sha-256, the lab's passfile), with a fresh short connection per look.
"""
from __future__ import annotations

from dataclasses import dataclass

import psycopg

from lab.model.conninfo import client_dsn

DBNAME = "pg_auto_failover"
# states in which a node is (or is becoming) the writable one
PRIMARY_STATES = ("single", "wait_primary", "primary", "join_primary", "apply_settings")

_NODES_SQL = """
SELECT n.nodeid, n.nodename, n.nodehost, n.nodeport, n.reportedstate::text, n.goalstate::text, n.reportedtli,
       n.reportedlsn::text, n.health, n.candidatepriority, n.replicationquorum,
       extract(epoch FROM n.reporttime)::float8, extract(epoch FROM n.healthchecktime)::float8
FROM pgautofailover.node n ORDER BY n.nodeid
"""
_EVENTS_SQL = """
SELECT eventid, extract(epoch FROM eventtime)::float8, nodename, reportedstate::text, goalstate::text, description
FROM pgautofailover.event WHERE eventtime >= to_timestamp(%s) ORDER BY eventid
"""


@dataclass(frozen=True)
class NodeRow:
    node_id: int
    name: str
    host: str
    port: int
    reported: str
    goal: str
    timeline: int | None
    lsn: str | None
    health: int            # 1 healthy, 0 unhealthy, -1 unknown (not checked yet)
    priority: int
    quorum: bool
    t_report: float | None  # the keeper's last report
    t_check: float | None   # the monitor's last health check

    @property
    def leads(self) -> bool:
        return self.reported in PRIMARY_STATES and self.goal in PRIMARY_STATES


@dataclass(frozen=True)
class Event:
    event_id: int
    t: float
    node: str
    reported: str
    goal: str
    description: str


def dsn(host: str, port: int, passfile: str, *, connect_timeout: int = 2) -> str:
    return client_dsn(host, port, passfile, dbname=DBNAME, connect_timeout=connect_timeout)


def nodes(dsn_: str) -> list[NodeRow]:
    """Raises psycopg.Error when the monitor does not answer."""
    with psycopg.connect(dsn_, autocommit=True) as c:
        rows = c.execute(_NODES_SQL).fetchall()
    return [NodeRow(int(r[0]), r[1], r[2], int(r[3]), r[4], r[5], r[6], r[7], int(r[8]), int(r[9]), bool(r[10]),
                    r[11], r[12]) for r in rows]


def events(dsn_: str, since: float) -> list[Event]:
    with psycopg.connect(dsn_, autocommit=True) as c:
        rows = c.execute(_EVENTS_SQL, (since,)).fetchall()
    return [Event(int(r[0]), float(r[1]), r[2], r[3], r[4], r[5] or "") for r in rows]


def apply_settings(dsn_: str, settings: dict[str, int]) -> dict[str, str]:
    """ALTER SYSTEM SET pgautofailover.<name> for each, reload, and read back what the monitor runs."""
    with psycopg.connect(dsn_, autocommit=True) as c:
        for k, v in settings.items():
            c.execute(f"ALTER SYSTEM SET pgautofailover.{k} = {int(v)}")
        c.execute("SELECT pg_reload_conf()")
    return current_settings(dsn_)


def current_settings(dsn_: str) -> dict[str, str]:
    with psycopg.connect(dsn_, autocommit=True) as c:
        rows = c.execute("SELECT name, setting FROM pg_settings WHERE name LIKE 'pgautofailover.%'").fetchall()
    return {n.split(".", 1)[1]: s for n, s in rows}


def answers(dsn_: str) -> bool:
    try:
        with psycopg.connect(dsn_, autocommit=True) as c:
            c.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False
