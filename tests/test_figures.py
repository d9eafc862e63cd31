"""Every figure pglab prints, checked against a measurement that does not go through pglab.

Each test names its independent reference and the tolerance it allows, with the reason. The lab's
own numbers come from its API (status, the lag recorder, bench commit, the consistency drills);
the references come from plain SQL on the servers, the test's own clock, pgbench's own summary,
and a second reader judged by the pure checkers of lab.reads.anomalies.
"""
from __future__ import annotations

import contextlib
import json
import threading
import time

import psycopg
import pytest
from typer.testing import CliRunner

from lab.cli import app
from lab.cluster.status import Role
from lab.model import lsn
from lab.reads import anomalies
from lab.reads import consistency as cons
from lab.replication import commitbench

from .conftest import assert_clean, unique

runner = CliRunner()


def _sql(lab, node: str, query: str, params=None):
    """Plain SQL on one node, on a connection of the test's own (not through pglab's probes)."""
    with psycopg.connect(lab.dsn(node), autocommit=True) as c:
        return c.execute(query, params).fetchone()


def _write(lab, rows: int = 2000) -> None:
    with psycopg.connect(lab.dsn("p1"), autocommit=True) as c:
        c.execute("SET synchronous_commit = local")    # a frozen standby must not hold the writer
        c.execute("CREATE TABLE IF NOT EXISTS fig (i int, pad text)")
        c.execute("INSERT INTO fig SELECT g, repeat('x', 100) FROM generate_series(1, %s) g", (rows,))


def _pg_replay_diff(lab, standby: str) -> int:
    """PostgreSQL's own figure: pg_wal_lsn_diff(primary's current LSN, standby's replay LSN)."""
    replay = _sql(lab, standby, "SELECT pg_last_wal_replay_lsn()::text")[0]
    return int(_sql(lab, "p1", "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", (replay,))[0])


def _wait_reported(lab, standby: str) -> None:
    """Until the primary's pg_stat_replication shows the standby's real replay position and all
    WAL written there (a live standby replies at least every second)."""
    def ok(_):
        own = _sql(lab, standby, "SELECT pg_last_wal_replay_lsn()::text, pg_last_wal_receive_lsn()::text")
        row = _sql(lab, "p1", "SELECT replay_lsn::text, write_lsn::text, pg_current_wal_lsn()::text "
                              "FROM pg_stat_replication WHERE application_name = %s", (standby,))
        return row and row[0] == own[0] and row[1] == own[1] == row[2]
    lab.wait_for(ok, timeout=15, what=f"{standby}'s positions reported to p1")


# ---- lag bytes --------------------------------------------------------------------------------

def test_lag_bytes_agree_with_pg_wal_lsn_diff_with_replay_paused(make_lab):
    """status and `lag record` vs pg_wal_lsn_diff of the primary's and the standby's LSNs.

    Tolerance: none beyond a bracket. With replay paused the standby's replay LSN cannot move, but
    the primary may write WAL of its own (a checkpoint, autovacuum) at any moment, so the reference
    is taken just before and just after pglab's reading and pglab's figure must lie between."""
    lab = make_lab()
    _write(lab, 100)
    lab.wait_caught_up()
    _sql(lab, "s2", "SELECT pg_wal_replay_pause()")
    try:
        _write(lab, 5000)
        _wait_reported(lab, "s2")
        before = _pg_replay_diff(lab, "s2")
        s2 = lab.status().node("s2")
        after = _pg_replay_diff(lab, "s2")
        assert before > 300_000                                    # the rows s2 has not replayed
        assert before <= s2.replay_lag_bytes <= after
        # write and flush: WAL has arrived (it is only not applied): PostgreSQL says the same
        recv = _sql(lab, "s2", "SELECT pg_last_wal_receive_lsn()::text")[0]
        diff_recv = int(_sql(lab, "p1", "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", (recv,))[0])
        assert 0 <= s2.write_lag_bytes <= diff_recv + (after - before) and s2.flush_lag_bytes == s2.write_lag_bytes
        assert s2.replay_paused and s2.note is None

        before = _pg_replay_diff(lab, "s2")
        rec = lab.record_lag(duration=0.6, interval=0.1)
        after = _pg_replay_diff(lab, "s2")
        series = rec.series("s2")
        assert len(series) >= 3
        for x in series:
            assert before <= x.replay_lag_bytes <= after, (before, x, after)
    finally:
        _sql(lab, "s2", "SELECT pg_wal_replay_resume()")


# ---- lag seconds ------------------------------------------------------------------------------

def test_lag_seconds_follow_the_test_clock_with_replay_paused(make_lab):
    """status's replay seconds vs the test's own clock since its commit, replay paused; and the
    growth between two readings vs the clock between them.

    Tolerances: the commit's WAL is stamped by PostgreSQL between the moment the test sent COMMIT
    (t0) and the moment it returned (t1) — s1 is synchronous, so the WAL left the primary before
    t1; s2's walsender may stamp it a few ms later: -0.1 s. pglab's reading happens inside the
    status call [a, b]. So: a - t1 - 0.1 <= lag <= b - t0 + 0.1 (0.1 s also covers PostgreSQL's
    interpolation between its lag samples). Growth: both readings use the primary's clock at
    the instant of its query, inside each call: b1 - a2 ... b2 - a1, with 0.05 s to spare."""
    lab = make_lab()
    lab.wait_caught_up()
    _sql(lab, "s2", "SELECT pg_wal_replay_pause()")
    try:
        with psycopg.connect(lab.dsn("p1"), autocommit=True) as c:
            t0 = time.time()
            c.execute("CREATE TABLE paused_commit (i int)")
            t1 = time.time()
        readings = []
        for pause in (1.0, 2.0):
            time.sleep(pause)
            a = time.time()
            n = lab.status().node("s2")
            b = time.time()
            readings.append((a, b, n.replay_lag_s))
            assert n.replay_lag_bytes > 0 and n.replay_paused
            assert a - t1 - 0.1 <= n.replay_lag_s <= b - t0 + 0.1, (a - t1, n.replay_lag_s, b - t0)
        (a1, b1, l1), (a2, b2, l2) = readings
        assert a2 - b1 - 0.05 <= l2 - l1 <= b2 - a1 + 0.05, (a2 - b1, l2 - l1, b2 - a1)
    finally:
        _sql(lab, "s2", "SELECT pg_wal_replay_resume()")


def test_a_frozen_standby_is_listed_with_growing_lag_and_does_not_slow_the_view(make_lab):
    """A frozen (SIGSTOP / docker pause) standby: listed by `lag`, marked, its bytes as the primary
    sees them (PostgreSQL's own pg_stat_replication, bracketed as above), its seconds growing with
    the test's clock, at least the age of its last reply; and the view does not wait for it.

    Bound on the view's time: 1.9 s, under libpq's smallest connect timeout (2 s), which the view
    used to wait out on the frozen node; pglab's own deadline is 1.0 s."""
    lab = make_lab()
    lab.wait_caught_up()
    lab.fault("s2", "pause")
    try:
        _write(lab, 20000)
        readings = []
        for pause in (1.5, 2.0):
            time.sleep(pause)
            q = ("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint FROM pg_stat_replication "
                 "WHERE application_name = 's2'")
            before = _sql(lab, "p1", q)[0]
            a = time.monotonic()
            st = lab.status()
            took = time.monotonic() - a
            after = _sql(lab, "p1", q)[0]
            s2 = st.node("s2")
            assert took < 1.9, took
            assert s2.role == Role.UNREACHABLE and s2.stream_state == "streaming"
            assert before > 1_000_000 and before <= s2.replay_lag_bytes <= after
            assert s2.replay_lag_s >= s2.reply_age_s >= pause - 0.1
            readings.append((a, took, s2.replay_lag_s))
        (a1, t1, l1), (a2, t2, l2) = readings
        assert (a2 - a1) - t1 - 0.05 <= l2 - l1 <= (a2 - a1) + t2 + 0.05
        res = runner.invoke(app, ["lag", "--name", lab.name, "--json"])
        assert res.exit_code == 0, res.output
        listed = {n["name"]: n for n in json.loads(res.output)}
        assert set(listed) == {"s1", "s2"} and listed["s2"]["role"] == "unreachable"
        res = runner.invoke(app, ["lag", "--name", lab.name])
        assert "no answer; p1 sees it streaming" in res.output
    finally:
        lab.heal("s2")


# ---- bench commit -----------------------------------------------------------------------------

def test_bench_commit_percentiles_agree_with_pgbench_summary(make_lab):
    """`bench commit` prints TPS (pgbench's) and p50/p99 from pgbench's per-transaction log.
    Reference: pgbench's own summary of the same run (transactions processed, latency average,
    TPS), computed by pgbench from its own clock, not from the log pglab parses.

    Tolerances: count exact (one log line per processed transaction); mean within 0.002 ms + 1%
    (the log holds whole microseconds, pgbench prints its average to 1 µs). TPS by Little's law:
    each client runs one transaction after another with no think time, so pgbench's TPS must be
    clients / mean latency of the logged sample, within 5% (pgbench's own work between two
    transactions of a client, which no latency includes). And logged / -T can only be lower than
    pgbench's TPS, which leaves out the time spent connecting, but not by more than 25% here."""
    lab = make_lab(standbys=1)
    b = commitbench.run(lab.ctx, clients=2, duration=2, levels=("local", "on"), specs=("FIRST 1 (s1)",),
                        visibility=False)
    assert [c.level for c in b.cells] == ["local", "on"]
    for c in b.cells:
        assert c.transactions > 100 and c.logged == c.transactions, c
        assert c.pgbench_avg_ms is not None and abs(c.mean_ms - c.pgbench_avg_ms) <= 0.002 + 0.01 * c.pgbench_avg_ms, c
        assert abs(2 / (c.mean_ms / 1000) - c.tps) <= 0.05 * c.tps, c
        assert 0.75 * c.tps <= c.logged / c.run_s <= c.tps * 1.001, c
        assert 0 < c.p50_ms <= c.p99_ms
    # and the ratio printed beside them is the ratio of the printed figures
    local, on = b.cells
    assert on.p50_x_local == pytest.approx(on.p50_ms / local.p50_ms)


# ---- anomaly counts ---------------------------------------------------------------------------

@contextlib.contextmanager
def reading_beside(reader):
    """Run an independent reader in a thread while the drill runs; stop it after."""
    th = threading.Thread(target=reader.run, daemon=True)
    th.start()
    try:
        yield reader
    finally:
        reader.stop.set()
        th.join(10)


class _Reader:
    """A second reader, independent of pglab's Router: its own connections, its own writes and
    reads, judged by the pure checkers. It runs in a thread beside pglab's drill, on the same lab,
    under the same apply delay."""

    def __init__(self, lab, follower: str):
        self.lab, self.follower = lab, follower
        self.stop = threading.Event()
        self.writes: list[anomalies.Write] = []
        self.reads: dict[str, list[anomalies.Read]] = {"follower": [], "leader": []}

    def run(self) -> None:
        with psycopg.connect(self.lab.dsn("p1"), autocommit=True) as w, \
                psycopg.connect(self.lab.dsn(self.follower), autocommit=True) as f, \
                psycopg.connect(self.lab.dsn("p1"), autocommit=True) as lead:
            i = 0
            while not self.stop.is_set():
                user = f"indep{i % 2}"
                key = w.execute("INSERT INTO indep (author) VALUES (%s) RETURNING id", (user,)).fetchone()[0]
                self.writes.append(anomalies.Write(user, key, time.monotonic()))
                for where, conn in (("follower", f), ("leader", lead)):
                    t = time.monotonic()
                    seen = frozenset(r[0] for r in conn.execute("SELECT id FROM indep WHERE author = %s", (user,)))
                    self.reads[where].append(anomalies.Read(user, seen, t, node=where))
                i += 1
                # one write every 0.4 s: s2 (150 ms late) catches up in between, as the drill
                # waits for before each of its runs
                self.stop.wait(0.4)

    def count(self, where: str) -> tuple[int, int]:
        reads = self.reads[where]
        return len(anomalies.read_after_write(self.writes, reads)), len(reads)


def test_anomaly_counts_agree_with_an_independent_reader():
    """pglab's read-after-write drill vs a second reader doing the same thing by hand beside it.

    The lag is a fixed recovery_min_apply_delay of 150 ms, and a read follows its write within a
    few ms: every read from the delayed follower misses the write just made, every read from the
    leader has it. Tolerance: exact for the leader (0); for the follower, all reads but 1 (one
    read held up > 150 ms on a loaded 2-core machine would see the row), for both readers."""
    base = unique("fg")
    with cons.drill_labs("150ms", name=base, partitions=False) as (a, _):
        with psycopg.connect(a.dsn("p1"), autocommit=True) as c:
            c.execute("CREATE TABLE indep (id bigserial PRIMARY KEY, author text)")
        a.wait_caught_up()
        with reading_beside(_Reader(a, "s2")) as ind:
            d = cons.read_after_write(a, users=2, rounds=4)
        bad, n = ind.count("follower")
        assert n >= 5 and bad >= n - 1, (bad, n)
        assert ind.count("leader")[0] == 0
        none = d.runs[0]
        assert none.remedy.startswith("none") and none.anomalies >= none.reads - 1
        assert d.run("a) leader for a window after a write").anomalies == ind.count("leader")[0] == 0
    assert_clean(f"{base}a")


class _ClockReader:
    """An independent reader of the monotonic drill's clock: one user alternating between the
    two followers (s1 current, s2 150 ms late), one user always on s2; plain connections, the
    pure checker judges. Reads that fail (s1 is killed half-way by the drill) are not recorded."""

    def __init__(self, lab):
        self.lab = lab
        self.stop = threading.Event()
        self.reads: dict[str, list[anomalies.Read]] = {"alternating": [], "s2 only": []}

    def _read(self, conns: dict, node: str) -> int | None:
        # one open connection per follower (a read takes a millisecond, far less than the 150 ms
        # between the followers), opened again after a failure
        try:
            if conns.get(node) is None or conns[node].closed:
                conns[node] = psycopg.connect(self.lab.dsn(node), autocommit=True, connect_timeout=2)
            row = conns[node].execute("SELECT v FROM clock WHERE id = 1").fetchone()
            return row[0] if row else None
        except psycopg.Error:
            if conns.get(node) is not None:
                conns[node].close()
            conns[node] = None
            return None

    def run(self) -> None:
        conns: dict = {}
        try:
            while not self.stop.is_set():
                for user, node in (("alternating", "s1"), ("alternating", "s2"), ("s2 only", "s2")):
                    t = time.monotonic()
                    v = self._read(conns, node)
                    if v is not None:
                        self.reads[user].append(anomalies.Read(user, frozenset(), t, v, node))
                self.stop.wait(0.01)
        finally:
            for c in conns.values():
                if c is not None:
                    c.close()

    def count(self, user: str) -> tuple[int, int]:
        return len(anomalies.monotonic(self.reads[user])), len(self.reads[user])


def test_monotonic_counts_agree_with_an_independent_reader():
    """pglab's monotonic-reads drill vs a second reader beside it, on the same ticking clock.

    Reading a random follower goes back in time when the followers' lags differ (150 ms here, far
    more than a tick): pglab counts > 0, and so does the independent reader alternating between
    s1 and s2. A sticky follower never goes back (one follower replays in order): pglab counts 0,
    and the independent reader that stays on s2 counts 0 too. Tolerance: none (zero is zero; the
    non-zero counts are random, so only their sign is compared)."""
    base = unique("fm")
    with cons.drill_labs("150ms", name=base, partitions=False) as (a, _):
        with reading_beside(_ClockReader(a)) as ind:
            d = cons.monotonic_reads(a, users=4, steps=24)
        rnd, sticky = d.runs[0], d.runs[1]
        alt_bad, alt_n = ind.count("alternating")
        s2_bad, s2_n = ind.count("s2 only")
        assert alt_n >= 10 and s2_n >= 10, (alt_n, s2_n)
        assert rnd.anomalies > 0 and alt_bad > 0
        assert sticky.anomalies == 0 and s2_bad == 0
    assert_clean(f"{base}a")


def test_lsn_diff_is_pg_wal_lsn_diff(shared_lab):
    """lsn.diff against PostgreSQL's pg_wal_lsn_diff, signs and the 4 GB boundary included."""
    pairs = [("0/3000100", "0/3000000"), ("0/1", "0/2"), ("1/0", "0/FFFFFFFF"), ("16/B374D848", "17/0")]
    for x, y in pairs:
        pg = _sql(shared_lab, "p1", "SELECT pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn)", (x, y))[0]
        assert lsn.diff(x, y) == int(pg)
