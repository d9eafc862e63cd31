"""`pglab bench ha`: the failover managers side by side (none, pglab, Patroni, pg_auto_failover,
repmgr; profiles default and fast), the same drill, the same faults, the same checker, on this
machine, against a floor measured in the same run.

floor         kill -9 the primary, pg_promote() the synchronous standby at once, first write (what
              PostgreSQL itself costs: no detection, no election), on a lab without a manager
kill          the whole primary node (its agent too): the machine died
kill-postgres the postmaster only: a supervisor may restart it in place (Patroni, pg_auto_failover)
stop          a clean shutdown of the primary (its agent too)
partition     the node's link down (per-node network namespaces, or Docker)
pause-long    every process of the node frozen until the manager fails over (the drill's `pause`)
pause-short   frozen for half the manager's failover bound, then resumed: any change of leader is a
              false failover; its "RTO" is the longest pause between acknowledged writes
isolate       not a failover drill (see lab.bench.haplan.unsupported)

Every drill: 4 ledger clients writing through libpq's multi-host DSN, RTO = fault -> first write
acknowledged by the new (or restarted) primary; lost / unexpected from the set checker. A cell a
manager cannot do says why (lab.bench.haplan); an unreadable figure is None (unknown), never 0.
"""
from __future__ import annotations

import os
import shutil
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from itertools import pairwise

import psycopg

from lab.api import Lab
from lab.bench.haplan import DRILL_FAULT, NO_FAILOVER_EXPECTED, SOLO, BenchOptions, Setup, setups, unsupported
from lab.errors import LabError, Unsupported
from lab.failover import promotion, rejoin
from lab.failover.primaries import PrimariesProbe
from lab.failover.checker import check
from lab.ha.pgaf_conf import PROFILES as PGAF_PROFILES
from lab.model.haspec import REPMGR_PROFILES
from lab.workload.ledger import OK, final_ids, longest_outage

Say = Callable[[str], None]
#: pglab's monitor in a drill: health checks every 0.5 s, a primary silent for 2 s is gone
DRILL_INTERVAL_S, DRILL_TIMEOUT_S = 0.5, 2.0


@dataclass(frozen=True)
class DrillRow:
    """One drill of one cell. None: not measured (unknown)."""
    manager: str
    profile: str
    fault: str
    mode: str
    attempt: int
    bound_s: float | None            # how long the manager lets a silent primary be before it acts
    duration_s: float                # wall time of the drill, recovery included
    old_primary: str | None = None
    new_primary: str | None = None
    rto_s: float | None = None       # fault -> first acknowledged write on the new (or restarted) primary
    client_gap_s: float | None = None
    detect_s: float | None = None
    promote_s: float | None = None
    lost: int | None = None          # acknowledged writes missing at the end
    unexpected: int | None = None    # rows present that no client attempted
    unknown: int | None = None       # writes whose outcome the client could not know
    leader_moved: bool | None = None
    false_failover: bool | None = None
    rejoin_by: str | None = None     # "manager" (it brought the old primary back by itself), "pglab", None
    rejoin_s: float | None = None
    rejoin_streaming: bool | None = None
    problems: tuple[str, ...] = ()
    error: str | None = None
    outage_s: float | None = None    # the longest stretch without an acknowledged write, fault -> drill end
    recovered: int | None = None     # writes whose client saw no acknowledgement, found present at the end
    two_primaries_s: float | None = None   # the longest window two nodes answered as primary (PrimariesProbe)
    operator_steps: int | None = None      # what the drill did by hand that the manager did not (promote, rejoin)
    ledger: str | None = None        # the drill's ledger file (in the lab's directory: gone with the lab)


@dataclass(frozen=True)
class Cell:
    """One manager x profile x fault x mode: its drills summed up, or why it was not run."""
    manager: str
    profile: str
    fault: str
    mode: str
    rows: tuple[DrillRow, ...] = ()
    unsupported: str | None = None
    n: int = 0                        # drills that ran to the end (no error)
    errors: int = 0
    rto_median_s: float | None = None
    rto_max_s: float | None = None
    detect_median_s: float | None = None
    promote_median_s: float | None = None
    lost: int | None = None
    unexpected: int | None = None
    false_failovers: int | None = None
    leader_moved: int | None = None
    rejoined_by_itself: int | None = None   # of n; None when no drill said
    bound_s: float | None = None
    outage_max_s: float | None = None       # the longest stretch without an acknowledged write, any drill
    recovered: int | None = None
    two_primaries_max_s: float | None = None
    operator_steps_max: int | None = None

    @property
    def label(self) -> str:
        return self.manager if self.profile == "-" else f"{self.manager}-{self.profile}"


def _median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def _max(xs: list[float | None]) -> float | None:
    """The longest over drills; unknown when any drill could not tell (it may have been longer)."""
    return None if not xs or any(x is None for x in xs) else max(x for x in xs if x is not None)


def _sum(xs: list[int | None]) -> int | None:
    """A total over drills; unknown when any drill could not tell (an unknown is not a 0)."""
    return None if not xs or any(x is None for x in xs) else sum(x for x in xs if x is not None)


def make_cell(manager: str, profile: str, fault: str, mode: str, rows: tuple[DrillRow, ...] = (),
              unsupported: str | None = None) -> Cell:
    if unsupported is not None:
        return Cell(manager, profile, fault, mode, rows, unsupported)
    done = [r for r in rows if r.error is None]
    rtos = [r.rto_s for r in done if r.rto_s is not None]
    by_itself = [r.rejoin_by == "manager" for r in done if r.rejoin_by is not None]
    return Cell(manager, profile, fault, mode, rows, None, len(done), len(rows) - len(done),
                _median(rtos), max(rtos) if rtos else None,
                _median([r.detect_s for r in done if r.detect_s is not None]),
                _median([r.promote_s for r in done if r.promote_s is not None]),
                _sum([r.lost for r in done]), _sum([r.unexpected for r in done]),
                _sum([None if r.false_failover is None else int(r.false_failover) for r in done]),
                _sum([None if r.leader_moved is None else int(r.leader_moved) for r in done]),
                sum(by_itself) if by_itself else None, rows[0].bound_s if rows else None,
                _max([r.outage_s for r in done]), _sum([r.recovered for r in done]),
                _max([r.two_primaries_s for r in done]),
                None if not done or any(r.operator_steps is None for r in done) else max(r.operator_steps for r in done))


@dataclass(frozen=True)
class BenchResult:
    options: BenchOptions
    floors_s: tuple[float, ...]          # the floor, measured in this run
    floor_error: str | None
    cells: tuple[Cell, ...]
    labs: tuple[str, ...]                # every lab the bench brought up (all down again)
    root: bool                           # per-node network namespaces were possible
    duration_s: float = 0.0
    drill_seconds: dict[str, float] = field(default_factory=dict)   # manager-profile -> mean s per drill

    @property
    def floor_median_s(self) -> float | None:
        return _median(list(self.floors_s))


def bound_s(lab: Lab, manager: str) -> float:
    """How long the manager lets a silent primary be before it acts (pause-short holds half)."""
    ha = lab.topology.ha
    if manager == "patroni":
        return float(ha.ttl)
    if manager == "pg_auto_failover":
        return PGAF_PROFILES[ha.profile]["node_considered_unhealthy_timeout"] / 1000
    if manager == "repmgr":
        # repmgrd: a monitor interval, then reconnect_attempts tries reconnect_interval apart
        t = REPMGR_PROFILES[ha.profile]
        return float(t["monitor_interval_secs"] + t["reconnect_attempts"] * t["reconnect_interval"])
    return DRILL_TIMEOUT_S


def floor(lab: Lab) -> float:
    """kill -9 the primary -> pg_promote() on the synchronous standby -> first write, by hand."""
    old = lab.primary
    target = next(n.name for n in lab.status().nodes if n.sync_state == "sync")
    with psycopg.connect(lab.dsn(target), autocommit=True) as conn:
        t0 = time.time()
        lab.ctx.rt.kill(old)
        conn.execute("SELECT pg_promote(true, 60)")
        conn.execute("CREATE TABLE IF NOT EXISTS floor_probe (t float8)")
        conn.execute("INSERT INTO floor_probe VALUES (%s)", (t0,))
        dt = time.time() - t0
    # put the lab back together with the lab's own tools (not timed)
    lab.ctx.state.primary = target
    promotion._reconfigure(lab.ctx, target, old, t0, t0, {old}, 10.0)
    rejoin.rejoin(lab.ctx, old)
    return dt


def _rejoin_by(rj) -> str | None:
    if rj is None:
        return None
    return "manager" if rj.method in ("patroni", "pg_auto_failover") else "pglab"


def keep_ledger(row: DrillRow, dest: Path, say: Say) -> Path | None:
    """A drill that found a problem (acknowledged writes lost in sync mode, a rejoin that timed
    out): its ledger, every write with its id, outcome, times and node, beside the lab's logs. The
    proof a lost write needs; only for such drills, since a ledger holds every write."""
    try:
        dest.mkdir(parents=True, exist_ok=True)
        to = dest / f"ledger-{row.fault}-{row.mode}-{row.attempt}.jsonl"
        shutil.copyfile(row.ledger or "", to)
    except OSError as e:
        say(f"the ledger of {row.fault} {row.mode} #{row.attempt} could not be kept: {e}")
        return None
    say(f"{row.fault} {row.mode} #{row.attempt}: its ledger is kept in {to} ({'; '.join(row.problems)})")
    return to


def operator_steps(manager: str, moved: bool, rejoin_by: str | None) -> int:
    """What the drill did by hand that the manager did not: the promotion (`none`: the drill plays
    the operator) and bringing the old primary back (pglab's rejoin, where the manager does not)."""
    return int(manager == "none" and moved) + int(rejoin_by == "pglab")


def drill_row(lab: Lab, setup: Setup, fault: str, mode: str, attempt: int) -> DrillRow:
    t0 = time.time()
    probe = PrimariesProbe(lab.ctx).start()
    try:
        rep = lab.drill_failover(mode=mode, fault=DRILL_FAULT[fault], interval=DRILL_INTERVAL_S, timeout=DRILL_TIMEOUT_S)
    finally:
        two = probe.stop()
    r = rep.results[0]
    moved = r.new_primary is not None and r.new_primary != r.old_primary
    no_failover = fault in NO_FAILOVER_EXPECTED.get(setup.manager, set())
    by = _rejoin_by(r.rejoin)
    return DrillRow(setup.manager, setup.profile, fault, mode, attempt, bound_s(lab, setup.manager), time.time() - t0,
                    r.old_primary, r.new_primary, r.times.rto_s, r.times.client_gap_s, r.times.detect_s,
                    r.times.promote_s, len(r.check.lost), len(r.check.unexpected), r.check.unknown, moved,
                    moved and no_failover, by, r.rejoin.duration_s if r.rejoin else None,
                    r.rejoin.streaming if r.rejoin else None, tuple(r.problems), outage_s=r.times.outage_s,
                    recovered=len(r.check.recovered), two_primaries_s=two,
                    operator_steps=operator_steps(setup.manager, moved, by), ledger=r.ledger.path)


def pause_short(lab: Lab, setup: Setup, attempt: int) -> DrillRow:
    """Freeze the primary for half the manager's bound, resume, and see whether the leader moved;
    the set checker over the writes made meanwhile."""
    t_start = time.time()
    m, ha = setup.manager, lab.topology.ha
    bound = bound_s(lab, m)
    hold = bound / 2
    sup = lab.manager
    old = sup.leader()
    # `none` has no supervisor between drills: the drill's operator (pglab's monitor) watches here too
    armed = m == "none"
    if armed:
        sup.arm(interval=DRILL_INTERVAL_S, timeout=DRILL_TIMEOUT_S, fence="kill", allow_data_loss=False, say=lambda _: None)
    w = lab.ledger(clients=2, duration=hold + 90).start()
    probe = PrimariesProbe(lab.ctx).start()
    try:
        lab.wait_for(lambda _: sum(1 for o in w.ops() if o.outcome == OK) > 50, timeout=15, what="writes")
        t0 = time.time()
        lab.fault(old, "pause")
        time.sleep(hold)
        lab.heal(old, "pause")
        # long enough for the manager to act on what it saw (its next loops), bounded
        if m == "patroni":
            time.sleep(2 * ha.loop_wait + 5)
        elif m == "repmgr":
            time.sleep(bound / 2 + 5)
        elif m == "pg_auto_failover":
            time.sleep(bound + 3)
        else:
            time.sleep(3)
        new = sup.leader()
    finally:
        if armed:
            sup.disarm()
        t_stop = time.time()
        w.stop()
        w.wait()
        two = probe.stop()
    ops = w.ops()
    oks = sorted(o.t1 for o in ops if o.outcome == OK and o.t1 >= t0 - 1)
    gap = max((b - a for a, b in pairwise(oks)), default=None)
    rj = None
    if new != old:    # put the old one back for the next drill
        rj = sup.recover(old, "pause")
    res = check([(o.id, o.outcome) for o in ops], final_ids(lab.dsn(role="primary"), w.run))
    moved = new is not None and new != old
    by = _rejoin_by(rj)
    return DrillRow(m, setup.profile, "pause-short", "sync", attempt, bound, time.time() - t_start, old, new, gap,
                    None, None, None, len(res.lost), len(res.unexpected), res.unknown, moved, moved,
                    by, rj.duration_s if rj else None, rj.streaming if rj else None,
                    (f"hold {hold:.1f}s",), outage_s=longest_outage(ops, t0, t_stop), recovered=len(res.recovered),
                    two_primaries_s=two, operator_steps=operator_steps(m, moved, by))


def _name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:5]}"


def _run_setup(s: Setup, opts: BenchOptions, prefix: str, say: Say,
               stop: threading.Event | None = None, keep_logs: Path | None = None) -> tuple[list[Cell], list[str], list[float]]:
    """One manager-profile: its lab up, every cell's drills, its lab down. Returns the cells, the
    labs it brought up, and the seconds each drill took. `stop`: no new drill once it is set.
    `keep_logs`: each lab's logs are copied into a directory of its name there before it goes down."""

    def down(lab: Lab) -> None:
        if keep_logs is not None:
            try:
                lab.save_logs(keep_logs / lab.name)
                say(f"{s.label}: logs of lab {lab.name} kept in {keep_logs / lab.name}")
            except OSError as e:
                say(f"{s.label}: the logs of lab {lab.name} could not be kept: {e}")
        lab.down()

    labs: list[str] = []
    secs: list[float] = []
    cells: list[Cell] = []
    todo = [(f, md) for f in opts.faults for md in opts.modes]
    plan = {(f, md): unsupported(s, f, md) for f, md in todo}
    runnable = [k for k, why in plan.items() if why is None]
    rows: dict[tuple[str, str], list[DrillRow]] = {k: [] for k in runnable}
    refused: dict[tuple[str, str], str] = {k: why for k, why in plan.items() if why is not None}
    lab: Lab | None = None
    lab_error = ""
    if runnable:
        name = _name(prefix)
        labs.append(name)
        try:
            lab = Lab.up(name=name, **s.up)
        except Unsupported as e:
            refused.update({k: e.line() for k in runnable})
            runnable = []
        except LabError as e:
            for k in runnable:
                rows[k].append(DrillRow(s.manager, s.profile, k[0], k[1], 1, None, 0.0, error=f"lab up: {e.line()}"))
            runnable = []
    try:
        for k in runnable:
            f, md = k
            for i in range(1, opts.repeat + 1):
                if k in refused or (stop is not None and stop.is_set()):
                    break
                t0 = time.time()
                if lab is None:
                    rows[k].append(DrillRow(s.manager, s.profile, f, md, i, None, 0.0, error=lab_error))
                    continue
                try:
                    row = pause_short(lab, s, i) if f == "pause-short" else drill_row(lab, s, f, md, i)
                except Unsupported as e:         # the drill's own refusal: the cell says why
                    refused[k] = e.line()
                    break
                except LabError as e:
                    row = DrillRow(s.manager, s.profile, f, md, i, None, time.time() - t0, error=e.line())
                rows[k].append(row)
                secs.append(row.duration_s)
                if keep_logs is not None and row.problems and row.ledger:
                    keep_ledger(row, keep_logs / lab.name, say)
                say(f"{s.label} {f} {md} #{i}: " + (f"error: {row.error}" if row.error else
                    f"RTO {_s(row.rto_s)}, lost {row.lost}, {row.old_primary} -> {row.new_primary}, "
                    f"{row.duration_s:.0f}s"))
                if row.error is not None and lab is not None:   # start again from a fresh lab
                    down(lab)
                    name = _name(prefix)
                    labs.append(name)
                    try:
                        lab = Lab.up(name=name, **s.up)
                    except LabError as e:
                        lab, lab_error = None, f"lab up: {e.line()}"
    finally:
        if lab is not None:
            down(lab)
    for f, md in todo:
        cells.append(make_cell(s.manager, s.profile, f, md, tuple(rows.get((f, md), ())), refused.get((f, md))))
    return cells, labs, secs


def run(opts: BenchOptions, *, say: Say | None = None, prefix: str = "bh", keep_logs: Path | None = None) -> BenchResult:
    """Every cell of the options, each lab brought up and down again; the floor first.
    `keep_logs`: a directory where each manager's lab leaves its logs (Lab.save_logs) when it goes down."""
    say = say or (lambda _: None)
    t_start = time.time()
    root = os.geteuid() == 0 and opts.runtime == "local"
    labs: list[str] = []
    floors: list[float] = []
    floor_error = None
    name = _name(prefix + "f")
    labs.append(name)
    try:
        lab = Lab.up(name=name, runtime=opts.runtime, **({"netns": False} if opts.runtime == "local" else {}))
        try:
            floors = [floor(lab) for _ in range(opts.repeat)]
        finally:
            lab.down()
        say("floor (kill -9, pg_promote at once, first write): " + ", ".join(f"{x:.2f}s" for x in floors))
    except LabError as e:
        floor_error = e.line()
        say(f"floor: {floor_error}")
    plan = setups(opts, root=root)
    done: dict[str, tuple[list[Cell], list[str], list[float]]] = {}
    # the CPU-bound managers alone, one after the other; then the timer-bound ones, --jobs at a time
    for st in [x for x in plan if x.manager in SOLO]:
        done[st.label] = _run_setup(st, opts, prefix, say, None, keep_logs)
    # default profiles first: their drills wait longest, and started last they would end last, alone
    rest = sorted((x for x in plan if x.manager not in SOLO), key=lambda x: x.profile != "default")
    if opts.jobs > 1 and len(rest) > 1:
        stop = threading.Event()
        with ThreadPoolExecutor(max_workers=opts.jobs, thread_name_prefix="bench-ha") as ex:
            futures = {st.label: ex.submit(_run_setup, st, opts, prefix, say, stop, keep_logs) for st in rest}
            try:
                for label, fut in futures.items():
                    done[label] = fut.result()
            except KeyboardInterrupt:
                # leaving the pool waits for its threads: each ends its running drill and downs its lab
                stop.set()
                for fut in futures.values():
                    fut.cancel()
                say("interrupted: the running drills end, then their labs go down")
                raise
    else:
        for st in rest:
            done[st.label] = _run_setup(st, opts, prefix, say, None, keep_logs)
    cells: list[Cell] = []
    per_drill: dict[str, list[float]] = {}
    for st in plan:
        c, ls, secs = done[st.label]
        cells += c
        labs += ls
        if secs:
            per_drill[st.label] = secs
    return BenchResult(opts, tuple(floors), floor_error, tuple(cells), tuple(labs), root, time.time() - t_start,
                       {k: statistics.mean(v) for k, v in per_drill.items()})


def _s(x: float | None) -> str:
    return "unknown" if x is None else f"{x:.2f}s"
