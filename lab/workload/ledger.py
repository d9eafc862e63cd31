"""The ledger writer: N clients inserting unique ids through the routed DSN, every outcome recorded.

Each write is one autocommit INSERT of a row whose id (run:client:seq) is unique, through a
prepared statement (one round trip, no BEGIN/COMMIT): as cheap as a write can be, so the writer
keeps up with pgbench. Its outcome is classified the way Jepsen does (see lab.failover.checker):

  ok               the server acknowledged the commit
  ok_unreplicated  acknowledged, but with the WARNING "canceling wait for synchronous replication …
                   already committed locally" (caught by a notice handler on every connection)
  fail             the server refused the statement (e.g. read-only after landing on a standby):
                   certainly not committed
  unknown          the connection broke or timed out while the statement was in flight: it may
                   have committed; never counted as a failure

A write that hangs (a frozen or cut-off primary) is bounded by `op_timeout`: a watchdog shuts the
socket down, which turns the hang into an `unknown`. Connection attempts that fail consume no id.
Every op goes to a JSON-lines file as it completes; the run is bounded by a duration and/or a count.
"""
from __future__ import annotations

import itertools
import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import psycopg

from lab.errors import InvalidInput
from lab.model.stats import percentile
from lab.wait import wait_until

TABLE = "pglab_ledger"
CREATE = (f"CREATE TABLE IF NOT EXISTS {TABLE} (id text PRIMARY KEY, client int NOT NULL, seq int NOT NULL, "
          "at timestamptz NOT NULL DEFAULT now())")
INSERT = f"INSERT INTO {TABLE} (id, client, seq) VALUES (%s, %s, %s)"
MAX_DURATION = 3600.0
SYNC_WARNING = "synchronous replication"

OK, FAIL, UNKNOWN, OK_UNREPLICATED = "ok", "fail", "unknown", "ok_unreplicated"


@dataclass(frozen=True)
class Op:
    id: str
    client: int
    seq: int
    outcome: str
    t0: float        # wall clock when the INSERT was sent
    t1: float        # when its outcome was known
    node: str | None  # the node that served it (host:port mapped to a node name)
    error: str | None = None

    @property
    def latency(self) -> float:
        return self.t1 - self.t0


@dataclass(frozen=True)
class OutcomeStats:
    count: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None


@dataclass(frozen=True)
class LedgerSummary:
    run: str
    path: str
    clients: int
    elapsed_s: float
    attempted: int
    ok_tps: float                    # acknowledged writes per second over the run
    outcomes: dict[str, OutcomeStats]
    reconnects: int


def _pct(xs: list[float], p: float) -> float:
    return 1000 * percentile(xs, p)


def stats(latencies: list[float]) -> OutcomeStats:
    if not latencies:
        return OutcomeStats(0, None, None, None, None)
    xs = sorted(latencies)
    return OutcomeStats(len(xs), _pct(xs, 50), _pct(xs, 95), _pct(xs, 99), 1000 * xs[-1])


def longest_outage(ops: list[Op], since: float, until: float) -> float | None:
    """The longest time clients went without an acknowledged write, from the last acknowledgement
    before `since` (a fault) to `until` (the writers stopped). The first such stretch is the
    client's gap around the fault; a later one is a second stop that a first-write RTO leaves
    out (a manager draining a primary that had come back, commits waiting for a standby). After
    `since` only writes also sent after it count: an answer a killed server sent just before it
    died says nothing about the service afterwards (as LedgerWriter.first_ok_after(sent_after)).
    None when no write sent after `since` was acknowledged."""
    acked = [op for op in ops if op.outcome in (OK, OK_UNREPLICATED)]
    after = sorted(op.t1 for op in acked if op.t0 >= since and op.t1 <= until)
    if not after:
        return None
    before = sorted(op.t1 for op in acked if op.t1 < since)
    marks = [before[-1] if before else since, *after, until]
    return max(b - a for a, b in zip(marks, marks[1:]))


def ensure_table(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as c:
        c.execute(CREATE)


def final_ids(dsn: str, run: str, wait: float = 30) -> set[str]:
    """The ids of this run present on the server the DSN reaches. A server that does not answer
    yet (a manager restarting or promoting it) is asked again for up to `wait` seconds; then
    WaitTimeout, one line naming the last error."""
    def read() -> tuple[set[str]]:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as c:
            return ({r[0] for r in c.execute(f"SELECT id FROM {TABLE} WHERE starts_with(id, %s)", (run + ":",))},)
    return wait_until(read, timeout=wait, interval=0.2, what="the primary to answer the ledger's final read")[0]


def ids_query(run: str) -> str:
    """The same read as SQL text, for psql on an isolated node (run ids are [0-9a-f] only)."""
    if not all(ch in "0123456789abcdef" for ch in run):
        raise InvalidInput(f"bad ledger run id {run!r}", "run ids are hexadecimal")
    return f"SELECT id FROM {TABLE} WHERE starts_with(id, '{run}:')"


def load_ops(path: str | Path) -> list[Op]:
    ops = []
    with open(path) as f:
        for line in f:
            d = json.loads(line)
            ops.append(Op(d["id"], d["c"], d["s"], d["o"], d["t0"], d["t1"], d.get("n"), d.get("e")))
    return ops


class LedgerWriter:
    """Start with .start(); it stops by itself at `duration`/`count`, or on .stop(); .wait() joins
    and returns the summary. `dsn` may be a callable, read again on every reconnect (the lab's
    routed DSN lists the current primary first)."""

    def __init__(self, dsn: str | Callable[[], str], path: str | Path, *, clients: int = 4,
                 duration: float | None = 10.0, count: int | None = None, op_timeout: float = 3.0,
                 nodes: dict[str, str] | None = None, run: str | None = None):
        if clients < 1 or clients > 64:
            raise InvalidInput(f"--clients {clients} is out of range", "use 1 to 64 clients")
        if duration is None and count is None:
            raise InvalidInput("the ledger writer needs a bound", "give a duration or a count")
        if duration is not None and not 0 < duration <= MAX_DURATION:
            raise InvalidInput(f"duration {duration} is out of range", f"use 0 < duration <= {MAX_DURATION:.0f} s")
        self._dsn = dsn if callable(dsn) else (lambda d=dsn: d)
        self.path = Path(path)
        self.clients = clients
        self.duration = duration if duration is not None else MAX_DURATION
        self.count = count
        self.op_timeout = op_timeout
        self.nodes = nodes or {}
        self.run = run or uuid.uuid4().hex[:10]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._inflight: dict[int, tuple[float, psycopg.Connection]] = {}
        self._threads: list[threading.Thread] = []
        self._ops: list[Op] = []
        self._file = None
        self.reconnects = 0
        self.t_start = 0.0
        self.t_end = 0.0

    # ---- life cycle ------------------------------------------------------------------------
    def start(self) -> "LedgerWriter":
        ensure_table(self._dsn())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "w", buffering=1 << 16)
        self.t_start = time.time()
        self._deadline = time.monotonic() + self.duration
        for c in range(self.clients):
            t = threading.Thread(target=self._client, args=(c,), name=f"ledger-{c}", daemon=True)
            t.start()
            self._threads.append(t)
        wd = threading.Thread(target=self._watchdog, name="ledger-watchdog", daemon=True)
        wd.start()
        self._threads.append(wd)
        return self

    def stop(self) -> None:
        self._stop.set()

    def wait(self, timeout: float | None = None) -> LedgerSummary:
        limit = time.monotonic() + (timeout if timeout is not None else self.duration + self.op_timeout + 10)
        for t in self._threads:
            t.join(max(0.0, limit - time.monotonic()))
        self._stop.set()
        for t in self._threads:
            t.join(self.op_timeout + 5)
        with self._lock:
            if self._file:
                self._file.close()
                self._file = None
        self.t_end = time.time()
        return self.summary()

    def __enter__(self) -> "LedgerWriter":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        self.wait()

    # ---- results while running and after --------------------------------------------------------
    def ops(self) -> list[Op]:
        with self._lock:
            return list(self._ops)

    def first_ok_after(self, t: float, node: str | None = None, *, sent_after: bool = False) -> Op | None:
        """The first write acknowledged after wall-clock time t (on `node`, if given). With
        `sent_after`, only writes also sent after t: an answer a killed server had sent just before
        it died can still be read from the socket afterwards, and proves nothing about it coming back."""
        best = None
        for op in self.ops():
            if op.outcome in (OK, OK_UNREPLICATED) and op.t1 >= t and (node is None or op.node == node) \
                    and (not sent_after or op.t0 >= t):
                if best is None or op.t1 < best.t1:
                    best = op
        return best

    def summary(self) -> LedgerSummary:
        ops = self.ops()
        elapsed = (self.t_end or time.time()) - self.t_start
        by = {o: [op.latency for op in ops if op.outcome == o] for o in (OK, OK_UNREPLICATED, FAIL, UNKNOWN)}
        n_ok = len(by[OK]) + len(by[OK_UNREPLICATED])
        return LedgerSummary(self.run, str(self.path), self.clients, elapsed, len(ops),
                             n_ok / elapsed if elapsed > 0 else 0.0, {o: stats(v) for o, v in by.items()},
                             self.reconnects)

    # ---- the clients -------------------------------------------------------------------------
    def _connect(self, warned: list[bool]) -> psycopg.Connection:
        conn = psycopg.connect(self._dsn(), autocommit=True, prepare_threshold=0, connect_timeout=2)

        def on_notice(diag: psycopg.errors.Diagnostic) -> None:
            if SYNC_WARNING in (diag.message_primary or ""):
                warned[0] = True
        conn.add_notice_handler(on_notice)
        return conn

    def _node_of(self, conn: psycopg.Connection) -> str | None:
        try:
            key = f"{conn.info.host}:{conn.info.port}"
        except psycopg.Error:
            return None
        return self.nodes.get(key, key)

    def _more(self) -> bool:
        return not self._stop.is_set() and time.monotonic() < self._deadline

    def _client(self, client: int) -> None:
        conn: psycopg.Connection | None = None
        warned = [False]
        node = None
        seq = 0
        try:
            while self._more():
                if conn is None:
                    try:
                        conn = self._connect(warned)
                        node = self._node_of(conn)
                        self.reconnects += 1
                    except psycopg.Error:
                        time.sleep(0.02)
                        continue
                n = next(self._ids)
                if self.count is not None and n >= self.count:
                    break
                seq += 1
                op_id = f"{self.run}:{client}:{seq}"
                warned[0] = False
                t0 = time.time()
                self._inflight[client] = (time.monotonic(), conn)
                err = None
                try:
                    conn.execute(INSERT, (op_id, client, seq), prepare=True)
                    outcome = OK_UNREPLICATED if warned[0] else OK
                except psycopg.Error as e:
                    err = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
                    if conn.broken or conn.closed or e.sqlstate is None or e.sqlstate.startswith(("08", "57")):
                        # the link died while the statement was out: it may have committed
                        outcome = UNKNOWN
                    else:
                        outcome = FAIL   # the server answered with an error: not committed
                    # after either, start over on whoever is primary now
                    conn.close()
                    conn = None
                finally:
                    self._inflight.pop(client, None)
                self._record(Op(op_id, client, seq, outcome, t0, time.time(), node, err))
        finally:
            if conn is not None:
                conn.close()

    def _record(self, op: Op) -> None:
        line = json.dumps({"id": op.id, "c": op.client, "s": op.seq, "o": op.outcome, "t0": op.t0, "t1": op.t1,
                           "n": op.node, **({"e": op.error} if op.error else {})})
        with self._lock:
            self._ops.append(op)
            if self._file:
                self._file.write(line + "\n")

    def _watchdog(self) -> None:
        # A write to a frozen or unreachable server blocks in recv() forever; shutting the socket
        # down makes libpq fail the statement, and the client records it as unknown.
        while any(t.is_alive() for t in self._threads if t.name != "ledger-watchdog"):
            now = time.monotonic()
            for client, (since, conn) in list(self._inflight.items()):
                if now - since > self.op_timeout:
                    try:
                        s = socket.socket(fileno=os.dup(conn.pgconn.socket))
                        try:
                            s.shutdown(socket.SHUT_RDWR)
                        finally:
                            s.close()
                    except (OSError, psycopg.Error):
                        pass
                    self._inflight.pop(client, None)
            time.sleep(0.05)
