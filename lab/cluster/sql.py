"""Short-lived connections to a node, as the lab's superuser, over TCP with the lab's passfile."""
from __future__ import annotations

from typing import Any

import psycopg

from lab.model.conninfo import node_dsn
from lab.model.state import LabState


# A node cut off mid-query (a partition) never answers, and without these the kernel keeps the
# connection for many minutes: unacknowledged data or a silent peer ends it within a few seconds.
NET_DEADLINES = {"keepalives": 1, "keepalives_idle": 2, "keepalives_interval": 1, "keepalives_count": 2,
                 "tcp_user_timeout": 4000}


def connect(state: LabState, node: str, *, autocommit: bool = True, connect_timeout: int = 3,
            **extra: Any) -> psycopg.Connection:
    extra = {**NET_DEADLINES, **extra}
    return psycopg.connect(node_dsn(state, node, connect_timeout=connect_timeout, application_name="pglab", **extra),
                           autocommit=autocommit)


def query(state: LabState, node: str, sql: str, params: Any = None, *, connect_timeout: int = 3) -> list[tuple]:
    with connect(state, node, connect_timeout=connect_timeout) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []


def scalar(state: LabState, node: str, sql: str, params: Any = None) -> Any:
    rows = query(state, node, sql, params)
    return rows[0][0] if rows else None


# The timeline a primary writes on now, from its current WAL file's name: the control file's copy
# of it waits for the next checkpoint after a promotion. An error on a standby (in recovery).
TIMELINE = "('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int"


def timeline(state: LabState, node: str) -> int | None:
    return scalar(state, node, f"SELECT {TIMELINE}")
