"""`pglab chaos`: a Jepsen-style soak on a running lab with the failover monitor on.

Throughout the run: the ledger writer (Jepsen's set workload: every write ok / fail / unknown)
through the routed DSN, and a reader that asks every node, every `sample` seconds, whether it is
a writable primary (a fresh short connection each time; a node that does not answer in time is
unknown, never "not primary"). The monitor (fast path on by default) fails over as it would in
production. A seeded schedule (lab.failover.chaos_schedule) injects one fault at a time on a node,
the primary included, holds it, heals it, and waits until every node streams again (an old
primary is rejoined with pg_rewind; a standby left on an old timeline is rejoined too).

At the end, invariants:
  lost          in sync mode, 0 acknowledged writes lost (set checker against the final primary)
  split brain   with fencing, at most one writable primary in every reader sample
  recovery      every node back and streaming within `recover_bound` seconds after the final heal
  leaks         nothing of the lab left behind (checked by the caller after `down`: Lab.chaos)
and per fault kind: injected, skipped (the runtime cannot), on the primary, failovers by path,
false failovers (a failover no fault on the primary called for), recovery time; one line per
failover with its RTO (fault -> first acknowledged write on the new primary).

The data-loss figures of a failover (the election's estimate and the truth from the old primary's
WAL) come from elsewhere: pass `loss_report`, a callable (ctx, FailoverRecord) -> str, and its
answer is printed on the failover's line.
"""
from __future__ import annotations

import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Callable

import psycopg

from lab.cluster import faults, sql
from lab.cluster.context import Ctx
from lab.errors import InvalidInput, LabError, Unsupported
from lab.failover import reconfigure
from lab.failover.chaos_schedule import FAULTS, PRIMARY, FaultEvent, make_schedule, parse_faults
from lab.failover.checker import check
from lab.failover.drill import routed_dsn, set_mode
from lab.wait import poll
from lab.failover.monitor import FailoverRecord, Monitor, MonitorConfig
from lab.failover.rejoin import rejoin
from lab.workload.ledger import OK, LedgerWriter, final_ids

# a failover is called for by these faults on the primary (the fail-slow ones: only when held
# about as long as the timeout)
CALLS_FOR_FAILOVER = ("kill", "stop", "partition", "pause")
FAIL_SLOW = ("partition", "pause")


@dataclass(frozen=True)
class ChaosConfig:
    seed: int = 1
    duration: float = 60.0
    faults: tuple[str, ...] = FAULTS
    mode: str = "sync"
    clients: int = 2
    interval: float = 0.5
    timeout: float = 2.0
    fence: str = "kill"
    fast_path: bool = True
    confirm: float = 0.3
    hold: tuple[float, float] = (1.0, 5.0)
    gap: tuple[float, float] = (1.0, 3.0)
    sample: float = 0.25               # the reader's period
    recover_bound: float = 60.0        # every node streaming within this after a heal

    def check(self) -> "ChaosConfig":
        parse_faults(self.faults)
        if self.mode not in ("sync", "async"):
            raise InvalidInput(f"unknown mode {self.mode!r}", "use sync or async")
        if not 1 <= self.clients <= 16:
            raise InvalidInput(f"--clients {self.clients} is out of range", "use 1 to 16")
        MonitorConfig(interval=self.interval, timeout=self.timeout, fence=self.fence, confirm=self.confirm).check()
        return self


@dataclass(frozen=True)
class FailoverLine:
    old_primary: str
    new_primary: str
    path: str
    reason: str
    during: str | None        # the fault in force: "kill p1", or None
    false: bool               # no fault on the primary called for it
    rto_s: float | None       # fault -> first acknowledged write on the new primary
    loss: str | None = None   # the data-loss estimate / truth, when a loss_report is given
    at: float | None = None   # when the failure was declared (wall clock)


@dataclass(frozen=True)
class FaultOutcome:
    event: FaultEvent
    node: str | None          # the node the fault hit (the target resolved)
    on_primary: bool
    started: float | None     # wall clock
    skipped: str | None       # why it was not injected
    failovers: tuple[FailoverLine, ...]
    recovered_s: float | None  # heal -> every node streaming again
    repaired: tuple[str, ...]  # nodes rejoined to get there
    error: str | None = None


@dataclass(frozen=True)
class KindRow:
    kind: str
    injected: int
    skipped: int
    on_primary: int
    failovers_fast: int
    failovers_slow: int
    false_failovers: int
    recovered_median_s: float | None
    recovered_max_s: float | None


@dataclass(frozen=True)
class ChaosResult:
    seed: int
    duration_s: float
    mode: str
    runtime: str
    schedule: tuple[FaultEvent, ...]
    outcomes: tuple[FaultOutcome, ...]
    kinds: tuple[KindRow, ...]
    failovers: tuple[FailoverLine, ...]
    attempted: int
    ok: int
    unknown: int
    lost: int
    unexpected: int
    samples: int
    max_writable: int            # most writable primaries seen in one reader sample
    split_samples: int           # samples with more than one
    reads: int
    read_errors: int
    final_recovered_s: float | None
    invariants: dict[str, bool]
    leaks: tuple[str, ...] | None = None      # set by the caller after `down` (Lab.chaos)
    problems: tuple[str, ...] = field(default_factory=tuple)
    lost_detail: tuple[str, ...] = field(default_factory=tuple)   # each lost write and the failover after it

    @property
    def false_failovers(self) -> int:
        return sum(1 for f in self.failovers if f.false)

    @property
    def passed(self) -> bool:
        return all(self.invariants.values())


class Reader:
    """Every `period` seconds, ask every node whether it is a writable primary (in parallel, a
    fresh connection each, at most `period` seconds to answer)."""

    def __init__(self, ctx: Ctx, period: float):
        self.ctx, self.period = ctx, period
        self.stop_event = threading.Event()
        self.samples: list[tuple[float, dict[str, bool | None]]] = []
        self.reads = self.errors = 0
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="chaos-reader")
        self._thread = threading.Thread(target=self._run, name="chaos-reader", daemon=True)

    def _ask(self, node: str) -> bool:
        with sql.connect(self.ctx.state, node, connect_timeout=2, options="-c statement_timeout=1000") as c:
            rec, ro = c.execute("SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only')").fetchone()
        return (not rec) and ro == "off"

    def _run(self) -> None:
        while not self.stop_event.is_set():
            t = time.time()
            futs = {n: self._pool.submit(self._ask, n) for n in list(self.ctx.state.nodes)}
            got: dict[str, bool | None] = {}
            for n, f in futs.items():
                try:
                    got[n] = f.result(timeout=max(0.05, t + max(self.period, 0.5) - time.time()))
                    self.reads += 1
                except (psycopg.Error, OSError, FutureTimeout):
                    got[n] = None
                    self.errors += 1
            self.samples.append((t, got))
            self.stop_event.wait(max(0.0, self.period - (time.time() - t)))

    def start(self) -> "Reader":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self._thread.join(10)
        self._pool.shutdown(wait=False, cancel_futures=True)


TRANSIENT = (LabError, psycopg.Error, OSError)


def _why(e: BaseException) -> str:
    return e.line() if isinstance(e, LabError) else (str(e).strip().splitlines() or [type(e).__name__])[0]


def _wait_idle(monitor: Monitor, bound: float) -> bool:
    """Wait (bounded) until the monitor is not in the middle of a failover."""
    return bool(poll(lambda: not monitor.busy.is_set(), timeout=bound, interval=0.05))


def _streaming_all(ctx: Ctx) -> bool:
    p = ctx.state.primary
    return set(ctx.state.nodes) - {p} <= reconfigure.streaming(ctx, p)


def _recover(ctx: Ctx, monitor: Monitor, bound: float, say) -> tuple[float | None, tuple[str, ...], str | None]:
    """Wait until every node streams from the primary; rejoin those that do not within a while
    (an old primary, a standby left on an old timeline). Returns (seconds, rejoined, error)."""
    t0 = time.monotonic()
    repaired: list[str] = []
    deadline = t0 + bound
    grace = t0 + min(10.0, bound / 3)       # a healed standby reconnects by itself (retry interval)
    while time.monotonic() < deadline:
        _wait_idle(monitor, max(0.0, deadline - time.monotonic()))
        if _streaming_all(ctx):
            return time.monotonic() - t0, tuple(repaired), None
        if time.monotonic() >= grace:
            p = ctx.state.primary
            lagging = sorted(set(ctx.state.nodes) - {p} - reconfigure.streaming(ctx, p))
            for n in lagging:
                if monitor.busy.is_set():
                    break
                try:
                    say(f"chaos: {n} does not stream from {p}; rejoining it")
                    rejoin(ctx, n)
                    repaired.append(n)
                except TRANSIENT as e:
                    say(f"chaos: rejoin {n}: {_why(e)}")
            grace = time.monotonic() + 5
        time.sleep(0.2)
    return None, tuple(repaired), f"not every node streams from {ctx.state.primary} after {bound:.0f}s"


def _heal(ctx: Ctx, node: str, failed_over: bool) -> None:
    if failed_over:
        # an old primary: clear what the fault left, then it comes back only as a standby (rejoin)
        for f in faults.active(ctx, node):
            try:
                if f == "pause":
                    ctx.rt.resume(node)
                elif f == "partition":
                    ctx.rt.heal_partition(node)
                elif f == "isolate":
                    ctx.rt.unisolate(node)
                elif f == "throttle":
                    ctx.rt.unthrottle(node)
            except LabError:
                pass
        ctx.rt.resume(node)
        ctx.state.faults[node] = []
        ctx.save()
        rejoin(ctx, node)
    else:
        faults.heal(ctx, node)


def run_chaos(ctx: Ctx, cfg: ChaosConfig, *, say: Callable[[str], None] | None = None,
              loss_report: Callable[[Ctx, FailoverRecord], str | None] | None = None) -> ChaosResult:
    cfg = cfg.check()
    say = say or (lambda _: None)
    nodes = tuple(ctx.state.nodes)
    schedule = make_schedule(cfg.seed, cfg.duration, cfg.faults, nodes, hold=cfg.hold, gap=cfg.gap)
    problems: list[str] = []
    old = ctx.state.primary
    reconfigure.wait_streaming(ctx, old, [n for n in nodes if n != old], 30)
    spec = set_mode(ctx, cfg.mode)
    say(f"chaos: seed {cfg.seed}, {cfg.duration:.0f}s, {len(schedule)} faults planned, mode {cfg.mode} "
        f"({spec.render() or 'async'}), monitor timeout {cfg.timeout}s, fast path {'on' if cfg.fast_path else 'off'}")
    wnodes = {f"{a.host}:{a.port}": n for n, a in ctx.state.nodes.items()}
    writer = LedgerWriter(lambda: routed_dsn(ctx), ctx.state.dir / "ledger" / f"{int(time.time() * 1000)}.jsonl",
                          clients=cfg.clients, duration=cfg.duration + cfg.recover_bound + 120, nodes=wnodes)
    monitor = Monitor(ctx, MonitorConfig(interval=cfg.interval, timeout=cfg.timeout, fence=cfg.fence,
                                         allow_data_loss=(cfg.mode == "async"), duration=cfg.duration + 600,
                                         max_failovers=1000, fast_path=cfg.fast_path, confirm=cfg.confirm),
                      say=lambda line: say(line) if "decision: " in line and "declared" in line else None)
    reader = Reader(ctx, cfg.sample)
    outcomes: list[FaultOutcome] = []
    t_start = time.time()
    final_recovered = None
    seen = 0               # monitor.failovers already attributed to a fault
    try:
        writer.start()
        monitor.start_thread()
        reader.start()
        for ev in schedule:
            now = time.time() - t_start
            if now > cfg.duration:
                break
            if ev.at > now:
                time.sleep(ev.at - now)
            node = ctx.state.primary if ev.target == PRIMARY else ev.target
            was_primary = node == ctx.state.primary
            try:
                faults.inject(ctx, node, ev.kind)
            except Unsupported as e:
                outcomes.append(FaultOutcome(ev, node, was_primary, None, e.line(), (), None, ()))
                continue
            except TRANSIENT as e:
                outcomes.append(FaultOutcome(ev, node, was_primary, None, None, (), None, (), error=_why(e)))
                continue
            t_fault = time.time()
            say(f"chaos: {time.time() - t_start:6.1f}s {ev.kind} {node}{' (primary)' if was_primary else ''}, "
                f"held {ev.hold:.1f}s")
            time.sleep(ev.hold)
            if not _wait_idle(monitor, cfg.recover_bound):
                problems.append(f"the monitor was still failing over {cfg.recover_bound:.0f}s after {ev.kind} {node}")
            failed_over = was_primary and ctx.state.primary != node
            err = None
            try:
                _heal(ctx, node, failed_over)
            except TRANSIENT as e:      # e.g. the monitor failed over again meanwhile: recovery repairs
                err = f"heal {node}: {_why(e)}"
                say(f"chaos: {err}")
            rec_s, repaired, rec_err = _recover(ctx, monitor, cfg.recover_bound, say)
            fos = tuple(_line(ctx, r, writer, t_fault, ev, node, was_primary, cfg.timeout, loss_report, cfg.interval)
                        for r in monitor.failovers[seen:])
            seen += len(fos)
            outcomes.append(FaultOutcome(ev, node, was_primary, t_fault, None, fos, rec_s, repaired,
                                         error=err or rec_err))
        # the final heal: nothing may stay in force, every node must stream again
        t_final = time.monotonic()
        for n in nodes:
            if faults.active(ctx, n) or not ctx.rt.postmaster_running(n):
                try:
                    faults.heal(ctx, n)
                except TRANSIENT as e:
                    problems.append(f"final heal {n}: {_why(e)}")
        rec_s, _, rec_err = _recover(ctx, monitor, cfg.recover_bound, say)
        final_recovered = (time.monotonic() - t_final) if rec_s is not None else None
        if rec_err:
            problems.append(rec_err)
        time.sleep(1.0)
    finally:
        reader.stop()
        monitor.stop()
        writer.stop()
        writer.wait()
    late = monitor.failovers[seen:]      # after the last fault: during the final heal, or false
    ops = writer.ops()
    try:
        final = final_ids(routed_dsn(ctx), writer.run)
    except psycopg.Error as e:
        raise LabError(f"chaos: could not read the final ledger from the primary: {_why(e)}") from None
    res = check([(o.id, o.outcome) for o in ops], final)
    writable = [sum(1 for v in got.values() if v) for _, got in reader.samples]
    all_fos = tuple(f for o in outcomes for f in o.failovers) + tuple(
        _line(ctx, r, writer, r.t_first_failed, None, None, False, cfg.timeout, loss_report, cfg.interval) for r in late)
    invariants = {
        "no acknowledged write lost" if cfg.mode == "sync" else "writes checked (async: losses allowed)":
            (not res.lost) if cfg.mode == "sync" else True,
        "no write present that was never attempted": not res.unexpected,
        "at most one writable primary in every sample" if cfg.fence != "none" else "(no fencing: split brain allowed)":
            (max(writable, default=0) <= 1) if cfg.fence != "none" else True,
        f"every node streaming within {cfg.recover_bound:.0f}s of the final heal": final_recovered is not None,
    }
    by_id = {o.id: o for o in ops}
    lost_detail = tuple(_lost_line(by_id[i], all_fos, t_start) for i in sorted(res.lost, key=lambda i: by_id[i].t1)[:20])
    return ChaosResult(cfg.seed, time.time() - t_start, cfg.mode, ctx.rt.kind, schedule, tuple(outcomes),
                       _kinds(outcomes, cfg.faults), all_fos, len(ops), sum(1 for o in ops if o.outcome == OK),
                       sum(1 for o in ops if o.outcome == "unknown"), len(res.lost), len(res.unexpected),
                       len(reader.samples), max(writable, default=0), sum(1 for w in writable if w > 1),
                       reader.reads, reader.errors, final_recovered, invariants, None, tuple(problems), lost_detail)


def _lost_line(op, fos: tuple[FailoverLine, ...], t_start: float) -> str:
    """A lost acknowledged write, and the first failover declared after it was acknowledged."""
    nxt = min((f for f in fos if f.at and f.at >= op.t0), key=lambda f: f.at, default=None)
    head = f"{op.id} acknowledged by {op.node or '?'} at +{op.t1 - t_start:.2f}s"
    if nxt is None:
        return head + "; no failover after it"
    return (head + f"; next failover {nxt.old_primary}->{nxt.new_primary} ({nxt.path} path, during "
            f"{nxt.during or 'no fault'}) declared {nxt.at - op.t1:.2f}s later")


def _line(ctx: Ctx, r: FailoverRecord, writer: LedgerWriter, t_fault: float, ev: FaultEvent | None, node: str | None,
          was_primary: bool, timeout: float, loss_report, interval: float = 0.5) -> FailoverLine:
    if r.t_declared < t_fault:     # before this fault started: between faults, so nothing called for it
        ev, node, was_primary = None, None, False
    # a freeze or partition held close to the timeout may or may not end in a failover (the last good
    # check came up to an interval before it; a healed node needs a moment): either is right, neither
    # is false; a shorter one must not
    margin = interval + 0.5
    called_for = bool(ev and was_primary and node == r.old_primary and ev.kind in CALLS_FOR_FAILOVER
                      and (ev.kind not in FAIL_SLOW or ev.hold >= timeout - margin))
    first = writer.first_ok_after(t_fault, r.new_primary) if r.new_primary else None
    loss = None
    if loss_report is not None:
        try:
            loss = loss_report(ctx, r)
        except TRANSIENT as e:
            loss = f"unknown ({_why(e)})"
    return FailoverLine(r.old_primary, r.new_primary or "-", r.path, r.reason,
                        f"{ev.kind} {node}" if ev else None, not called_for,
                        (first.t1 - t_fault) if first and ev else None, loss, r.t_declared)


def _kinds(outcomes: list[FaultOutcome], kinds: tuple[str, ...]) -> tuple[KindRow, ...]:
    rows = []
    for k in parse_faults(kinds):
        os_ = [o for o in outcomes if o.event.kind == k]
        rec = [o.recovered_s for o in os_ if o.recovered_s is not None]
        fos = [f for o in os_ for f in o.failovers if f.during]    # declared while this fault was in force
        rows.append(KindRow(k, sum(1 for o in os_ if o.started), sum(1 for o in os_ if o.skipped),
                            sum(1 for o in os_ if o.started and o.on_primary),
                            sum(1 for f in fos if f.path == "fast"), sum(1 for f in fos if f.path == "slow"),
                            sum(1 for f in fos if f.false),
                            statistics.median(rec) if rec else None, max(rec) if rec else None))
    return tuple(rows)
