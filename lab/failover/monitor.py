"""The failover supervisor: health-check the primary, declare it failed, fail over.

Two ways to declare the primary failed:
  slow path  every `interval` seconds a fresh connection to the recorded primary with a short
             deadline (a frozen or cut-off server never answers; waiting for it must not stall the
             loop); when no check has succeeded for `timeout` seconds, the primary is declared failed.
  fast path  (lab.failover.failstop) every `probe` seconds a TCP connect to the primary's port;
             while it is refused, every standby is asked whether it still streams. Refused and no
             stream anywhere, in every sample for `confirm` seconds: the primary is dead (fail-stop),
             declared at once. Anything ambiguous is left to the slow path.
Then the monitor fails over as `lab.failover.promotion.failover` does (fencing first), with the
primary's last WAL position it saw as the data-loss guard's reference. The defaults (0.5 s / 2 s) are much shorter than Patroni's (~30 s), pg_auto_failover's
(~20 s) or repmgr's (~60 s): on one machine there are no network hiccups to ride out; the slow-failover
experiments vary --timeout to show the trade-off.

Each change of health and each decision is logged with a timestamp, to the caller and to
<lab dir>/monitor.log. In the background it is a detached process whose pid is in
<lab dir>/monitor.pid; `pglab down` kills it.
"""
from __future__ import annotations

import select
import socket
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
from lab.failover.failstop import DEFAULT_PROBE, DEFAULT_WINDOW, FailStop, Observation, Port, Stream, Verdict
from lab.errors import InvalidInput, LabError

LOG_FILE = "monitor.log"
MAX_DURATION = 24 * 3600.0
MAX_PENDING = 8            # health checks in flight at once (each gives up after about 3 s)


@dataclass(frozen=True)
class MonitorConfig:
    interval: float = 0.5
    timeout: float = 2.0
    fence: str = "kill"              # the lab can reach its nodes: STONITH before promoting
    max_lag_bytes: int = DEFAULT_MAX_LAG_BYTES
    allow_data_loss: bool = False
    duration: float = 60.0
    max_failovers: int = 10
    fast_path: bool = True           # declare a certainly dead primary (fail-stop) without the timeout
    confirm: float = DEFAULT_WINDOW  # the fast path's confirmation window (s)
    probe: float = DEFAULT_PROBE     # how often the fast path probes the primary's port (s)

    def check(self) -> "MonitorConfig":
        if not 0.05 <= self.interval <= 60:
            raise InvalidInput(f"--interval {self.interval} is out of range", "use 0.05 to 60 s")
        if not self.interval <= self.timeout <= 600:
            raise InvalidInput(f"--timeout {self.timeout} is out of range", "use interval <= timeout <= 600 s")
        if not 0 < self.duration <= MAX_DURATION:
            raise InvalidInput(f"--duration {self.duration} is out of range", f"use 0 < duration <= {MAX_DURATION:.0f} s")
        if not 0.05 <= self.confirm <= 30:
            raise InvalidInput(f"--confirm {self.confirm} is out of range",
                               "use 0.05 to 30 s, longer than a restart refuses connections (~0.1-0.2 s here)")
        if not 0.01 <= self.probe <= min(1.0, self.confirm):
            raise InvalidInput(f"--probe {self.probe} is out of range", "use 0.01 s to min(1 s, --confirm)")
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
    path: str = "slow"       # which path declared the failure: fast (fail-stop evidence) or slow (timeout)
    reason: str = ""         # why, in words (also in the log)


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
        self._addr_cache: dict[str, tuple[tuple[str, int] | None, float]] = {}
        self._stream_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="monitor-stream")
        self._stream_pending: dict[str, Future] = {}
        self._stream_conns: dict[str, psycopg.Connection] = {}
        # an idle connection to the primary, watched while the loop sleeps: a server that dies
        # closes it at once, and the fast path samples then instead of up to a probe later
        self._watch: tuple[str, psycopg.Connection] | None = None
        self._watch_opening: tuple[str, Future] | None = None

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
                "SELECT pg_is_in_recovery(), pg_current_wal_lsn()::text, " + sql.TIMELINE).fetchone()
        if rec:
            raise psycopg.OperationalError(f"{node} is in recovery")
        lab_state.record_primary_seen(self.ctx.name, lab_state.PrimarySeen(node, pos, tli, asked, "the monitor"))
        return pos, tli, asked

    # ---- the fast path's evidence: the primary's port, the standbys' streams -----------------
    def _probe_addr(self, node: str) -> tuple[str, int] | None:
        now = time.monotonic()
        cached = self._addr_cache.get(node)
        if cached is None or now - cached[1] > 2.0:     # re-resolved now and then (a healed partition)
            addr = self.ctx.rt.probe_address(node, self.ctx.state.nodes[node])
            cached = self._addr_cache[node] = (addr, now)
        return cached[0]

    def _probe_port(self, node: str) -> Port:
        addr = self._probe_addr(node)
        if addr is None:
            return Port.UNREACHABLE
        try:
            socket.create_connection(addr, timeout=0.25).close()
            return Port.OPEN
        except ConnectionRefusedError:
            return Port.REFUSED
        except TimeoutError:
            return Port.NO_ANSWER
        except OSError:
            self._addr_cache.pop(node, None)
            return Port.UNREACHABLE

    def _stream(self, node: str) -> Stream:
        # one connection per standby, kept open: asking must cost a round trip, not a fork
        for attempt in (1, 2):      # a kept connection may have broken since (a restart): once more, fresh
            fresh = node not in self._stream_conns or self._stream_conns[node].closed
            try:
                if fresh:
                    self._stream_conns[node] = sql.connect(self.ctx.state, node, connect_timeout=2,
                                                           options="-c statement_timeout=500")
                row = self._stream_conns[node].execute("SELECT status FROM pg_stat_wal_receiver").fetchone()
                break
            except (psycopg.Error, OSError):
                self._drop_stream_conn(node)
                if fresh or attempt == 2:
                    raise
        return Stream.STREAMING if row and row[0] == "streaming" else Stream.GONE

    def _drop_stream_conn(self, node: str) -> None:
        c = self._stream_conns.pop(node, None)
        if c is not None:
            try:
                c.close()
            except Exception:  # noqa: BLE001 - a broken connection may fail to close
                pass

    def _idle_stream_conns(self) -> dict[str, psycopg.Connection]:
        """The fast path's open connections to the standbys that no probe is using: the election
        asks on them and the winner is promoted through its own, instead of paying a new
        connection (about 10-40 ms each here) while the clients wait."""
        return {n: c for n, c in self._stream_conns.items()
                if not c.closed and (self._stream_pending.get(n) is None or self._stream_pending[n].done())}

    def _streams(self, standbys: tuple[str, ...]) -> dict[str, Stream]:
        """Every standby asked in parallel; one that has not answered within 0.5 s is unknown (and
        is not asked again until its pending probe ends). A busy machine can take a few hundred ms
        to schedule a standby's backend: unknown resets the confirmation window."""
        for n in standbys:
            f = self._stream_pending.get(n)
            if f is None or f.done():
                self._stream_pending[n] = self._stream_pool.submit(self._stream, n)
        deadline = time.monotonic() + 0.5
        out: dict[str, Stream] = {}
        for n in standbys:
            f = self._stream_pending[n]
            try:
                out[n] = f.result(timeout=max(0.0, deadline - time.monotonic()))
            except (psycopg.Error, OSError, FutureTimeout):
                out[n] = Stream.UNKNOWN
        return out

    def _observe(self, primary: str, standbys: tuple[str, ...]) -> Observation:
        port = self._probe_port(primary)
        t = time.time()
        return Observation(t, port, self._streams(standbys) if port is Port.REFUSED else {})

    # ---- the watch: wake the loop when the primary's connection drops ------------------------
    def _keep_watch(self, primary: str, healthy: bool) -> None:
        """A watch connection to a healthy primary, opened in the background (never blocking the
        loop); a watch of another node (the primary changed) is dropped."""
        if self._watch is not None and self._watch[0] != primary:
            self._drop_watch()
        if self._watch_opening is not None:
            node, f = self._watch_opening
            if not f.done():
                return
            self._watch_opening = None
            try:
                conn = f.result()
            except (psycopg.Error, OSError):
                return
            if node == primary and self._watch is None:
                self._watch = (node, conn)
            else:
                conn.close()
        if healthy and self._watch is None:
            self._watch_opening = (primary, self._stream_pool.submit(
                sql.connect, self.ctx.state, primary, connect_timeout=2))

    def _drop_watch(self, opening_too: bool = False) -> None:
        if opening_too and self._watch_opening is not None:
            # the monitor stops: a connection still being opened is closed when it arrives
            self._watch_opening[1].add_done_callback(
                lambda f: f.exception() is None and f.result().close())
            self._watch_opening = None
        if self._watch is not None:
            try:
                self._watch[1].close()
            except Exception:  # noqa: BLE001 - a broken connection may fail to close
                pass
            self._watch = None

    def _sleep(self, seconds: float) -> None:
        """Sleep, but wake as soon as the watch connection has something to read: an idle
        server only sends when its session ends (it died, or was stopped). The watch is then
        dropped, and opened again once a health check finds the primary healthy."""
        if self._watch is None:
            time.sleep(seconds)
            return
        try:
            readable, _, _ = select.select([self._watch[1].fileno()], [], [], seconds)
        except (OSError, ValueError, psycopg.Error):
            readable = [True]
        if readable:
            self._drop_watch()

    def _standbys(self, primary: str) -> tuple[str, ...]:
        return tuple(n for n in self.ctx.state.nodes if n != primary)

    # ---- the loop ---------------------------------------------------------------------------
    def run(self) -> MonitorResult:
        cfg = self.cfg
        end = time.monotonic() + cfg.duration
        checks = failed = 0
        pool = ThreadPoolExecutor(max_workers=MAX_PENDING, thread_name_prefix="monitor-check")
        primary = self.ctx.state.primary
        last_ok = time.time()
        first_failed: float | None = None
        known: tuple[str, int, float] | None = None
        healthy: bool | None = None
        last_refusal = ""
        pending: list[list] = []          # [future, submitted at, counted as no answer]
        next_check = retry_at = 0.0
        fast = FailStop(self._standbys(primary), cfg.confirm)
        confirming = 0.0        # since when the fast path has seen evidence (0: it has not), to log changes only
        tick_s = min(cfg.probe, cfg.interval) if cfg.fast_path else min(0.05, cfg.interval)
        self.log(f"monitor: watching {primary} every {cfg.interval}s, failover after {cfg.timeout}s "
                 f"(fence={cfg.fence}, max lag {cfg.max_lag_bytes} B); fast path "
                 + (f"on (port probe every {cfg.probe}s, confirmation window {cfg.confirm}s)" if cfg.fast_path
                    else "off"))
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
                    last_ok, first_failed, healthy, pending = time.time(), None, None, []
                    fast.reset(self._standbys(primary))
                elif fast.standbys != self._standbys(primary):
                    fast.reset(self._standbys(primary))
                # slow path: a health check every interval, never blocking this loop. A check that
                # has not answered within an interval counts as failed ("no answer"), but it is
                # not abandoned: if it answers later, the primary was alive then (a busy server
                # that needs 0.7 s per answer is slow, not dead)
                if tick >= next_check and len(pending) < MAX_PENDING:
                    pending.append([pool.submit(self._check, primary), tick, False])
                    next_check = tick + cfg.interval
                    checks += 1
                oks: list[tuple[str, int]] = []
                errors: list[BaseException] = []
                for item in list(pending):
                    f, t_sub, late = item
                    if f.done():
                        pending.remove(item)
                        try:
                            oks.append(f.result())
                        except (psycopg.Error, OSError) as e:
                            if not late:
                                errors.append(e)
                    elif not late and tick - t_sub >= max(cfg.interval, 0.2):
                        item[2] = True
                        errors.append(FutureTimeout())
                now = time.time()
                failed += len(errors)
                if oks:
                    known = oks[-1]
                    if healthy is not True:
                        self.log(f"health: {primary} ok (lsn {known[0]}, timeline {known[1]})")
                    healthy, last_ok, first_failed = True, now, None
                elif errors:
                    if first_failed is None:
                        first_failed = now
                    if healthy is not False:
                        outcome = errors[0]
                        why = "no answer" if isinstance(outcome, FutureTimeout) else \
                            (str(outcome).strip().splitlines() or ["error"])[0]
                        self.log(f"health: {primary} FAILING ({why})")
                    healthy = False
                # fast path: the port and the standbys, every probe
                verdict: Verdict | None = None
                if cfg.fast_path:
                    verdict = fast.observe(self._observe(primary, fast.standbys))
                    if verdict.evidence and not confirming:
                        self.log(f"fast path: {primary}: {verdict.reason.split(', for')[0]}; "
                                 f"confirming for {cfg.confirm}s")
                    elif not verdict.evidence and confirming:
                        self.log(f"fast path: evidence ended after {now - confirming:.2f}s ({verdict.reason}): "
                                 f"{primary} is not declared dead")
                    confirming = (verdict.since or now) if verdict.evidence else 0.0
                why_slow = now - last_ok >= cfg.timeout and healthy is False
                if ((verdict is not None and verdict.dead) or why_slow) and tick >= retry_at:
                    if len(self.failovers) < cfg.max_failovers:
                        if verdict is not None and verdict.dead:
                            path, reason = "fast", f"fail-stop: {verdict.reason}"
                            first_failed = min(first_failed or now, verdict.since or now)
                        else:
                            path = "slow"
                            reason = (f"timeout: {now - last_ok:.2f}s since the last good check (timeout {cfg.timeout}s)"
                                      + (f"; fast path not taken: {verdict.reason}" if verdict is not None else
                                         "; fast path off"))
                        rec = self._failover(primary, last_ok, first_failed or now, known, path, reason)
                        fast.reset()
                        confirming = 0.0
                        if rec.new_primary:
                            self.failovers.append(rec)
                            primary = rec.new_primary
                            last_ok, first_failed, healthy, known, pending = time.time(), None, None, None, []
                            fast.reset(self._standbys(primary))
                        else:       # refused or failed: decide again after an interval, not every probe
                            retry_at = time.monotonic() + cfg.interval
                            if rec.error != last_refusal:
                                last_refusal = rec.error or ""
                self._keep_watch(primary, healthy is True)
                wait = max(0.0, tick_s - (time.monotonic() - tick))
                if verdict is not None and verdict.evidence and verdict.since is not None:
                    # the sample that can confirm the window is taken when the window ends, not
                    # up to a probe later
                    wait = min(wait, max(0.0, verdict.since + cfg.confirm - time.time()))
                self._sleep(wait)
        finally:
            self._drop_watch(opening_too=True)
            pool.shutdown(wait=False, cancel_futures=True)
            self._stream_pool.shutdown(wait=False, cancel_futures=True)
            for n in list(self._stream_conns):
                if self._stream_pending.get(n) is None or self._stream_pending[n].done():
                    self._drop_stream_conn(n)
            self.log(f"monitor: stopped after {checks} checks ({failed} failed), {len(self.failovers)} failover(s)")
        self._result = MonitorResult(checks, failed, tuple(self.failovers), tuple(self.lines))
        return self._result

    def _failover(self, old: str, last_ok: float, first_failed: float,
                  known: tuple[str, int, float] | None, path: str = "slow", reason: str = "") -> FailoverRecord:
        declared = time.time()
        # the guard's reference: the primary's position at the last good check, and its age
        seen = LastSeen(old, known[0], known[1], declared - known[2], "the monitor") if known else None
        self.busy.set()
        self.log(f"decision: {old} declared failed by the {path} path ({reason}); electing")
        try:
            fo = promotion.failover(self.ctx, allow_data_loss=self.cfg.allow_data_loss,
                                    max_lag_bytes=self.cfg.max_lag_bytes, fence_with=self.cfg.fence,
                                    seen=seen, force=True, sessions=self._idle_stream_conns())
        except promotion.FailoverRefused as e:
            self.log(f"decision: failover refused: {e.decision.reason}")
            self.log(f"  {e.decision.loss_line}")
            for line in format_decision(e.decision):
                self.log("  " + line)
            return FailoverRecord(old, None, last_ok, first_failed, declared, None, None, None, e.decision,
                                  error=e.decision.reason, path=path, reason=reason)
        except (LabError, psycopg.Error, OSError) as e:
            # the monitor must outlive one failed attempt (a node that changed under it, a lab
            # being reconfigured meanwhile): log it; the next check decides again
            why = e.line() if isinstance(e, LabError) else f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}"
            self.log(f"decision: failover failed: {why}")
            return FailoverRecord(old, None, last_ok, first_failed, declared, None, None, None, None, error=why,
                                  path=path, reason=reason)
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
                              p.t_done, fo.decision, failover=fo, path=path, reason=reason)

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
            "--max-lag", str(cfg.max_lag_bytes), "--log", str(log), "--quiet", "--confirm", str(cfg.confirm),
            "--fast-path" if cfg.fast_path else "--no-fast-path"]
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
