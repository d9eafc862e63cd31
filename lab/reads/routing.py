"""Read routing for a leader and its followers: where should this read go?

A small library for your own code as much as for the lab's drills:

    from lab.reads.routing import Router, Policy
    r = Router.from_lab(lab)                  # or Router(leader_dsn, {"s1": dsn1, "s2": dsn2})
    w = r.write("alice", "INSERT INTO comments(author, body) VALUES (%s, %s)", ("alice", "hi"))
    rd = r.read("alice", "SELECT count(*) FROM comments WHERE author = %s", ("alice",),
                policy=Policy.TOKEN, token=w.token)
    rd.rows, rd.node, rd.waited_s, rd.fell_back

Policies
  LEADER        every read on the leader: always fresh, all load on one node.
  ANY           a random follower per read: spreads load; no guarantee at all.
  STICKY        the follower chosen by a stable hash of the user id; successive reads of a
                user see one replay stream, so time never goes backwards. When that follower
                is down the read is rerouted (and `rerouted_from` says so); the router then
                waits until the new follower has replayed what the user already saw.
  TOKEN         a follower (the sticky one) but only once it has replayed the causal token
                (the LSN returned by the user's write); after `token_timeout` the read falls
                back to another follower that has it, else to the leader.
  LEADER_WINDOW the leader for `window_s` seconds after the user's last write, else sticky.

The token is `pg_current_wal_lsn()` read right after the write committed: the commit
record ends at or before it, so a follower with `pg_last_wal_replay_lsn() >= token` has
replayed the commit (conservatively: it may wait for a few later records too).
`pg_current_wal_insert_lsn()` is not used: it can point past a page header, where no
replay position ever stops, and a wait on it could only end by timing out.
"""
from __future__ import annotations

import random
import time
import zlib
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import psycopg

from lab.model import lsn as lsnmod


class Policy(str, Enum):
    LEADER = "leader"
    ANY = "any"
    STICKY = "sticky"
    TOKEN = "token"
    LEADER_WINDOW = "leader-window"


LEADER = "leader"


@dataclass(frozen=True)
class WriteResult:
    node: str
    token: str          # LSN after commit, e.g. '0/3000148'
    rows: list = field(default_factory=list)
    latency_s: float = 0.0


@dataclass(frozen=True)
class ReadResult:
    rows: list
    node: str                         # who answered: a follower name or 'leader'
    latency_s: float                  # the whole read, waits included
    waited_s: float = 0.0             # of which: waiting for the follower to replay the token
    fell_back: bool = False           # the token did not arrive in time: another node answered
    rerouted_from: str | None = None  # the sticky follower that was down
    lsn: str | None = None            # a WAL position the answer reflects at least


def sticky_choice(user: str, followers: list[str]) -> list[str]:
    """The user's followers in preference order: a stable hash (crc32, the same in every
    process, unlike Python's hash()) picks the first; the rest follow in ring order."""
    names = sorted(followers)
    if not names:
        return []
    i = zlib.crc32(str(user).encode()) % len(names)
    return names[i:] + names[:i]


class Router:
    """Routes reads of users to a leader and followers given as DSNs (or a Lab).

    Keeps one connection per node and reconnects after a failure; a node that failed is
    skipped for `down_for_s` seconds. Not thread-safe: one Router per thread."""

    def __init__(self, leader: str, followers: dict[str, str], *, token_timeout: float = 2.0,
                 window_s: float = 1.0, down_for_s: float = 1.0, poll_s: float = 0.005,
                 connect_timeout: int = 2, seed: int | None = None, monotonic_floor: bool = True):
        self.dsns = {LEADER: leader, **followers}
        self.followers = sorted(followers)
        self.token_timeout = token_timeout
        self.window_s = window_s
        self.down_for_s = down_for_s
        self.poll_s = poll_s
        self.connect_timeout = connect_timeout
        self.rng = random.Random(seed)
        # remember per user the newest state a read showed, and never route them to an older one
        self.monotonic_floor = monotonic_floor
        self._conns: dict[str, psycopg.Connection] = {}
        self._down_until: dict[str, float] = {}
        self._last_write: dict[str, float] = {}    # user -> monotonic time of the last write
        self._seen: dict[str, int] = {}            # user -> highest replay LSN a read reflected
        self.reroutes: list[tuple[str, str, str]] = []   # (user, from, to)

    @classmethod
    def from_lab(cls, lab: Any, followers: list[str] | None = None, **kw: Any) -> "Router":
        names = followers if followers is not None else list(lab.standbys)
        return cls(lab.dsn(lab.primary), {n: lab.dsn(n) for n in names}, **kw)

    # ---- connections ---------------------------------------------------------------
    def _conn(self, node: str) -> psycopg.Connection:
        c = self._conns.get(node)
        if c is None or c.closed or c.broken:
            c = psycopg.connect(self.dsns[node], autocommit=True, connect_timeout=self.connect_timeout)
            self._conns[node] = c
        return c

    def _failed(self, node: str) -> None:
        c = self._conns.pop(node, None)
        if c is not None:
            try:
                c.close()
            except Exception:  # noqa: BLE001 - it is broken already
                pass
        self._down_until[node] = time.monotonic() + self.down_for_s

    def _usable(self, node: str) -> bool:
        return time.monotonic() >= self._down_until.get(node, 0.0)

    def close(self) -> None:
        for n in list(self._conns):
            self._conns.pop(n).close()

    def __enter__(self) -> "Router":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- writes ------------------------------------------------------------------
    def write(self, user: str, sql: str, params: Any = None, *, session_sql: str | None = None) -> WriteResult:
        """Run a write on the leader (autocommit) and return the causal token for `user`."""
        t0 = time.monotonic()
        c = self._conn(LEADER)
        if session_sql:
            c.execute(session_sql)
        cur = c.execute(sql, params)
        rows = cur.fetchall() if cur.description else []
        token = c.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
        self._last_write[user] = time.monotonic()
        return WriteResult(LEADER, token, rows, time.monotonic() - t0)

    # ---- reads -------------------------------------------------------------------
    def read(self, user: str, sql: str, params: Any = None, *, policy: Policy | str = Policy.STICKY,
             token: str | None = None) -> ReadResult:
        policy = Policy(policy)
        t0 = time.monotonic()
        if policy is Policy.LEADER or not self.followers:
            return self._on(LEADER, sql, params, t0, user=user)
        if policy is Policy.LEADER_WINDOW:
            last = self._last_write.get(user)
            if last is not None and time.monotonic() - last < self.window_s:
                return self._on(LEADER, sql, params, t0, user=user)
            policy = Policy.STICKY
        if policy is Policy.ANY:
            order = self.rng.sample(self.followers, len(self.followers))
            for node in order:
                if self._usable(node):
                    try:
                        return self._on(node, sql, params, t0, user=user)
                    except psycopg.OperationalError:
                        self._failed(node)
            return self._on(LEADER, sql, params, t0, fell_back=True, user=user)
        # STICKY and TOKEN: the user's follower first, then the others in ring order
        order = sticky_choice(user, self.followers)
        wants = [lsnmod.parse(token) if policy is Policy.TOKEN and token else None,
                 self._seen.get(user) if self.monotonic_floor else None]
        need = max((w for w in wants if w is not None), default=None)
        rerouted = None
        tried = False
        waited_total = 0.0
        for node in order:
            if not self._usable(node):
                rerouted = rerouted or order[0]
                continue
            try:
                # only the first usable follower is waited for; the others must have it already
                waited, ok = self._wait_replayed(node, need, self.token_timeout if not tried else 0.0)
                tried = True
                waited_total += waited
                if not ok:
                    # this follower is too far behind: try the next one, finally the leader
                    continue
                res = self._on(node, sql, params, t0, waited=waited_total, rerouted_from=rerouted,
                               fell_back=node != order[0] and rerouted is None)
            except psycopg.OperationalError:
                self._failed(node)
                rerouted = rerouted or node
                continue
            if rerouted:
                self.reroutes.append((user, rerouted, node))
            self.remember(user, res)
            return res
        if rerouted:
            self.reroutes.append((user, rerouted, LEADER))
        return self._on(LEADER, sql, params, t0, waited=waited_total, fell_back=True, rerouted_from=rerouted,
                        user=user)

    def _wait_replayed(self, node: str, need: int | None, timeout: float) -> tuple[float, bool]:
        """Poll the follower until it has replayed `need` (bounded by timeout)."""
        if need is None:
            return 0.0, True
        t0 = time.monotonic()
        c = self._conn(node)
        while True:
            got = lsnmod.parse(c.execute("SELECT pg_last_wal_replay_lsn()::text").fetchone()[0])
            if got is not None and got >= need:
                return time.monotonic() - t0, True
            if time.monotonic() - t0 >= timeout:
                return time.monotonic() - t0, False
            time.sleep(self.poll_s)

    def _on(self, node: str, sql: str, params: Any, t0: float, *, waited: float = 0.0,
            fell_back: bool = False, rerouted_from: str | None = None, user: str | None = None) -> ReadResult:
        c = self._conn(node)
        # one transaction: a position read after the query is at least what the query saw
        # (on the leader its WAL end, on a follower its replay position)
        pos_sql = ("SELECT pg_current_wal_lsn()::text" if node == LEADER
                   else "SELECT pg_last_wal_replay_lsn()::text")
        with c.transaction():
            rows = c.execute(sql, params).fetchall()
            pos = c.execute(pos_sql).fetchone()[0]
        res = ReadResult(rows, node, time.monotonic() - t0, waited, fell_back, rerouted_from, pos)
        if user is not None:
            self.remember(user, res)
        return res

    def remember(self, user: str, result: ReadResult) -> None:
        """Record what a read reflected, so later sticky/token reads of the user are never older."""
        pos = lsnmod.parse(result.lsn)
        if pos is not None:
            self._seen[user] = max(self._seen.get(user, 0), pos)
