"""The failover drill: write, break the primary, let the monitor fail over, heal, rejoin, check.

What it measures, per drill:
  lost acknowledged writes  Jepsen's set checker (lab.failover.checker) against the new primary
  RTO and its phases        detect, elect, promote, reconnect: as lab.failover.phases defines them
  client gap                last ok on the old primary -> first ok on the new one (CloudNativePG's
                            fast-failover figure)
  data loss                 the election's estimate (old primary's last sighting - winner) beside
                            the truth read from the old primary's WAL (lab.failover.truth)
  old-timeline WAL          bytes of the old primary's WAL beyond the fork point (pg_waldump on the
                            old node vs the new timeline's history file): lost writes, seen from WAL
and, from the old primary's own data read (isolated, before the rewind), the ids it has that the new
primary lacks: the acknowledged ones among them must be exactly the lost writes.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

import psycopg

from lab.cluster import server, sql
from lab.failover import reconfigure
from lab.failover.checker import SetCheck, check
from lab.cluster.context import Ctx
from lab.replication import syncpolicy
from lab.model.conninfo import node_dsn, role_dsn
from lab.failover.election import Decision
from lab.errors import InvalidInput, LabError, WaitTimeout
from lab.failover.phases import Phases
from lab.failover.monitor import Monitor, MonitorConfig
from lab.failover.rejoin import Rejoin, rejoin
from lab.ha import manager
from lab.model.syncspec import ASYNC, SyncSpec
from lab.wait import wait_until
from lab.workload.ledger import OK, OK_UNREPLICATED, LedgerSummary, LedgerWriter, final_ids, ids_query, longest_outage

MODES = ("sync", "async")
DRILL_FAULTS = ("kill", "kill-postgres", "stop", "partition", "pause")


@dataclass(frozen=True)
class DrillTimes:
    """The phases as lab.failover.phases defines them, plus the client's gap."""
    detect_s: float | None         # fault -> failure declared
    elect_s: float | None          # declared -> winner chosen
    promote_s: float | None        # chosen -> pg_promote() returned
    reconnect_s: float | None      # promoted -> first ok on the new primary
    rto_s: float | None            # fault -> first ok on the new primary
    silence_s: float | None        # last good check -> declared (not a phase)
    client_gap_s: float | None     # last ok on the old primary -> first ok on the new one
    phases: Phases | None = None   # the time stamps they come from
    outage_s: float | None = None  # the longest stretch without an acknowledged write, fault -> drill end

    @classmethod
    def of(cls, ph: Phases, client_gap_s: float | None, outage_s: float | None = None) -> "DrillTimes":
        return cls(**ph.durations(), client_gap_s=client_gap_s, phases=ph, outage_s=outage_s)


@dataclass(frozen=True)
class DrillResult:
    mode: str
    fault: str
    old_primary: str
    new_primary: str | None
    decision: Decision | None
    check: SetCheck
    ledger: LedgerSummary
    times: DrillTimes
    rejoin: Rejoin | None
    old_minus_new: int | None       # ids the old primary has and the new one lacks
    lost_seen_on_old: int | None    # lost acknowledged writes found on the old primary
    passed: bool
    problems: tuple[str, ...] = field(default_factory=tuple)
    loss_estimate_bytes: int | None = None   # the election's estimate (a lower bound; None: unknown)
    loss_true_bytes: int | None = None       # read from the old primary's WAL before the rejoin
    loss_true_commits: int | None = None
    loss_line: str = ""                      # both, for people
    path: str | None = None          # which path of the monitor declared the failure: fast or slow
    path_reason: str = ""


@dataclass(frozen=True)
class DrillReport:
    results: tuple[DrillResult, ...]
    stats: dict[str, tuple[float, float, float]]   # figure -> (min, median, max)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)


def routed_dsn(ctx: Ctx) -> str:
    """The lab's routed DSN (libpq picks the read-write node), current primary listed first."""
    return role_dsn(ctx.state, "primary")


def set_mode(ctx: Ctx, mode: str) -> SyncSpec:
    """sync: FIRST 1 over the streaming standbys (synchronous_commit as the topology says, 'on' by
    default); async: no synchronous standby."""
    if mode not in MODES:
        raise InvalidInput(f"unknown mode {mode!r}", "use sync or async")
    if mode == "sync":
        # the policy's own names first (an earlier async mode or `sync set none` left none: then every
        # standby, by priority); reconfigure.spec_for keeps only those that stream now
        prio = {n.name: n.priority for n in ctx.topology.nodes}
        names = ctx.topology.sync.names or tuple(sorted(ctx.state.standbys, key=lambda n: (-prio.get(n, 100), n)))
        syncpolicy.put(ctx, SyncSpec("FIRST", 1, names))
    else:
        syncpolicy.put(ctx, ASYNC)
    return reconfigure.restore_sync(ctx, ctx.state.primary, wait=15.0)


def timeline(ctx: Ctx, node: str) -> int | None:
    """The timeline a primary writes on now (sql.timeline); None if it does not answer as one."""
    try:
        return sql.timeline(ctx.state, node)
    except (psycopg.Error, LabError):    # a server that does not answer: not known, never a guess
        return None


def same_timeline(old: str, old_tli: int | None, new: str, new_tli: int | None) -> str | None:
    """A primary that took over must write on a timeline above the old one's: a promotion always
    starts a new one. One that did not became primary some other way (a standby restarted without
    standby.signal finishes crash recovery as a primary on its old timeline), so its WAL and the
    old primary's diverge under one timeline number: pg_rewind then answers "no rewind required"
    and the old primary rejoins on WAL that is not the new primary's."""
    if old_tli is None or new_tli is None or new_tli > old_tli:
        return None
    return (f"{new} took over on timeline {new_tli}, not above {old}'s {old_tli}: it became primary without a "
            f"promotion, and a standby of it can skip the rewind it needs")


def drill_failover(ctx: Ctx, *, mode: str = "sync", fault: str = "kill", lag_standby: str | None = None,
                   clients: int = 4, interval: float = 0.5, timeout: float = 2.0, fence: str = "kill",
                   settle: float = 1.0, fast_path: bool = True, confirm: float = 0.3, say=None) -> DrillResult:
    say = say or (lambda _: None)
    if fault not in DRILL_FAULTS:
        raise InvalidInput(f"unknown fault {fault!r}", f"use one of: {', '.join(DRILL_FAULTS)}")
    old = ctx.state.primary
    standbys = [n for n in ctx.state.nodes if n != old]
    if not standbys:
        raise InvalidInput("a failover drill needs at least one standby", "bring the lab up with --standbys 1 or more")
    if lag_standby is not None and lag_standby not in standbys:
        raise InvalidInput(f"--lag-standby {lag_standby!r} is not a standby", f"standbys are: {', '.join(standbys)}")
    if mode == "async" and lag_standby is None:
        lag_standby = sorted(standbys)[0]
    problems: list[str] = []
    wait_until(lambda: set(standbys) <= reconfigure.streaming(ctx, old), timeout=30,
               what=f"every standby to stream from {old} before the drill")
    # the failover manager (lab.ha) supervises; the drill never asks which one it is
    sup = manager(ctx)
    desc = sup.set_mode(mode)
    say(f"drill: mode {mode} ({desc}), fault {fault} on {old}")
    nodes = {f"{a.host}:{a.port}": n for n, a in ctx.state.nodes.items()}
    run_dir = ctx.state.dir / "ledger"
    writer = LedgerWriter(lambda: routed_dsn(ctx), run_dir / f"{int(time.time() * 1000)}.jsonl", clients=clients,
                          duration=180.0, nodes=nodes).start()
    armed = False
    try:
        wait_until(lambda: sum(1 for o in writer.ops() if o.outcome == OK) >= 50, timeout=15,
                   what="the ledger writer to get going")
        if mode == "async" and lag_standby:
            for s in [s for s in standbys if s != lag_standby] + [lag_standby]:
                sup.starve(s)
                time.sleep(0.3)
            time.sleep(0.5)      # writes the elected standby will never receive
        sup.arm(interval=interval, timeout=timeout, fence=fence, allow_data_loss=(mode == "async"), say=say,
                fast_path=fast_path, confirm=confirm)
        armed = True
        tli_before = timeline(ctx, old)
        t_fault = time.time()
        sup.fault(old, fault)
        # a server restarted in place (kill-postgres under a supervisor) must be counted from when it
        # was really down, not from writes it acknowledged while the signal was on its way
        t_down = time.time()
        say(f"drill: {fault} {old} at {time.strftime('%H:%M:%S', time.localtime(t_fault))}")
        rec = sup.wait_for_takeover(old, t_fault, timeout + 60)
        new = rec.new_primary
        t_count = t_down if new == old else t_fault
        try:
            wait_until(lambda: writer.first_ok_after(t_count, new, sent_after=new == old), timeout=20,
                       what=f"a write acknowledged by {new}")
        except WaitTimeout as e:
            problems.append(e.line())
        if new != old:
            same = same_timeline(old, tli_before, new, timeline(ctx, new))
            if same:
                problems.append(same)
        time.sleep(settle)
        sup.disarm()
        rj = None
        old_ids: set[str] | None = None
        try:
            rj = sup.recover(old, fault, inspect=ids_query(writer.run))
            old_ids = set(rj.inspected) if rj.inspected is not None else None
        except LabError as e:
            problems.append(f"rejoin {old}: {e.line()}")
    finally:
        if armed:
            sup.disarm()
        t_stop = time.time()
        writer.stop()
        summary = writer.wait()
    ops = writer.ops()
    final = final_ids(node_dsn(ctx.state, ctx.state.primary), writer.run)
    res = check([(o.id, o.outcome) for o in ops], final)
    first_new = writer.first_ok_after(t_count, new, sent_after=new == old)
    last_old = max((o.t1 for o in ops if o.outcome in (OK, OK_UNREPLICATED) and o.node == old and o.t1 <= t_fault),
                   default=None)
    times = DrillTimes.of(Phases.of(rec, t_fault, first_new.t1 if first_new else None),
                          (first_new.t1 - last_old) if first_new and last_old else None,
                          longest_outage(ops, t_fault, t_stop))
    fo = rec.failover
    ok_ids = {o.id for o in ops if o.outcome == OK}
    old_minus_new = len(old_ids - final) if old_ids is not None else None
    lost_on_old = len(set(res.lost) & old_ids) if old_ids is not None else None
    if res.checker_error:
        problems.append(f"checker error: {len(res.unexpected)} unexpected, {len(res.failed_present)} failed-but-present")
    if mode == "sync":
        if res.lost:
            problems.append(f"{len(res.lost)} acknowledged writes lost in sync mode")
    else:
        if not res.lost and new != old:   # a server restarted in place lost nothing, rightly
            problems.append("async mode with a lagging standby lost no writes (the lag did not happen?)")
        if old_ids is not None and (lost_on_old != len(res.lost) or len((old_ids - final) & ok_ids) != len(res.lost)):
            problems.append(f"lost writes ({len(res.lost)}) differ from the acknowledged ids the old primary has "
                            f"and the new one lacks ({len((old_ids - final) & ok_ids)})")
    if times.rto_s is None:
        problems.append("no write was acknowledged by the new primary")
    est, true = (fo.loss_estimate_bytes, fo.loss_true_bytes) if fo else (None, None)
    if est is not None and true is not None and true < est:
        problems.append(f"the estimate ({est} B) exceeds the WAL really lost ({true} B): it should be a lower bound")
    return DrillResult(mode, fault, old, new, rec.decision, res, summary, times, rj, old_minus_new, lost_on_old,
                       not problems, tuple(problems), est, true, fo.loss_true_commits if fo else None,
                       fo.loss_line if fo else (("no failover" + (f": {rec.reason}" if rec.reason else "")) if new == old
                                               else "not estimated (the manager chose the new primary)"),
                       rec.path, rec.reason)



@dataclass(frozen=True)
class RestartDrill:
    node: str
    restarts: int
    failovers: int                    # must be 0: a restart is not a failure
    evidence_s: tuple[float, ...]     # how long the fast path saw fail-stop evidence each time before it ended
    confirm_s: float                  # the fast path's confirmation window
    longest_write_gap_s: float | None
    lost: int
    primary_after: str
    passed: bool
    log: tuple[str, ...] = field(default_factory=tuple)


def drill_restart(ctx: Ctx, *, restarts: int = 3, interval: float = 0.5, timeout: float = 2.0, confirm: float = 0.3,
                  clients: int = 2, say=None) -> RestartDrill:
    """Restart the primary (`pg_ctl restart -m fast`) under the monitor with its fast path on: the
    port is refused for a moment and the standbys lose their stream, but the refusal ends before the
    confirmation window does, so there must be no failover."""
    say = say or (lambda _: None)
    if not 1 <= restarts <= 20:
        raise InvalidInput(f"--restarts {restarts} is out of range", "use 1 to 20")
    old = ctx.state.primary
    standbys = [n for n in ctx.state.nodes if n != old]
    wait_until(lambda: set(standbys) <= reconfigure.streaming(ctx, old), timeout=30,
               what=f"every standby to stream from {old} before the drill")
    nodes = {f"{a.host}:{a.port}": n for n, a in ctx.state.nodes.items()}
    writer = LedgerWriter(lambda: routed_dsn(ctx), ctx.state.dir / "ledger" / f"{int(time.time() * 1000)}.jsonl",
                          clients=clients, duration=restarts * (timeout + 10) + 30, nodes=nodes).start()
    monitor = Monitor(ctx, MonitorConfig(interval=interval, timeout=timeout, fence="kill", confirm=confirm,
                                         duration=restarts * (timeout + 10) + 30, max_failovers=1), say=say)
    try:
        monitor.start_thread()
        wait_until(lambda: any("health:" in ln and " ok " in ln for ln in monitor.lines), timeout=10,
                   what="the monitor's first good health check")
        for i in range(restarts):
            say(f"drill: restart {i + 1}/{restarts} of {old}")
            server.restart(ctx.rt, old)
            # the monitor must see the primary healthy again, and wait out a whole timeout
            time.sleep(timeout + 0.5)
    finally:
        res = monitor.stop()
        writer.stop()
        writer.wait()
    ops = writer.ops()
    final = final_ids(routed_dsn(ctx), writer.run)
    chk = check([(o.id, o.outcome) for o in ops], final)
    oks = sorted(o.t1 for o in ops if o.outcome == OK)
    gap = max((b - a for a, b in zip(oks, oks[1:])), default=None)
    ev = tuple(float(ln.split("evidence ended after ")[1].split("s")[0]) for ln in monitor.lines
               if "evidence ended after " in ln)
    n_fo = len(res.failovers) if res else len(monitor.failovers)
    if n_fo and ctx.state.primary != old:
        # the restart was taken for a failure: put the lab back together (the old primary was
        # fenced), so that what runs next finds every node streaming
        try:
            rejoin(ctx, old)
        except LabError as e:
            say(f"drill: rejoin {old} after the false failover: {e.line()}")
    return RestartDrill(old, restarts, n_fo, ev, confirm, gap, len(chk.lost), ctx.state.primary,
                        n_fo == 0 and not chk.lost and ctx.state.primary == old, tuple(monitor.lines))


FIGURES = ("rto_s", "client_gap_s", "outage_s", "detect_s", "elect_s", "promote_s", "reconnect_s")


def repeat(ctx: Ctx, n: int, **kw) -> DrillReport:
    if not 1 <= n <= 100:
        raise InvalidInput(f"--repeat {n} is out of range", "use 1 to 100")
    results = [drill_failover(ctx, **kw) for _ in range(n)]
    return DrillReport(tuple(results), summarize(results))


def summarize(results: list[DrillResult]) -> dict[str, tuple[float, float, float]]:
    out: dict[str, tuple[float, float, float]] = {}
    series = {f: [getattr(r.times, f) for r in results if getattr(r.times, f) is not None] for f in FIGURES}
    series["lost"] = [float(len(r.check.lost)) for r in results]
    series["wal_beyond_fork_bytes"] = [float(r.rejoin.discarded_bytes) for r in results
                                       if r.rejoin and r.rejoin.discarded_bytes is not None]
    series["loss_estimate_bytes"] = [float(r.loss_estimate_bytes) for r in results if r.loss_estimate_bytes is not None]
    series["loss_true_bytes"] = [float(r.loss_true_bytes) for r in results if r.loss_true_bytes is not None]
    for k, xs in series.items():
        if xs:
            out[k] = (min(xs), statistics.median(xs), max(xs))
    return out
