"""Drills: reading from lagging followers, each anomaly counted without and with its remedy.

Lag is made deterministic with `recovery_min_apply_delay` (a standby replays a commit only
once it is that old), so the same workload gives the same anomaly counts on every run.
Each drill runs one workload several times, changing only the routing (or one setting),
and records a history that the checkers in `lab.reads.anomalies` judge.

    from lab.reads.consistency import drill_labs, read_after_write
    with drill_labs() as (a, b):
        print(read_after_write(a))

Labs: A = p1, s1 (no delay), s2 (apply delay); B = p1, s1 (no delay) — B is only the
second, independently replicated partition of the consistent-prefix drill.
"""
from __future__ import annotations

import contextlib
import statistics
import time
import uuid
import zlib
from dataclasses import dataclass
from typing import Iterator

import psycopg

from lab.reads import anomalies
from lab.cluster import nodes as cluster
from lab.reads.anomalies import Read, Write
from lab.reads.routing import Policy, Router, sticky_choice
from lab.model.syncspec import ASYNC, parse_sync
from lab.model.topology import topology_from_dict
from lab.cluster.handle import Cluster
from lab.cluster.bootstrap import down
from lab.wait import poll, wait_until

# ---- lag you can control -------------------------------------------------------------


def set_apply_delay(lab: Cluster, node: str, delay: str | None) -> None:
    """Set recovery_min_apply_delay on a standby, live: rewrite its pglab.conf and reload."""
    extra = {"recovery_min_apply_delay": delay or "0"}
    cluster.write_config(lab.ctx, node, upstream=lab.primary, extra=extra)
    with lab.connect(node) as c:
        c.execute("SELECT pg_reload_conf()")
        # the reload is asynchronous: wait until the server reports the new value
        want = _ms(extra["recovery_min_apply_delay"])
        wait_until(lambda: _ms(c.execute("SHOW recovery_min_apply_delay").fetchone()[0]) == want, timeout=5,
                   interval=0.02, what=f"{node} to load recovery_min_apply_delay = {delay or '0'}")


def _ms(v: str) -> float:
    v = str(v).strip()
    for unit, f in (("ms", 1), ("s", 1000), ("min", 60000)):
        if v.endswith(unit) and v[: -len(unit)].strip().replace(".", "").isdigit():
            return float(v[: -len(unit)]) * f
    return float(v) if v.replace(".", "").isdigit() else -1


def pause_replay(lab: Cluster, node: str) -> None:
    """Freeze what a standby shows (WAL still arrives; it is not applied) until resume_replay."""
    with lab.connect(node) as c:
        c.execute("SELECT pg_wal_replay_pause()")


def resume_replay(lab: Cluster, node: str) -> None:
    with lab.connect(node) as c:
        c.execute("SELECT pg_wal_replay_resume()")


def throttle(lab: Cluster, node: str, rate: str = "256kbit") -> None:
    """Limit a node's outgoing bandwidth (Docker, or local with netns): lag grows with the
    write rate instead of being a fixed delay. Undo with lab.heal(node, 'throttle')."""
    lab.fault(node, "throttle", rate=rate)


# ---- results ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RemedyRun:
    remedy: str
    reads: int
    anomalies: int
    read_ms: float          # mean latency of a read, waits included
    write_ms: float         # mean latency of a write
    waited_ms: float = 0.0  # mean time spent waiting for a follower to replay a token/floor
    fell_back: int = 0      # reads answered elsewhere because the follower was too far behind
    reroutes: int = 0       # reads rerouted because the user's follower was down
    example: str | None = None


@dataclass(frozen=True)
class DrillResult:
    drill: str
    lag: str
    runs: tuple[RemedyRun, ...]
    notes: tuple[str, ...] = ()

    def run(self, remedy: str) -> RemedyRun:
        return next(r for r in self.runs if r.remedy == remedy)


def _mean_ms(xs: list[float]) -> float:
    return round(statistics.fmean(xs) * 1000, 2) if xs else 0.0


def _summ(remedy, reads, found, read_lat, write_lat, results=(), router=None) -> RemedyRun:
    return RemedyRun(remedy, len(reads), len(found), _mean_ms(read_lat), _mean_ms(write_lat),
                     _mean_ms([r.waited_s for r in results]), sum(1 for r in results if r.fell_back),
                     len(router.reroutes) if router else 0, found[0].detail if found else None)


# ---- labs ------------------------------------------------------------------------------


def drill_topology(delay: str, standbys_delayed: bool = True):
    nodes = [{"name": "p1", "role": "primary"}, {"name": "s1"}]
    if standbys_delayed:
        nodes.append({"name": "s2", "apply_delay": delay})
    return topology_from_dict({"nodes": nodes, "replication": {"synchronous_standby_names": "none"}},
                              source="consistency drill")


@contextlib.contextmanager
def drill_labs(delay: str = "150ms", *, name: str | None = None, runtime: str = "local",
               partitions: bool = True) -> Iterator[tuple]:
    """Lab A (p1, s1, s2 delayed) and, for the prefix drill, lab B (p1, s1); both removed after."""
    base = name or f"cons{uuid.uuid4().hex[:6]}"
    names = [f"{base}a"] + ([f"{base}b"] if partitions else [])
    try:
        a = Cluster.up(drill_topology(delay), name=names[0], runtime=runtime)
        b = Cluster.up(drill_topology(delay, False), name=names[1], runtime=runtime) if partitions else None
        yield a, b
    finally:
        for n in names:
            down(n)


def _reset(conn: psycopg.Connection, ddl: str) -> None:
    conn.execute("SET synchronous_commit = local")
    conn.execute(ddl)


def _wait_caught_up(lab: Cluster) -> None:
    # reads of a drill run must not see leftovers of the previous run still being replayed
    lab.wait_caught_up(timeout=30)


# ---- read-after-write ------------------------------------------------------------------


def read_after_write(lab: Cluster, *, follower: str = "s2", users: int = 3, rounds: int = 4,
                     window_s: float | None = None) -> DrillResult:
    """Each user posts a comment on the leader, then at once lists their comments from a follower."""
    delay_ms = _delay_ms(lab, follower)
    window_s = window_s if window_s is not None else max(0.5, 3 * delay_ms / 1000)
    with lab.connect() as c:
        _reset(c, "DROP TABLE IF EXISTS comments; CREATE TABLE comments "
                  "(id bigserial PRIMARY KEY, author text NOT NULL, body text)")
    _wait_caught_up(lab)
    modes = [
        ("none: sticky follower", dict(policy=Policy.STICKY)),
        ("a) leader for a window after a write", dict(policy=Policy.LEADER_WINDOW)),
        ("b) causal token (wait for replay)", dict(policy=Policy.TOKEN)),
        ("b') causal token, 20ms timeout -> leader", dict(policy=Policy.TOKEN, token_timeout=0.02)),
        ("c) synchronous_commit = remote_apply", dict(policy=Policy.STICKY, remote_apply=True)),
    ]
    runs = []
    for label, m in modes:
        if m.get("remote_apply"):
            cluster.set_sync(lab.ctx, lab.primary, parse_sync(f"FIRST 1 ({follower})", lab.standbys))
            cluster.wait_streaming(lab.ctx, lab.primary, lab.standbys, parse_sync(f"FIRST 1 ({follower})", lab.standbys))
        try:
            runs.append(_raw_run(lab, label, m, follower, users, rounds, window_s))
        finally:
            if m.get("remote_apply"):
                cluster.set_sync(lab.ctx, lab.primary, ASYNC)
    return DrillResult("read-after-write", f"{follower} replays {delay_ms:.0f}ms late", tuple(runs),
                       (f"leader window = {window_s * 1000:.0f}ms after the user's last write",
                        f"remote_apply: synchronous_standby_names = 'FIRST 1 ({follower})' during that run only"))


def _raw_run(lab: Cluster, label, m, follower, users, rounds, window_s) -> RemedyRun:
    writes, reads, results, rlat, wlat = [], [], [], [], []
    session = "SET synchronous_commit = remote_apply" if m.get("remote_apply") else "SET synchronous_commit = on"
    with Router.from_lab(lab, [follower], window_s=window_s,
                         token_timeout=m.get("token_timeout", 5.0)) as r:
        for i in range(rounds):
            for u in range(users):
                user = f"user{u}"
                w = r.write(user, "INSERT INTO comments (author, body) VALUES (%s, %s) RETURNING id",
                            (user, f"comment {i}"), session_sql=session)
                writes.append(Write(user, w.rows[0][0], time.monotonic()))
                wlat.append(w.latency_s)
                t = time.monotonic()
                rd = r.read(user, "SELECT id FROM comments WHERE author = %s", (user,),
                            policy=m["policy"], token=w.token)
                reads.append(Read(user, frozenset(x[0] for x in rd.rows), t, node=rd.node))
                results.append(rd)
                rlat.append(rd.latency_s)
        found = anomalies.read_after_write(writes, reads)
        return _summ(label, reads, found, rlat, wlat, results, r)


def _delay_ms(lab: Cluster, node: str) -> float:
    with lab.connect(node) as c:
        return float(c.execute("SELECT setting FROM pg_settings WHERE name = 'recovery_min_apply_delay'").fetchone()[0])


# ---- monotonic reads -------------------------------------------------------------------


def monotonic_reads(lab: Cluster, *, users: int = 4, steps: int = 30, step_s: float = 0.01,
                    failover_node: str = "s1") -> DrillResult:
    """A clock on the leader ticks; users read it through two followers of different lag."""
    with lab.connect() as c:
        _reset(c, "DROP TABLE IF EXISTS clock; CREATE TABLE clock (id int PRIMARY KEY, v bigint NOT NULL);"
                  "INSERT INTO clock VALUES (1, 0)")
    _wait_caught_up(lab)
    followers = sorted(lab.standbys)
    users = balanced_users(users, followers)
    runs = [_mono_run(lab, "none: random follower per read", Policy.ANY, followers, users, steps, step_s),
            _mono_run(lab, "sticky follower (hash of user id)", Policy.STICKY, followers, users, steps, step_s)]
    # the user's follower fails half-way: rerouted, without and with the "never older" floor
    runs += _mono_failover(lab, followers, users, steps, step_s, failover_node)
    notes = (f"followers: {', '.join(f'{f} ({_delay_ms(lab, f):.0f}ms)' for f in followers)}",
             "sticky users: " + ", ".join(f"{u}->{_first(u, followers)}" for u in users),
             f"failover runs: {failover_node} is killed half-way and started again after")
    return DrillResult("monotonic", " / ".join(f"{f} {_delay_ms(lab, f):.0f}ms" for f in followers), tuple(runs), notes)


def _first(user, followers):
    return sticky_choice(user, followers)[0]


def balanced_users(n: int, followers: list[str]) -> list[str]:
    """n user ids whose sticky followers are spread evenly (so that every follower has users)."""
    per = {f: [] for f in followers}
    for i in range(50 * n + 50):     # bounded: crc32 spreads names well long before this
        u = f"user{i}"
        f = _first(u, followers)
        if len(per[f]) < -(-n // len(followers)):
            per[f].append(u)
        if sum(map(len, per.values())) >= n:
            break
    return sorted(sum(per.values(), []), key=lambda u: int(u[4:]))[:n]


def _tick(conn) -> None:
    conn.execute("UPDATE clock SET v = v + 1 WHERE id = 1")


def _mono_run(lab: Cluster, label, policy, followers, users, steps, step_s) -> RemedyRun:
    reads, results, rlat, wlat = [], [], [], []
    with lab.connect() as w, Router.from_lab(lab, followers, seed=7) as r:
        for _ in range(steps):
            t = time.monotonic()
            _tick(w)
            wlat.append(time.monotonic() - t)
            for u in users:
                t = time.monotonic()
                rd = r.read(u, "SELECT v FROM clock WHERE id = 1", policy=policy)
                reads.append(Read(u, frozenset(), t, rd.rows[0][0], rd.node))
                results.append(rd)
                rlat.append(rd.latency_s)
            time.sleep(step_s)
        return _summ(label, reads, anomalies.monotonic(reads), rlat, wlat, results, r)


def _mono_failover(lab: Cluster, followers, users, steps, step_s, node) -> list[RemedyRun]:
    """Two routers side by side over the same ticks: one forgets what each user saw, one not."""
    hist = {False: ([], [], []), True: ([], [], [])}
    wlat = []
    with lab.connect() as w, Router.from_lab(lab, followers, monotonic_floor=False) as r0, \
            Router.from_lab(lab, followers, token_timeout=0.0) as r1:
        # r1 does not wait for a follower to catch up (that would pause this loop and let the
        # lagging follower catch up for r0 too): it goes to the leader instead
        routers = {False: r0, True: r1}
        try:
            for step in range(steps):
                if step == steps // 2:
                    lab.fault(node, "kill")   # at once: a clean stop would give s2 time to catch up
                t = time.monotonic()
                _tick(w)
                wlat.append(time.monotonic() - t)
                for u in users:
                    for floor, r in routers.items():
                        t = time.monotonic()
                        rd = r.read(u, "SELECT v FROM clock WHERE id = 1", policy=Policy.STICKY)
                        hist[floor][0].append(Read(u, frozenset(), t, rd.rows[0][0], rd.node))
                        hist[floor][1].append(rd)
                        hist[floor][2].append(rd.latency_s)
                time.sleep(step_s)
        finally:
            lab.heal(node)
        out = []
        for floor, label in ((False, f"sticky, {node} fails, rerouted blindly"),
                             (True, f"sticky, {node} fails, rerouted to a node that has what the user saw")):
            reads, results, rlat = hist[floor]
            out.append(_summ(label, reads, anomalies.monotonic(reads), rlat, wlat, results, routers[floor]))
    cluster.wait_streaming(lab.ctx, lab.primary, lab.standbys, ASYNC)
    return out


# ---- consistent prefix -----------------------------------------------------------------


def partition_of(key: str, n: int = 2) -> int:
    return zlib.crc32(key.encode()) % n


def consistent_prefix(slow: Cluster, fast: Cluster, *, conversations: int = 6, slow_follower: str = "s2",
                      fast_follower: str = "s1", wait_s: float = 2.0) -> DrillResult:
    """Two partitions, each its own cluster with its own replication stream: partition 0 is
    `slow` (read through a delayed follower), partition 1 is `fast`. A question and its answer
    are written one after the other; an observer reads the answer, then the question."""
    parts = [(slow, slow_follower), (fast, fast_follower)]
    for lab, _ in parts:
        with lab.connect() as c:
            _reset(c, "DROP TABLE IF EXISTS messages; CREATE TABLE messages "
                      "(id text PRIMARY KEY, conv text NOT NULL, author text NOT NULL, body text)")
        _wait_caught_up(lab)
    users = [f"user{i}" for i in range(40)]
    by_part = {p: [u for u in users if partition_of(u) == p] for p in (0, 1)}
    runs = []
    for label, by_conv in (("none: partition by author", False), ("partition by conversation id", True)):
        reads, rlat, wlat = [], [], []
        causes = {}
        leaders = [lab.connect() for lab, _ in parts]
        followers = [lab.connect(f) for lab, f in parts]
        try:
            for i in range(conversations):
                conv = f"c{i}-{'conv' if by_conv else 'auth'}"
                # askers alternate between the partitions; the answerer lives on the other one
                asker, answerer = by_part[i % 2][i], by_part[1 - i % 2][i]
                q, a = f"{conv}-q", f"{conv}-a"
                causes[a] = q
                pq = partition_of(conv) if by_conv else partition_of(asker)
                pa = partition_of(conv) if by_conv else partition_of(answerer)
                for key, p, author, body in ((q, pq, asker, "why?"), (a, pa, answerer, "because")):
                    t = time.monotonic()
                    leaders[p].execute("INSERT INTO messages VALUES (%s, %s, %s, %s)", (key, conv, author, body))
                    wlat.append(time.monotonic() - t)
                t = time.monotonic()
                seen = set()
                # the observer looks until the answer shows up (bounded)
                if poll(lambda: followers[pa].execute("SELECT 1 FROM messages WHERE id = %s", (a,)).fetchone(),
                        timeout=wait_s, interval=0.005):
                    seen.add(a)
                if followers[pq].execute("SELECT 1 FROM messages WHERE id = %s", (q,)).fetchone():
                    seen.add(q)
                rlat.append(time.monotonic() - t)
                reads.append(Read("observer", frozenset(seen), t, node=f"partition {pa}"))
        finally:
            for c in leaders + followers:
                c.close()
        found = anomalies.consistent_prefix(reads, causes)
        runs.append(_summ(label, reads, found, rlat, wlat))
    return DrillResult("consistent-prefix", f"partition 0 ({slow.name}) follower {slow_follower} "
                       f"{_delay_ms(slow, slow_follower):.0f}ms, partition 1 ({fast.name}) {fast_follower} 0ms",
                       tuple(runs), ("observer latency = until the answer is visible, then the question",))


def run(which: str, delay: str = "150ms", runtime: str = "local") -> list[DrillResult]:
    """Bring the labs up, run one drill (or 'all'), take them down."""
    out = []
    with drill_labs(delay, runtime=runtime, partitions=which in ("prefix", "all")) as (a, b):
        if which in ("read-after-write", "all"):
            out.append(read_after_write(a))
        if which in ("monotonic", "all"):
            out.append(monotonic_reads(a))
        if which in ("prefix", "all"):
            out.append(consistent_prefix(a, b))
    return out
