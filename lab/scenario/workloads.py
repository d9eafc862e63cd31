"""Scenario steps that drive workloads (ledger writer, pgbench) and the failover monitor.

Figures a ledger workload gives when it stops (and `check` recomputes after healing):
  ok_writes, attempted_writes, unknown_writes, failed_writes, ok_unreplicated, ok_tps,
  write_p99_ms, max_write_gap_s (the longest time between two acknowledged writes, as the
  client saw it), rto_s (first fault during the run -> first acknowledged write after it),
  lost_writes, unexpected, recovered (Jepsen's set checker against the current primary).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from lab.errors import InvalidInput
from lab.failover.checker import check
from lab.failover.phases import Phases
from lab.scenario.context import RunCtx
from lab.workload.ledger import final_ids


@dataclass
class _Handle:
    kind: str
    writer: Any = None                  # LedgerWriter
    thread: threading.Thread | None = None
    stop_event: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None
    started: float = 0.0

    def error_count(self) -> int:
        if self.writer is None:
            return 0
        return sum(1 for op in self.writer.ops() if op.outcome in ("fail", "unknown"))

    def ok_count(self) -> int:
        if self.writer is None:
            return 0
        return sum(1 for op in self.writer.ops() if op.outcome in ("ok", "ok_unreplicated"))


def start_workload(run: RunCtx, kind: str, opts: dict[str, Any]) -> _Handle:
    duration = float(opts.get("duration", 120))
    clients = int(opts.get("clients", 4))
    if kind == "ledger":
        w = run.lab.ledger(clients=clients, duration=duration, count=opts.get("count"))
        w.start()
        return _Handle("ledger", writer=w, started=time.time())
    if kind == "pgbench":
        h = _Handle("pgbench", started=time.time())

        def body() -> None:
            try:
                h.result = run.lab.pgbench(clients=clients, duration=duration, scale=int(opts.get("scale", 1)),
                                           stop=h.stop_event, log_latencies=False)
            except BaseException as e:  # noqa: BLE001 - reported when the workload stops
                h.error = e
        h.thread = threading.Thread(target=body, daemon=True)
        h.thread.start()
        return h
    raise InvalidInput(f"workload {kind!r} is not available in scenarios", "use ledger or pgbench")


def stop_workload(run: RunCtx, wid: str) -> str:
    h: _Handle = run.workloads.pop(wid)
    if h.kind == "pgbench":
        h.stop_event.set()
        if h.thread:
            h.thread.join(timeout=60)
        if h.error:
            raise h.error
        if h.result is not None:
            run.add_figures({"pgbench_tps": h.result.tps, "pgbench_transactions": h.result.transactions,
                             "pgbench_failed": h.result.failed}, wid)
            return f"pgbench: {h.result.tps:.0f} tps"
        return "pgbench: no result"
    h.writer.stop()
    s = h.writer.wait(timeout=60)
    ok = s.outcomes["ok"].count + s.outcomes["ok_unreplicated"].count
    figures = {"ok_writes": ok, "attempted_writes": s.attempted, "unknown_writes": s.outcomes["unknown"].count,
               "failed_writes": s.outcomes["fail"].count, "ok_unreplicated": s.outcomes["ok_unreplicated"].count,
               "ok_tps": round(s.ok_tps, 1), "write_p50_ms": s.outcomes["ok"].p50_ms,
               "write_p99_ms": s.outcomes["ok"].p99_ms,
               **_gaps(run, h)}
    run.add_figures(figures, wid)
    run.workloads[wid] = h          # kept (stopped) so that `check` can read its ledger later
    h.stop_event.set()
    detail = check_workload(run, wid)
    return f"{ok} acknowledged of {s.attempted} ({s.ok_tps:.0f}/s); {detail}"


def _gaps(run: RunCtx, h: _Handle) -> dict[str, float]:
    oks = sorted(op.t1 for op in h.writer.ops() if op.outcome in ("ok", "ok_unreplicated"))
    gap = max((b - a for a, b in zip(oks, oks[1:])), default=0.0)
    out = {"max_write_gap_s": round(gap, 3)}
    faults = [e["t"] for e in run.lab.events
              if e["kind"].startswith("fault:") and e["t"] >= h.started]
    if faults:
        # fault -> first acknowledged write after the outage: the end of the longest silence
        # that ends after the fault (writes already in flight may still be acknowledged just
        # after the fault itself)
        spans = [(b - a, b) for a, b in zip(oks, oks[1:]) if b > faults[0]]
        if spans:
            out["rto_s"] = round(max(spans)[1] - faults[0], 3)
    return out


def check_workload(run: RunCtx, wid: str) -> str:
    """Jepsen's set checker: what the ledger says was acknowledged vs what the primary has now."""
    h = run.workloads.get(wid)
    if h is None or h.kind != "ledger":
        raise InvalidInput(f"no ledger workload {wid!r}", f"workloads: {', '.join(run.workloads) or 'none'}")
    ops = h.writer.ops()
    res = check([(op.id, op.outcome) for op in ops], final_ids(run.lab.dsn(role="primary"), h.writer.run))
    run.add_figures({"lost_writes": len(res.lost), "unexpected": len(res.unexpected), "recovered": len(res.recovered),
                     "lost_unreplicated": len(res.lost_unreplicated), "final_writes": res.final}, wid)
    return f"lost {len(res.lost)}, unexpected {len(res.unexpected)}, recovered {len(res.recovered)}"


def stopped(h: Any) -> bool:
    return isinstance(h, _Handle) and h.stop_event.is_set()


def monitor(run: RunCtx, action: str, opts: dict[str, Any]) -> str:
    if action == "start":
        if "_monitor" in run.workloads:
            raise InvalidInput("the monitor is already running", "add `monitor: stop` first")
        m = run.lab.monitor(interval=float(opts.get("interval", 0.5)), timeout=float(opts.get("timeout", 2.0)),
                            fence=str(opts.get("fence", "kill")), duration=600.0,
                            fast_path=bool(opts.get("fast_path", True)), confirm=float(opts.get("confirm", 0.3)))
        run.workloads["_monitor"] = m.start_thread()
        return (f"monitor: interval {m.cfg.interval}s, timeout {m.cfg.timeout}s, fence {m.cfg.fence}, fast path "
                + (f"on (confirm {m.cfg.confirm}s)" if m.cfg.fast_path else "off"))
    m = run.workloads.pop("_monitor", None)
    if m is None:
        raise InvalidInput("the monitor is not running", "add `monitor: start` first")
    res = m.stop()
    fos = res.failovers if res else ()
    figures: dict[str, Any] = {"failovers": len(fos)}
    detail = ""
    if fos:
        f = fos[0]
        # the phases as lab.failover.phases defines them (the same as in drills): the fault is the
        # last one injected on the old primary before the failure was declared; the first write is
        # the first a ledger workload of this run had acknowledged by the new primary
        t_fault = max((e["t"] for e in run.lab.ctx.state.events if e["kind"].startswith("fault:")
                       and e.get("node") == f.old_primary and e["t"] <= f.t_declared), default=None)
        firsts = [op.t1 for h in run.workloads.values() if getattr(h, "writer", None) is not None
                  for op in [h.writer.first_ok_after(f.t_promoted or f.t_declared, f.new_primary)] if op]
        ph = Phases.of(f, t_fault, min(firsts) if firsts else None)
        figures.update({k: None if v is None else round(v, 3) for k, v in ph.durations().items()})
        figures["new_primary"] = f.new_primary
        fo = f.failover
        if fo is not None:
            figures.update(loss_estimate_bytes=fo.loss_estimate_bytes, loss_true_bytes=fo.loss_true_bytes,
                           loss_true_commits=fo.loss_true_commits, loss="; ".join([fo.loss_line]))
            detail = f"; data loss: {fo.loss_line}"
        figures["failover_path"] = f.path          # fast (fail-stop evidence) or slow (timeout)
        figures["failover_reason"] = f.reason
    run.add_figures(figures, "monitor")
    return (f"{len(fos)} failover(s)" + (f", by the {fos[0].path} path: {fos[0].reason}" if fos else "")
            + detail)
