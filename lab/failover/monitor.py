"""The failover supervisor: health-check the primary, declare it failed, fail over.

Every `interval` seconds it opens a fresh connection to the recorded primary with a short deadline
(a frozen or cut-off server never answers; waiting for it must not stall the loop). When no check
has succeeded for `timeout` seconds the primary is declared failed and the monitor fails over as
`lab.failover.promotion.failover` does, with the primary's last WAL position it saw as the data-loss guard's
reference. The defaults (0.5 s / 2 s) are much shorter than Patroni's (~30 s), pg_auto_failover's
(~20 s) or repmgr's (~60 s): on one machine there are no network hiccups to ride out; the slow-failover
experiments vary --timeout to show the trade-off.

Each change of health and each decision is logged with a timestamp, to the caller and to
<lab dir>/monitor.log. In the background it is a detached process whose pid is in
<lab dir>/monitor.pid; `pglab down` kills it.
"""
from __future__ import annotations

import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable

import psycopg

from lab.failover import promotion
from lab.cluster import background, sql
from lab.model import state as lab_state
from lab.cluster.context import Ctx
from lab.failover.election import DEFAULT_MAX_LAG_BYTES, Decision, LastSeen
from lab.errors import InvalidInput, LabError

LOG_FILE = "monitor.log"
MAX_DURATION = 24 * 3600.0


@dataclass(frozen=True)
class MonitorConfig:
    interval: float = 0.5
    timeout: float = 2.0
    fence: str = "kill"              # the lab can reach its nodes: STONITH before promoting
    max_lag_bytes: int = DEFAULT_MAX_LAG_BYTES
    allow_data_loss: bool = False
    duration: float = 60.0
    max_failovers: int = 10

    def check(self) -> "MonitorConfig":
        if not 0.05 <= self.interval <= 60:
            raise InvalidInput(f"--interval {self.interval} is out of range", "use 0.05 to 60 s")
        if not self.interval <= self.timeout <= 600:
            raise InvalidInput(f"--timeout {self.timeout} is out of range", "use interval <= timeout <= 600 s")
        if not 0 < self.duration <= MAX_DURATION:
            raise InvalidInput(f"--duration {self.duration} is out of range", f"use 0 < duration <= {MAX_DURATION:.0f} s")
        if self.fence not in promotion.FENCES:
            raise InvalidInput(f"unknown fencing {self.fence!r}", f"use one of: {', '.join(promotion.FENCES)}")
        return self


@dataclass(frozen=True)
class FailoverRecord:
    old_primary: str
    new_primary: str | None
    t_last_ok: float         # the last successful health check before the failure
    t_first_failed: float    # the first failed check
    t_declared: float        # failure declared (timeout reached)
    t_elected: float | None
    t_promoted: float | None
    t_done: float | None
    decision: Decision | None
    error: str | None = None
    failover: "promotion.Failover | None" = None   # with the estimate and the truth of the data loss


@dataclass(frozen=True)
class MonitorResult:
    checks: int
    failed_checks: int
    failovers: tuple[FailoverRecord, ...]
    log: tuple[str, ...] = field(default_factory=tuple)


class Monitor:
    def __init__(self, ctx: Ctx, config: MonitorConfig | None = None, *, say: Callable[[str], None] | None = None,
                 log_path: str | Path | None = None, reload_state: bool = False):
        self.ctx = ctx
        self.cfg = (config or MonitorConfig()).check()
        self.say = say or (lambda _: None)
        self.log_path = Path(log_path) if log_path else ctx.state.dir / LOG_FILE
        self.reload_state = reload_state
        self.stop_event = threading.Event()
        self.failovers: list[FailoverRecord] = []
        self.lines: list[str] = []
        self._thread: threading.Thread | None = None
        self._result: MonitorResult | None = None
        self.busy = threading.Event()     # set while a failover is in progress

    # ---- logging --------------------------------------------------------------------------
    def log(self, text: str) -> None:
        line = f"{datetime.now().isoformat(timespec='milliseconds')} {text}"
        self.lines.append(line)
        try:
            with open(self.log_path, "a") as f:
                f.write(line + "\n")
        except OSError:
            pass
        self.say(line)

    # ---- one health check -------------------------------------------------------------------
    def _check(self, node: str) -> tuple[str, int, float]:
        """(position, timeline, when asked) of a healthy primary; the sighting is also recorded
        for later manual failovers (lab.model.state.primary_seen)."""
        with sql.connect(self.ctx.state, node, connect_timeout=2,
                         options="-c statement_timeout=1000") as c:
            asked = time.time()
            rec, pos, tli = c.execute(
                "SELECT pg_is_in_recovery(), pg_current_wal_lsn()::text, "
                "('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int").fetchone()
        if rec:
            raise psycopg.OperationalError(f"{node} is in recovery")
        lab_state.record_primary_seen(self.ctx.name, lab_state.PrimarySeen(node, pos, tli, asked, "the monitor"))
        return pos, tli, asked

    # ---- the loop ---------------------------------------------------------------------------
    def run(self) -> MonitorResult:
        cfg = self.cfg
        end = time.monotonic() + cfg.duration
        checks = failed = 0
        pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="monitor-check")
        primary = self.ctx.state.primary
        last_ok = time.time()
        first_failed: float | None = None
        known: tuple[str, int, float] | None = None
        healthy: bool | None = None
        last_refusal = ""
        self.log(f"monitor: watching {primary} every {cfg.interval}s, failover after {cfg.timeout}s "
                 f"(fence={cfg.fence}, max lag {cfg.max_lag_bytes} B)")
        try:
            while not self.stop_event.is_set() and time.monotonic() < end:
                tick = time.monotonic()
                if self.reload_state:
                    try:
                        self.ctx.state = lab_state.load(self.ctx.name)
                    except LabError:
                        self.log("monitor: the lab is gone; stopping")
                        break
                if self.ctx.state.primary != primary:
                    primary = self.ctx.state.primary
                    self.log(f"monitor: the recorded primary is now {primary}")
                    last_ok, first_failed, healthy = time.time(), None, None
                fut: Future = pool.submit(self._check, primary)
                checks += 1
                try:
                    known = fut.result(timeout=max(cfg.interval, 0.2))
                    if healthy is not True:
                        self.log(f"health: {primary} ok (lsn {known[0]}, timeline {known[1]})")
                    healthy, last_ok, first_failed = True, time.time(), None
                except (psycopg.Error, FutureTimeout, OSError) as e:
                    failed += 1
                    now = time.time()
                    if first_failed is None:
                        first_failed = now
                    if healthy is not False:
                        why = "no answer" if isinstance(e, FutureTimeout) else (str(e).strip().splitlines() or ["error"])[0]
                        self.log(f"health: {primary} FAILING ({why})")
                    healthy = False
                    if now - last_ok >= cfg.timeout and len(self.failovers) < cfg.max_failovers:
                        rec = self._failover(primary, last_ok, first_failed, known)
                        if rec.new_primary:
                            self.failovers.append(rec)
                            primary = rec.new_primary
                            last_ok, first_failed, healthy, known = time.time(), None, None, None
                        elif rec.error != last_refusal:
                            last_refusal = rec.error or ""
                time.sleep(max(0.0, cfg.interval - (time.monotonic() - tick)))
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            self.log(f"monitor: stopped after {checks} checks ({failed} failed), {len(self.failovers)} failover(s)")
        self._result = MonitorResult(checks, failed, tuple(self.failovers), tuple(self.lines))
        return self._result

    def _failover(self, old: str, last_ok: float, first_failed: float,
                  known: tuple[str, int, float] | None) -> FailoverRecord:
        declared = time.time()
        # the guard's reference: the primary's position at the last good check, and its age
        seen = LastSeen(old, known[0], known[1], declared - known[2], "the monitor") if known else None
        self.busy.set()
        self.log(f"decision: {old} declared failed ({declared - last_ok:.2f}s since the last good check); electing")
        try:
            fo = promotion.failover(self.ctx, allow_data_loss=self.cfg.allow_data_loss,
                                    max_lag_bytes=self.cfg.max_lag_bytes, fence_with=self.cfg.fence,
                                    seen=seen, force=True)
        except promotion.FailoverRefused as e:
            self.log(f"decision: failover refused: {e.decision.reason}")
            self.log(f"  {e.decision.loss_line}")
            for line in format_decision(e.decision):
                self.log("  " + line)
            return FailoverRecord(old, None, last_ok, first_failed, declared, None, None, None, e.decision,
                                  error=e.decision.reason)
        except LabError as e:
            self.log(f"decision: failover failed: {e.line()}")
            return FailoverRecord(old, None, last_ok, first_failed, declared, None, None, None, None, error=e.line())
        finally:
            self.busy.clear()
        for line in format_decision(fo.decision):
            self.log("  " + line)
        p = fo.promotion
        self.log(f"decision: promoted {p.new_primary} (timeline {p.timeline}) in {p.promote_s:.2f}s; "
                 f"sync={p.sync or 'async'}; re-pointed {', '.join(p.repointed) or 'none'}"
                 + (f"; problems: {'; '.join(p.problems)}" if p.problems else ""))
        self.log(f"  data loss: {fo.loss_line}")
        return FailoverRecord(old, p.new_primary, last_ok, first_failed, declared, fo.t_elected, p.t_promoted,
                              p.t_done, fo.decision, failover=fo)

    # ---- in-process background ---------------------------------------------------------------
    def start_thread(self) -> "Monitor":
        self._thread = threading.Thread(target=self.run, name="pglab-monitor", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 30) -> MonitorResult | None:
        self.stop_event.set()
        if self._thread:
            self._thread.join(timeout)
        return self._result


def format_decision(d: Decision) -> list[str]:
    out = [f"{'node':<8} {'verdict':<15} {'tl':>3} {'receive':>12} {'replay':>12} {'prio':>4} {'lag B':>10}"]
    for r in d.rows:
        c = r.candidate
        out.append(f"{c.name:<8} {r.verdict.value:<15} {c.timeline or '-':>3} {c.receive_lsn or '-':>12} "
                   f"{c.replay_lsn or '-':>12} {c.priority:>4} {'-' if r.lag_bytes is None else r.lag_bytes:>10}")
    out.append(f"best known position {d.best_position}; {d.reason}")
    return out


# ---- detached process -------------------------------------------------------------------------
BACKGROUND = "monitor"


def background_pid(name: str) -> int | None:
    return background.pid(name, BACKGROUND)


def start_background(ctx: Ctx, cfg: MonitorConfig) -> int:
    cfg.check()
    if background_pid(ctx.name):
        raise InvalidInput(f"a monitor already runs for lab {ctx.name} (pid {background_pid(ctx.name)})",
                           "stop it with `pglab monitor stop`")
    log = ctx.state.dir / LOG_FILE
    # the lab directory appears on the command line (--log): `down` and the leftovers check find
    # every process that mentions it
    argv = [sys.executable, "-m", "lab", "monitor", "run", "--name", ctx.name, "--interval", str(cfg.interval),
            "--timeout", str(cfg.timeout), "--duration", str(cfg.duration), "--fence", cfg.fence,
            "--max-lag", str(cfg.max_lag_bytes), "--log", str(log), "--quiet"]
    if cfg.allow_data_loss:
        argv.append("--allow-data-loss")
    pid = background.start(ctx.name, BACKGROUND, argv, ctx.state.dir / "monitor.out")
    ctx.event("monitor:start", None, pid=pid, interval=cfg.interval, timeout=cfg.timeout)
    return pid


def stop_background(name: str, timeout: float = 10) -> int | None:
    """SIGTERM the background monitor (SIGKILL if it lingers); returns its pid, or None."""
    return background.stop(name, BACKGROUND, timeout)


def log_tail(name: str, lines: int = 20) -> list[str]:
    try:
        return (lab_state.lab_dir(name) / LOG_FILE).read_text().splitlines()[-lines:]
    except OSError:
        return []
