"""Statement-based replication — A TEACHING MODEL, NOT A PRODUCT.

The replicator forwards the SQL text that clients run on the leader database to a follower
database and runs it there, one committed transaction after another in commit order (as
MySQL's statement-based binlog did). Then it compares the two sides row by row.

What it shows (each scenario on fresh tables, once plain and once with `rewrite=True`):
- now(), random(), gen_random_uuid(): evaluated again on the follower, so the follower
  stores other values. With rewrite=True the replicator evaluates each call on the leader
  first (inside the client's transaction, so now() is the transaction's time) and ships the
  literal: those rows stop diverging.
- a serial default under concurrent inserts: the sequence hands out ids in execution order,
  but the log is in commit order; the follower numbers the rows in a different order. The
  text has nothing to rewrite (the default is in the table) — still diverged.
- UPDATE … WHERE under concurrency: a transaction's WHERE saw the table before another
  transaction's committed change; replayed after that change, it matches other rows.
  Still diverged: only shipping the changed rows (row-based / logical) or a serial order
  of execution fixes it.
"""
from __future__ import annotations

import contextlib
import re
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import psycopg
from psycopg import sql as pgsql

from lab.model.conninfo import with_dbname

# call -> the type its literal is cast to
NONDETERMINISTIC = {
    "now()": "timestamptz", "current_timestamp": "timestamptz", "clock_timestamp()": "timestamptz",
    "random()": "float8", "gen_random_uuid()": "uuid",
}
# a quoted string literal is matched first (and left alone), so 'now()' in a text stays text
_CALL_RE = re.compile(r"'(?:[^']|'')*'|\b(now\(\)|current_timestamp|clock_timestamp\(\)|random\(\)|gen_random_uuid\(\))",
                      re.IGNORECASE)


class StatementReplicator:
    """Leader and follower are two databases (any two: same server or not)."""

    def __init__(self, leader_dsn: str, follower_dsn: str, *, rewrite: bool = False):
        self.leader_dsn, self.follower_dsn, self.rewrite = leader_dsn, follower_dsn, rewrite
        self.log: list[list[str]] = []       # committed transactions, in commit order
        self.shipped = 0
        self._commit_lock = threading.Lock()  # commit + append: the log is in commit order

    def session(self) -> "Session":
        return Session(self)

    def ship(self) -> int:
        """Apply every logged transaction not yet applied, in order; returns how many."""
        n = 0
        with psycopg.connect(self.follower_dsn) as f:
            while self.shipped < len(self.log):
                with f.transaction():
                    for stmt in self.log[self.shipped]:
                        f.execute(stmt)
                self.shipped += 1
                n += 1
        return n


class Session:
    """A client session on the leader whose statements are logged for the follower."""

    def __init__(self, rep: StatementReplicator):
        self.rep = rep
        self.conn = psycopg.connect(rep.leader_dsn)       # not autocommit: explicit transactions
        self.cur = psycopg.ClientCursor(self.conn)        # mogrify: parameters become SQL literals
        self.pending: list[str] = []

    def execute(self, statement: str, params: Any = None) -> list:
        text = self.cur.mogrify(statement, params) if params is not None else statement
        if self.rep.rewrite:
            text = rewrite_calls(text, lambda expr: self.cur.execute(f"SELECT ({expr})::text").fetchone()[0])
        self.cur.execute(text)
        self.pending.append(text)
        return self.cur.fetchall() if self.cur.description else []

    def commit(self) -> None:
        with self.rep._commit_lock:
            self.conn.commit()
            if self.pending:
                self.rep.log.append(self.pending)
        self.pending = []

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def rewrite_calls(text: str, evaluate: Callable[[str], str]) -> str:
    """Replace every non-deterministic call by the literal `evaluate` gives for it (one value per
    call in the statement: right for single-row statements, which is what the scenarios use)."""
    def lit(m: re.Match) -> str:
        call = m.group(1)
        if call is None:
            return m.group(0)
        value = evaluate(call).replace("'", "''")
        return f"'{value}'::{NONDETERMINISTIC[call.lower()]}"
    return _CALL_RE.sub(lit, text)


# ---- comparing the two sides ----------------------------------------------------------


def table_rows(dsn: str, table: str, key: str = "id") -> dict[str, str]:
    with psycopg.connect(dsn) as c:
        q = pgsql.SQL("SELECT {k}::text, t::text FROM {t} t").format(k=pgsql.Identifier(key), t=pgsql.Identifier(table))
        return dict(c.execute(q).fetchall())


def table_hash(dsn: str, table: str) -> str:
    """md5 over the table's rows in a fixed order: equal hashes, equal contents."""
    with psycopg.connect(dsn) as c:
        q = pgsql.SQL("SELECT md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) FROM {t} t").format(
            t=pgsql.Identifier(table))
        return c.execute(q).fetchone()[0]


def diverged_rows(a: dict[str, str], b: dict[str, str]) -> int:
    """Rows (by key) that differ, or exist on one side only."""
    return sum(1 for k in set(a) | set(b) if a.get(k) != b.get(k))


# ---- the scenarios ---------------------------------------------------------------------

SETUP = {
    "now()": "CREATE TABLE ev (id int PRIMARY KEY, at timestamptz)",
    "random()": "CREATE TABLE dice (id int PRIMARY KEY, roll float8)",
    "gen_random_uuid()": "CREATE TABLE tokens (id int PRIMARY KEY, token uuid)",
    "serial, concurrent inserts": "CREATE TABLE items (id serial PRIMARY KEY, name text)",
    "UPDATE … WHERE, concurrent": "CREATE TABLE accounts (id int PRIMARY KEY, balance int, flagged bool DEFAULT false);"
                                  "INSERT INTO accounts VALUES (1, 500), (2, 150), (3, 50)",
}
TABLE = {"now()": "ev", "random()": "dice", "gen_random_uuid()": "tokens",
         "serial, concurrent inserts": "items", "UPDATE … WHERE, concurrent": "accounts"}


def _workload(name: str, rep: StatementReplicator, rows: int) -> None:
    if name in ("now()", "random()", "gen_random_uuid()"):
        tbl, col = {"now()": ("ev", "now()"), "random()": ("dice", "random()"),
                    "gen_random_uuid()": ("tokens", "gen_random_uuid()")}[name]
        with rep.session() as s:
            for i in range(rows):
                s.execute(f"INSERT INTO {tbl} VALUES (%s, {col})", (i,))
                s.commit()
    elif name == "serial, concurrent inserts":
        # A takes id 1, B takes id 2, B commits first: the log says B then A
        with rep.session() as a, rep.session() as b:
            a.execute("INSERT INTO items (name) VALUES ('from A')")
            b.execute("INSERT INTO items (name) VALUES ('from B')")
            b.commit()
            a.commit()
    else:
        # A flags rich accounts (3 is not: 50); B then raises 3 to 200 and commits first.
        # On the leader A's WHERE never saw 200; on the follower B is applied first, so it does.
        with rep.session() as a, rep.session() as b:
            a.execute("UPDATE accounts SET flagged = true WHERE balance > 100")
            b.execute("UPDATE accounts SET balance = 200 WHERE id = 3")
            b.commit()
            a.commit()


@dataclass(frozen=True)
class StatementScenario:
    scenario: str
    rows: int
    diverged_plain: int       # rows that differ when statements are shipped as written
    diverged_rewritten: int   # … when non-deterministic calls are shipped as leader-evaluated literals
    leader_hash_plain: str
    follower_hash_plain: str
    leader_hash_rewritten: str
    follower_hash_rewritten: str

    @property
    def fixed_by_rewrite(self) -> bool:
        return self.diverged_plain > 0 and self.diverged_rewritten == 0


@dataclass(frozen=True)
class StatementReport:
    scenarios: tuple[StatementScenario, ...]
    statements_shipped: int

    @property
    def diverged_plain(self) -> int:
        return sum(s.diverged_plain for s in self.scenarios)

    @property
    def diverged_rewritten(self) -> int:
        return sum(s.diverged_rewritten for s in self.scenarios)


@contextlib.contextmanager
def _two_databases(admin_dsn: str) -> Iterator[dict[str, str]]:
    tag = uuid.uuid4().hex[:8]
    dbs = {side: f"pglab_stmt_{tag}_{side}" for side in ("leader", "follower")}
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        for db in dbs.values():
            admin.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(db)))
        try:
            yield {side: with_dbname(admin_dsn, db) for side, db in dbs.items()}
        finally:
            for db in dbs.values():
                admin.execute(pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(db)))


def throughput(admin_dsn: str, *, seconds: float = 1.0) -> tuple[float, float, float]:
    """Single-row insert transactions per second: straight to the leader, then through the
    replicator (shipped right after each commit). Returns (direct, replicated, mean ship ms)."""
    out = []
    with _two_databases(admin_dsn) as dsn:
        for side in dsn.values():
            with psycopg.connect(side, autocommit=True) as c:
                c.execute("CREATE TABLE bench (id int PRIMARY KEY, v text)")
        ship_s: list[float] = []
        for replicate in (False, True):
            rep = StatementReplicator(dsn["leader"], dsn["follower"])
            n, t0 = 0, time.monotonic()
            with rep.session() as s, psycopg.connect(dsn["follower"]) as f:
                while time.monotonic() - t0 < seconds:
                    s.execute("INSERT INTO bench VALUES (%s, 'x')", (n + (10**6 if replicate else 0),))
                    s.commit()
                    if replicate:          # ship at once, on an open connection
                        t = time.monotonic()
                        with f.transaction():
                            for stmt in rep.log[-1]:
                                f.execute(stmt)
                        ship_s.append(time.monotonic() - t)
                    n += 1
            out.append(n / (time.monotonic() - t0))
    return round(out[0], 1), round(out[1], 1), round(1000 * sum(ship_s) / max(1, len(ship_s)), 3)


def run(admin_dsn: str, *, rows: int = 5) -> StatementReport:
    """Run every scenario twice (plain, rewritten) on two fresh databases of the server at
    `admin_dsn`; the databases are dropped afterwards."""
    out, shipped = [], 0
    with _two_databases(admin_dsn) as dsn:
        for name, ddl in SETUP.items():
            per = {}
            for rewrite in (False, True):
                for side in dsn.values():      # the same starting state on both sides
                    with psycopg.connect(side, autocommit=True) as c:
                        c.execute(f"DROP TABLE IF EXISTS {TABLE[name]}")
                        c.execute(ddl)
                rep = StatementReplicator(dsn["leader"], dsn["follower"], rewrite=rewrite)
                _workload(name, rep, rows)
                shipped += sum(len(t) for t in rep.log)
                rep.ship()
                lead, foll = table_rows(dsn["leader"], TABLE[name]), table_rows(dsn["follower"], TABLE[name])
                per[rewrite] = (diverged_rows(lead, foll), table_hash(dsn["leader"], TABLE[name]),
                                table_hash(dsn["follower"], TABLE[name]), len(lead))
            out.append(StatementScenario(name, per[False][3], per[False][0], per[True][0], per[False][1],
                                         per[False][2], per[True][1], per[True][2]))
    return StatementReport(tuple(out), shipped)
