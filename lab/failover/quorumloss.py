"""The quorum-loss drill: a majority of the manager's consensus store (Patroni's etcd) is killed for
`hold` seconds, longer than the leader key's ttl, then restarted with its data, while a ledger
writes through the lab's routed DSN the whole time.

Without failsafe_mode Patroni's leader cannot renew its key and demotes itself after retry_timeout:
the whole cluster is read-only until the quorum is back, although every server is fine. With
failsafe_mode on, the leader asks every member over the REST API (POST /failsafe) and stays primary
while all of them answer.

Measured on the client side: the ledger's acknowledged writes (the longest pause between two, when
they came back after the heal, lost and unexpected ones by the set checker) and the drill's own
probe of every node's pg_is_in_recovery() every PROBE_EVERY s (when no node accepted writes).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import psycopg

from lab.cluster import sql
from lab.cluster.context import Ctx
from lab.errors import InvalidInput
from lab.failover.checker import SetCheck, check
from lab.failover.drill import routed_dsn
from lab.ha import manager
from lab.model.conninfo import node_dsn
from lab.wait import wait_until
from lab.workload.ledger import OK, LedgerWriter, final_ids

PROBE_EVERY = 0.25
HOLD_RANGE = (5.0, 600.0)
BASELINE_S = 5.0             # the same ledger with the store healthy: the floor of its write gaps


@dataclass(frozen=True)
class QuorumLoss:
    manager: str
    failsafe: bool | None            # failsafe_mode during the drill (None: left as the lab had it)
    killed: tuple[str, ...]          # the consensus members killed
    members: int
    hold_s: float
    t_kill: float
    t_heal: float
    demoted_at: float | None         # the probe first found no node accepting writes (None: never)
    primary_back_at: float | None    # …and then a node accepting writes again
    leader_back_at: float | None     # the manager names a leader and a node accepts writes, after the heal
    last_ack_before_gap: float | None   # the longest pause between acknowledged writes: its ends
    first_ack_after_gap: float | None
    floor_gap_s: float | None        # the longest pause with the store healthy (before the kill)
    writes_ok: int
    check: SetCheck

    @property
    def longest_write_gap_s(self) -> float | None:
        if self.last_ack_before_gap is None or self.first_ack_after_gap is None:
            return None
        return self.first_ack_after_gap - self.last_ack_before_gap

    @property
    def demoted_after_s(self) -> float | None:
        return None if self.demoted_at is None else self.demoted_at - self.t_kill

    @property
    def writes_back_after_heal_s(self) -> float | None:
        """From the heal to the first acknowledged write, when writes were stopped until after it."""
        if self.first_ack_after_gap is None or self.first_ack_after_gap < self.t_heal:
            return None
        return self.first_ack_after_gap - self.t_heal

    @property
    def leader_back_after_heal_s(self) -> float | None:
        return None if self.leader_back_at is None else self.leader_back_at - self.t_heal

    @property
    def writes_stopped(self) -> bool:
        """No node accepted writes for a while (the probe's observation, not the ledger's)."""
        return self.demoted_at is not None


def _longest_gap(oks: list[float], t0: float, t1: float, *, ends: bool = True) -> tuple[float, float] | None:
    """The two acknowledgements around the longest pause among those in [t0, t1]; with `ends`, the
    last one before t0 and the first after t1 count too (a pause may begin before the window or
    end after it)."""
    xs = sorted(oks)
    inside = [t for t in xs if t0 <= t <= t1]
    xs = ([t for t in xs if t < t0][-1:] + inside + [t for t in xs if t > t1][:1]) if ends else inside
    pairs = list(zip(xs, xs[1:]))
    return max(pairs, key=lambda p: p[1] - p[0]) if pairs else None


class _PrimaryProbe:
    """Counts the nodes that accept writes every PROBE_EVERY s, in a thread (bounded by stop())."""

    def __init__(self, ctx: Ctx):
        self.ctx = ctx
        self.samples: list[tuple[float, int]] = []
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _writable(self, node: str) -> bool:
        try:
            return sql.scalar(self.ctx.state, node, "SELECT NOT pg_is_in_recovery()") is True
        except psycopg.Error:
            return False

    def _run(self) -> None:
        while not self.stop_event.is_set():
            t = time.time()
            self.samples.append((t, sum(self._writable(n) for n in self.ctx.state.nodes)))
            self.stop_event.wait(PROBE_EVERY)

    def start(self) -> "_PrimaryProbe":
        self.thread.start()
        return self

    def stop(self) -> list[tuple[float, int]]:
        self.stop_event.set()
        self.thread.join(15)
        return list(self.samples)


def check_drill(ctx: Ctx, *, failsafe: bool | None, hold: float) -> list[str]:
    """Refuse in one line, before anything happens; returns the consensus members."""
    mgr = manager(ctx)
    members = mgr.consensus_members()
    if not members:
        raise InvalidInput(f"a {mgr.name} lab has no consensus store whose quorum could be lost",
                           "quorum-loss needs a manager that keeps its state in one: bring a lab up with --ha patroni")
    mgr.check_failsafe(failsafe)
    if not HOLD_RANGE[0] <= hold <= HOLD_RANGE[1]:
        raise InvalidInput(f"--hold {hold:g} is out of range",
                           f"use {HOLD_RANGE[0]:.0f} to {HOLD_RANGE[1]:.0f} s (longer than the ttl to see the leader key expire)")
    return members


def drill(ctx: Ctx, *, failsafe: bool | None = None, hold: float = 40.0, clients: int = 2,
          say=None) -> QuorumLoss:
    """Kill a majority of the consensus store for `hold` s under a ledger, heal, check the writes.
    `failsafe`: Patroni's failsafe_mode for the drill (restored afterwards)."""
    say = say or (lambda _: None)
    members = check_drill(ctx, failsafe=failsafe, hold=hold)
    mgr = manager(ctx)
    with mgr.failsafe_for_drill(failsafe):
        return _run(ctx, mgr, members, failsafe, hold, clients, say)


def _run(ctx: Ctx, mgr, members: list[str], failsafe: bool | None, hold: float, clients: int, say) -> QuorumLoss:
    leader = mgr.leader()
    if leader:
        ctx.state.primary = leader     # the routed DSN lists it first
    nodes = {f"{a.host}:{a.port}": n for n, a in ctx.state.nodes.items()}
    w = LedgerWriter(lambda: routed_dsn(ctx), ctx.state.dir / "ledger" / f"{int(time.time() * 1000)}.jsonl",
                     clients=clients, duration=hold + BASELINE_S + 300, nodes=nodes)
    killed = members[: len(members) // 2 + 1]     # a majority: the store has no quorum
    healed = True
    probe = _PrimaryProbe(ctx)
    w.start()
    try:
        wait_until(lambda: sum(1 for o in w.ops() if o.outcome == OK) >= 20, timeout=30, what="the ledger's first writes")
        t_base = time.time()
        time.sleep(BASELINE_S)
        probe.start()
        t_kill = time.time()
        healed = False
        for m in killed:
            mgr.fault(m, "kill")
        say(f"killed {', '.join(killed)} of {len(members)} consensus members; holding {hold:g} s")
        time.sleep(hold)
        t_heal = time.time()
        for m in killed:
            mgr.heal(m)
        healed = True
        say(f"restarted {', '.join(killed)}; waiting for a leader")

        def back() -> bool:
            return mgr.leader() is not None and any(c for t, c in probe.samples[-1:] if t > t_heal)
        wait_until(back, timeout=120, what="a leader accepting writes after the heal", interval=0.2)
        leader_back = time.time()
        time.sleep(5)       # writes after the heal, to see them come back
    finally:
        if not healed:
            for m in killed:
                mgr.heal(m)
        samples = probe.stop() if probe.thread.is_alive() else probe.samples
        w.stop()
        w.wait()
    ops = w.ops()
    oks = [o.t1 for o in ops if o.outcome == OK]
    new = mgr.leader() or ctx.state.primary
    ctx.state.primary = new
    ctx.save()
    res = check([(o.id, o.outcome) for o in ops], final_ids(node_dsn(ctx.state, new), w.run))
    demoted = next((t for t, c in samples if c == 0 and t >= t_kill), None)
    again = next((t for t, c in samples if demoted is not None and t > demoted and c > 0), None)
    floor = _longest_gap(oks, t_base, t_kill, ends=False)
    gap = _longest_gap(oks, t_kill, leader_back + 5)
    return QuorumLoss(mgr.name, failsafe, tuple(killed), len(members), hold, t_kill, t_heal, demoted, again,
                      leader_back, gap[0] if gap else None, gap[1] if gap else None,
                      (floor[1] - floor[0]) if floor else None, len(oks), res)
