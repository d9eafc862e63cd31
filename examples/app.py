"""A tiny application to test against failover: it stores comments in PostgreSQL.

It knows nothing about pglab: it gets a libpq DSN (in production, one that lists every node with
target_session_attrs=read-write) and does what a careful service does.
"""
from __future__ import annotations

import time

import psycopg

SCHEMA = "CREATE TABLE IF NOT EXISTS comments (id bigserial PRIMARY KEY, author text NOT NULL, body text NOT NULL)"


def save_comment(dsn: str, author: str, body: str, *, attempts: int = 20, pause: float = 0.25) -> int:
    """Insert a comment, reconnecting while the primary is away (e.g. during a failover).
    Retrying an INSERT whose outcome is unknown could duplicate it; a real service would use an
    idempotency key. Bounded: gives up after `attempts`."""
    last: Exception | None = None
    for _ in range(attempts):
        try:
            with psycopg.connect(dsn, autocommit=True, connect_timeout=2) as conn:
                return conn.execute("INSERT INTO comments (author, body) VALUES (%s, %s) RETURNING id",
                                    (author, body)).fetchone()[0]
        except psycopg.OperationalError as e:
            last = e
            time.sleep(pause)
    raise RuntimeError(f"could not save the comment: {last}")


def save_comment_durably(dsn: str, author: str, body: str, *, timeout_ms: int = 1000) -> tuple[int | None, bool]:
    """Insert a comment and say whether the synchronous standby confirmed it.

    A commit waiting for the synchronous standby ignores statement_timeout, so the wait is bounded
    by cancelling the query from a timer. When the wait is cancelled PostgreSQL keeps the row
    (committed locally) and only warns: the application must look at that warning, or it will
    believe the row is safe on two machines."""
    import threading
    warnings: list[str] = []
    with psycopg.connect(dsn, autocommit=True, connect_timeout=2) as conn:
        conn.add_notice_handler(lambda d: warnings.append(d.message_primary or ""))
        timer = threading.Timer(timeout_ms / 1000, conn.cancel_safe)
        timer.start()
        try:
            row = conn.execute("INSERT INTO comments (author, body) VALUES (%s, %s) RETURNING id",
                               (author, body)).fetchone()
        finally:
            timer.cancel()
    replicated = not any("synchronous replication" in w for w in warnings)
    return (row[0] if row else None), replicated
