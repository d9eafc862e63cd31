"""Logical (row-based) replication between two labs: a publication on one primary, a
subscription on another — possibly of another major version (15 -> 17 on Docker).

    from lab.methods.logical import lab_pair, run
    with lab_pair(pub_version=15, sub_version=17, runtime="docker") as (pub, sub):
        report = run(pub, sub)

What `run` measures, with a single-connection insert/update workload on the publisher:
- throughput of the workload without, then with the subscription (the walsender decodes
  and sends every change; the difference is its overhead on this machine);
- lag in bytes during the workload (publisher's WAL end minus the slot's confirmed flush);
- row hashes of the replicated table on both sides once caught up: equal;
- DDL is not replicated: a column added on the publisher only stops the apply worker
  ("missing replicated column") until the subscriber gets the same column; a column the
  subscriber has and the publisher lacks is harmless (it stays NULL/default).
"""
from __future__ import annotations

import contextlib
import statistics
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Iterator

import psycopg

from lab.model import pgconf
from lab.model.conninfo import with_password
from lab.cluster import server
from lab.model.passwords import generate, scram_sha256
from lab.methods.statement import table_hash
from lab.model.topology import topology_from_dict
from lab.wait import wait_until
from lab.cluster.handle import Cluster
from lab.cluster.bootstrap import down

ROLE = "pglab_logical"
TABLE_DDL = ("CREATE TABLE orders (id bigserial PRIMARY KEY, customer int NOT NULL, amount numeric(10,2), "
             "status text NOT NULL DEFAULT 'new')")


def _topology(version: int | None, logical: bool, settings: dict | None = None):
    d: dict = {"nodes": [{"name": "p1", "role": "primary"}],
               "replication": {"wal_level": "logical" if logical else "replica"},
               "settings": settings or {}}
    if version:
        d["postgres"] = {"version": version}
    return topology_from_dict(d, source="logical replication drill")


@contextlib.contextmanager
def lab_pair(pub_version: int | None = None, sub_version: int | None = None, *, runtime: str = "local",
             name: str | None = None) -> Iterator[tuple]:
    """Two one-node labs: `<name>pub` (wal_level = logical) and `<name>sub`; removed afterwards."""
    base = name or f"lg{uuid.uuid4().hex[:6]}"
    names = [f"{base}pub", f"{base}sub"]
    try:
        pub = Cluster.up(_topology(pub_version, True), name=names[0], runtime=runtime)
        # the apply worker restarts after an error once this long has passed (default 5s)
        sub = Cluster.up(_topology(sub_version, False, {"wal_retrieve_retry_interval": "300ms"}),
                     name=names[1], runtime=runtime)
        yield pub, sub
    finally:
        # the subscriber first: on Docker its container is attached to the publisher's network
        for n in reversed(names):
            down(n)


def publisher_conninfo(pub, sub, password: str) -> str:
    """How the subscriber's server reaches the publisher's primary (the runtime connects the labs)."""
    rt, node = sub.ctx.rt, sub.primary
    host, port, nets = rt.reach(node, pub.ctx.rt, pub.ctx.state.nodes[pub.primary])
    if nets:
        # the subscriber's own clients may now arrive from those networks too
        rt.write_file(node, f"{rt.paths(node).data}/pg_hba.conf", pgconf.hba([*rt.hba_networks(), *nets]))
        rt.run(node, ["pg_ctl", "-D", rt.paths(node).data, "reload"])
    return with_password(host, port, ROLE, password, "postgres")


@dataclass(frozen=True)
class LogicalReport:
    publisher_version: str
    subscriber_version: str
    rows: int
    hashes_equal: bool
    publisher_hash: str
    subscriber_hash: str
    tps_without: float
    tps_with: float
    lag_bytes_max: int
    lag_bytes_mean: float
    catchup_s: float
    ddl_replicated: bool
    ddl_error: str | None          # what the apply worker said while the schemas differed
    apply_errors: int
    recovered_after_ddl: bool      # equal hashes again once the subscriber got the column
    extra_column_ok: bool          # a subscriber-only column does not stop replication

    @property
    def overhead_pct(self) -> float:
        return round(100 * (1 - self.tps_with / self.tps_without), 1) if self.tps_without else 0.0


def _workload(dsn: str, seconds: float, stop: threading.Event | None = None) -> float:
    """Inserts and updates on one connection for `seconds`; returns transactions per second."""
    n, t0 = 0, time.monotonic()
    with psycopg.connect(dsn, autocommit=True) as c:
        while time.monotonic() - t0 < seconds and not (stop and stop.is_set()):
            c.execute("INSERT INTO orders (customer, amount) VALUES (%s, %s)", (n % 97, n % 1000 / 10))
            if n % 5 == 4:
                c.execute("UPDATE orders SET status = 'paid' WHERE id = (SELECT max(id) FROM orders)")
            n += 1
    return n / (time.monotonic() - t0)


def _slot_lag(pub_dsn: str) -> int | None:
    with psycopg.connect(pub_dsn, autocommit=True, connect_timeout=3) as c:
        r = c.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint "
                      "FROM pg_replication_slots WHERE slot_name = 'pglab_sub'").fetchone()
        return int(r[0]) if r and r[0] is not None else None


def _caught_up(pub_dsn: str, sub_dsn: str) -> bool:
    return table_hash(pub_dsn, "orders") == table_hash(sub_dsn, "orders")


def run(pub, sub, *, seconds: float = 2.0) -> LogicalReport:
    pd, sd = pub.dsn(pub.primary), sub.dsn(sub.primary)
    password = generate()
    with psycopg.connect(pd, autocommit=True) as c:
        pv = c.execute("SHOW server_version").fetchone()[0]
        c.execute("DROP PUBLICATION IF EXISTS pglab_pub; DROP TABLE IF EXISTS orders")
        c.execute(TABLE_DDL)
        c.execute(f"DROP ROLE IF EXISTS {ROLE}")
        c.execute(f"CREATE ROLE {ROLE} LOGIN REPLICATION PASSWORD '{scram_sha256(password)}'")
        c.execute(f"GRANT SELECT ON orders TO {ROLE}")
        c.execute("CREATE PUBLICATION pglab_pub FOR TABLE orders")
    tps_without = _workload(pd, seconds)
    # before connecting to the subscriber: on Docker this re-plumbs its container's network
    conninfo = publisher_conninfo(pub, sub, password)
    sd = sub.dsn(sub.primary)
    with psycopg.connect(sd, autocommit=True) as c:
        sv = c.execute("SHOW server_version").fetchone()[0]
        c.execute("DROP TABLE IF EXISTS orders")
        c.execute(TABLE_DDL)         # the schema must be there already: DDL is not replicated
        c.execute("CREATE SUBSCRIPTION pglab_sub CONNECTION %s PUBLICATION pglab_pub"
                  .replace("%s", "'" + conninfo.replace("'", "''") + "'"))
    try:
        wait_until(lambda: _caught_up(pd, sd), timeout=60, what="the initial copy of orders",
                   logs=lambda: server.log_tail(sub.ctx.rt, sub.primary))
        # the same workload again, now decoded and shipped; sample the slot's lag meanwhile
        lags: list[int] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                v = _slot_lag(pd)
                if v is not None:
                    lags.append(v)
                stop.wait(0.05)
        th = threading.Thread(target=sample, daemon=True)
        th.start()
        try:
            tps_with = _workload(pd, seconds)
        finally:
            stop.set()
            th.join(timeout=10)
        t0 = time.monotonic()
        wait_until(lambda: _caught_up(pd, sd), timeout=60, what="the subscriber to catch up",
                   logs=lambda: server.log_tail(sub.ctx.rt, sub.primary))
        catchup = time.monotonic() - t0
        ph, sh = table_hash(pd, "orders"), table_hash(sd, "orders")
        with psycopg.connect(pd) as c:
            rows = c.execute("SELECT count(*) FROM orders").fetchone()[0]
        ddl = _ddl_drill(pub, sub, pd, sd)
    finally:
        with psycopg.connect(sd, autocommit=True) as c:
            c.execute("DROP SUBSCRIPTION IF EXISTS pglab_sub")   # drops its slot on the publisher too
    return LogicalReport(pv, sv, rows, ph == sh, ph, sh, round(tps_without, 1), round(tps_with, 1),
                         max(lags, default=0), round(statistics.fmean(lags), 1) if lags else 0.0,
                         round(catchup, 3), **ddl)


def _columns(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as c:
        return [r[0] for r in c.execute("SELECT column_name FROM information_schema.columns "
                                        "WHERE table_name = 'orders' ORDER BY ordinal_position")]


def _apply_errors(sd: str) -> int:
    with psycopg.connect(sd) as c:
        r = c.execute("SELECT apply_error_count FROM pg_stat_subscription_stats "
                      "WHERE subname = 'pglab_sub'").fetchone()
        return int(r[0]) if r else 0


def _ddl_drill(pub, sub, pd: str, sd: str) -> dict:
    # a column only the subscriber has: replication goes on (the column stays at its default)
    with psycopg.connect(sd, autocommit=True) as c:
        c.execute("ALTER TABLE orders ADD COLUMN local_note text")
    with psycopg.connect(pd, autocommit=True) as c:
        c.execute("INSERT INTO orders (customer, amount) VALUES (1, 1)")
        want = c.execute("SELECT max(id) FROM orders").fetchone()[0]

    def has(dsn: str, i: int) -> bool:
        with psycopg.connect(dsn) as c:
            return bool(c.execute("SELECT 1 FROM orders WHERE id = %s", (i,)).fetchone())
    extra_ok = bool(wait_until(lambda: has(sd, want), timeout=30, what="a row despite the extra column"))
    with psycopg.connect(sd, autocommit=True) as c:
        c.execute("ALTER TABLE orders DROP COLUMN local_note")
    # a column only the publisher has: the apply worker stops at the first row that uses it
    before = _apply_errors(sd)
    with psycopg.connect(pd, autocommit=True) as c:
        c.execute("ALTER TABLE orders ADD COLUMN note text")
        c.execute("INSERT INTO orders (customer, amount, note) VALUES (2, 2, 'new column')")
    replicated = "note" in _columns(sd)
    wait_until(lambda: _apply_errors(sd) > before, timeout=30, what="the apply worker to fail on the new column")
    log = server.log_tail(sub.ctx.rt, sub.primary, lines=60)
    err = next((ln.split("ERROR:", 1)[1].strip() for ln in reversed(log.splitlines()) if "ERROR:" in ln), None)
    errors = _apply_errors(sd) - before
    # the fix: give the subscriber the same column; the worker restarts and catches up
    with psycopg.connect(sd, autocommit=True) as c:
        c.execute("ALTER TABLE orders ADD COLUMN note text")
    recovered = bool(wait_until(lambda: _caught_up(pd, sd), timeout=30, what="catch-up after the schema fix"))
    return dict(ddl_replicated=replicated, ddl_error=err, apply_errors=errors, recovered_after_ddl=recovered,
                extra_column_ok=extra_ok)
