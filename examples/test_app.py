"""Example tests of an application against a replicated PostgreSQL, using pglab's pytest plugin.

Run: pytest examples/ [--pglab-runtime docker|local]
"""
from __future__ import annotations

import threading

import psycopg
import pytest

from app import SCHEMA, save_comment, save_comment_durably


def test_survives_a_failover_through_the_routed_dsn(pglab_factory):
    lab = pglab_factory(standbys=2)                     # p1 primary, s1 sync, s2 async
    dsn = lab.dsn(role="primary")                      # every node, target_session_attrs=read-write
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(SCHEMA)
    saved: list[int] = []                              # acknowledged before the failover was done
    after: list[int] = []                              # acknowledged after it: by the new primary
    stop, failed_over = threading.Event(), threading.Event()
    errors: list[Exception] = []

    def writer() -> None:
        try:
            for i in range(2000):                      # bounded
                if stop.is_set():
                    return
                row = save_comment(dsn, "alice", f"comment {i}")
                (after if failed_over.is_set() else saved).append(row)
        except Exception as e:                         # noqa: BLE001 - reported by the test below
            errors.append(e)

    t = threading.Thread(target=writer)
    t.start()
    # some writes acknowledged first: otherwise the kill can come before the first one
    lab.wait_for(lambda _: len(saved) >= 5 or errors, timeout=30, what="5 writes before the failure")
    lab.fault("p1", "kill")                            # the primary dies…
    lab.failover()                                     # …the most up-to-date standby takes over
    failed_over.set()
    try:
        # the application keeps working through the same DSN: writes succeed on the new primary
        lab.wait_for(lambda _: len(after) >= 5 or errors, timeout=30, what="5 writes after the failover")
    finally:
        stop.set()
        t.join(timeout=60)
    assert not errors, errors
    assert lab.status().primaries == ["s1"]
    with lab.connect("s1") as c:                       # read on s1 itself, not through the DSN
        present = {r[0] for r in c.execute("SELECT id FROM comments")}
    assert saved and set(saved) <= present             # synchronous replication: nothing acknowledged is lost
    assert len(after) >= 5 and set(after) <= present   # and what was written after the failover is on s1


def test_reads_its_own_writes_with_a_causal_token(pglab_factory):
    lab = pglab_factory(standbys=1, sync="none")
    with lab.connect() as c:
        c.execute(SCHEMA)
    lab.wait_caught_up()
    lab.set_apply_delay("s1", "500ms")                 # a follower that lags, on purpose
    with lab.router() as router:
        w = router.write("alice", "INSERT INTO comments (author, body) VALUES (%s, %s)", ("alice", "hello"))
        stale = router.read("alice", "SELECT count(*) FROM comments", policy="any")
        fresh = router.read("alice", "SELECT count(*) FROM comments", policy="token", token=w.token)
    assert stale.rows[0][0] == 0                       # the follower has not replayed the write yet
    assert fresh.rows[0][0] == 1 and fresh.node == "s1"  # waited for the token's LSN on the follower


def test_write_with_the_synchronous_standby_down(pglab_factory):
    lab = pglab_factory(standbys=1, sync="FIRST 1 (s1)")
    with lab.connect() as c:
        c.execute(SCHEMA)
    dsn = lab.dsn(role="primary")
    assert save_comment_durably(dsn, "bob", "before")[1] is True
    lab.fault("s1", "stop")                            # the only synchronous standby is gone
    row_id, replicated = save_comment_durably(dsn, "bob", "during", timeout_ms=500)
    assert replicated is False                         # the commit waited, was cancelled, and only warned…
    with lab.connect() as c:                           # …yet the row is there, committed locally
        assert c.execute("SELECT count(*) FROM comments WHERE body = 'during'").fetchone()[0] == 1
    lab.heal("s1")
    assert save_comment_durably(dsn, "bob", "after", timeout_ms=5000)[1] is True


@pytest.fixture(autouse=True)
def _examples_on_path(monkeypatch):
    monkeypatch.syspath_prepend(__file__.rsplit("/", 1)[0])
