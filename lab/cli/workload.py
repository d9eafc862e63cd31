"""pglab workload ledger | pgbench | read: bounded workloads with a live display and a summary.

The live line shows throughput, errors and the current replay lag of every standby (one status
snapshot per second: light enough not to disturb what is measured).
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

import typer
from rich.live import Live

from lab.cli.root import app
from lab.cli.core import JsonOpt, NameOpt, open_lab
from lab.cli.render import console, err_console, human_bytes, print_json, table

if TYPE_CHECKING:
    from lab.api import Lab

workload_app = typer.Typer(no_args_is_help=True, help="Workloads: ledger writer, pgbench, readers (bounded).")
app.add_typer(workload_app, name="workload")


def _lag_line(lab: "Lab") -> str:
    try:
        st = lab.status()
    except Exception:  # noqa: BLE001 - the display must never kill the workload
        return "lag: ?"
    return "lag: " + ", ".join(f"{n.name} {human_bytes(n.replay_lag_bytes)}" + ("" if n.role.value == "standby" else f" ({n.role.value})")
                               for n in st.nodes if n.name != st.primary)


def _live(lab: "Lab", work: Callable[[], object], line: Callable[[], str]) -> object:
    """Run `work` in a thread, refresh a one-line display until it ends; return its result."""
    box: dict = {}

    def target() -> None:
        try:
            box["r"] = work()
        except BaseException as e:  # noqa: BLE001 - re-raised below, in the CLI thread
            box["e"] = e
    t = threading.Thread(target=target, daemon=True)
    t.start()
    with Live(console=err_console, refresh_per_second=2, transient=True) as live:
        while t.is_alive():
            live.update(f"{line()}   {_lag_line(lab)}")
            t.join(1.0)
    if "e" in box:
        raise box["e"]
    return box["r"]


@workload_app.command("pgbench")
def pgbench_cmd(
    clients: int = typer.Option(4, "--clients", "-c", min=1),
    duration: float = typer.Option(10, "--duration", "-d", min=1, help="Seconds."),
    scale: int = typer.Option(1, "--scale", "-s", min=1, help="pgbench -i scale factor."),
    builtin: str = typer.Option("tpcb-like", "--builtin", "-b", help="tpcb-like, simple-update, select-only."),
    insert: bool = typer.Option(False, "--insert", help="Single-row INSERTs instead of a builtin script."),
    no_init: bool = typer.Option(False, "--no-init", help="Skip pgbench -i (tables already there)."),
    name: Optional[str] = NameOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Run the real pgbench against the primary; TPS and latency p50/p95/p99/max."""
    lab = open_lab(name)
    last = ["starting"]

    def on_progress(p) -> None:
        last[0] = f"pgbench {p.t:.0f}s: {p.tps:.0f} tps, lat {p.latency_ms or 0:.1f} ms, {p.failed} failed"
    r = _live(lab, lambda: lab.pgbench(clients=clients, duration=duration, scale=scale, builtin=builtin,
                                       insert=insert, do_init=not no_init, on_progress=on_progress), lambda: last[0])
    if as_json:
        print_json(r.__class__(**{**r.__dict__, "tx": ()}))
        return
    L = r.latency
    console.print(table(f"pgbench {r.script} on {r.node}: {r.clients} clients, {r.duration_s:.1f} s",
                        ["transactions", "failed", "TPS", "p50 ms", "p95 ms", "p99 ms", "max ms"],
                        [[r.transactions, r.failed, f"{r.tps:.0f}", _f(L.p50_ms), _f(L.p95_ms), _f(L.p99_ms), _f(L.max_ms)]]))


@workload_app.command("ledger")
def ledger_cmd(
    clients: int = typer.Option(4, "--clients", "-c", min=1),
    duration: Optional[float] = typer.Option(10, "--duration", "-d", help="Seconds (bound)."),
    count: Optional[int] = typer.Option(None, "--count", help="Stop after this many writes."),
    out: Path = typer.Option(Path("ledger.jsonl"), "--out", "-o", help="The ledger file (JSON lines)."),
    name: Optional[str] = NameOpt,
    as_json: bool = JsonOpt,
) -> None:
    """The ledger writer (lab.workload.ledger): unique ids, every outcome recorded to a file."""
    lab = open_lab(name)
    w = lab.ledger(clients=clients, duration=duration, count=count, path=str(out))
    t0 = time.monotonic()

    def line() -> str:
        ops = w.ops()
        bad = sum(1 for o in ops if o.outcome != "ok")
        return f"ledger: {len(ops)} writes, {len(ops) / max(1e-9, time.monotonic() - t0):.0f}/s, {bad} not ok"
    w.start()
    s = _live(lab, w.wait, line)
    if as_json:
        print_json(s)
        return
    rows = [[k, v.count, _f(v.p50_ms), _f(v.p95_ms), _f(v.p99_ms), _f(v.max_ms)] for k, v in s.outcomes.items()]
    console.print(table(f"ledger {s.run}: {s.attempted} writes by {s.clients} clients in {s.elapsed_s:.1f} s, "
                        f"{s.ok_tps:.0f} ok/s -> {out}", ["outcome", "count", "p50 ms", "p95 ms", "p99 ms", "max ms"], rows))


@workload_app.command("read")
def read_cmd(
    target: str = typer.Option("standby", "--from", help="primary, standby (round robin), any, or a node name."),
    clients: int = typer.Option(2, "--clients", "-c", min=1),
    duration: Optional[float] = typer.Option(5, "--duration", "-d"),
    count: Optional[int] = typer.Option(None, "--count"),
    with_writes: bool = typer.Option(True, "--with-writes/--no-writes", help="Run pgbench INSERTs meanwhile."),
    name: Optional[str] = NameOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Readers that record what they saw and how stale it was (ids behind the acknowledged head)."""
    lab = open_lab(name)
    lab.prepare_insert_table()
    stop = threading.Event()
    writer = None
    if with_writes:
        writer = threading.Thread(target=lambda: lab.pgbench(clients=2, duration=(duration or 60) + 1, insert=True,
                                                             stop=stop, log_latencies=False), daemon=True)
        writer.start()
    n = [0, 0]

    def on_read(node: str, behind: int, lat: float) -> None:
        n[0] += 1
        n[1] += behind > 0
    try:
        r = _live(lab, lambda: lab.read_workload(target=target, clients=clients, duration=duration, count=count,
                                                 on_read=on_read), lambda: f"reads: {n[0]}, stale: {n[1]}")
    finally:
        stop.set()
        if writer:
            writer.join(30)
    if as_json:
        print_json(r)
        return
    rows = [[p.node, p.reads, p.errors, p.stale, p.max_behind, f"{p.mean_behind:.2f}", _f(p.latency.p50_ms),
             _f(p.latency.p99_ms), _f(p.latency.max_ms)] for p in r.per_node]
    console.print(table(f"reads from {r.target}: {r.reads} in {r.elapsed_s:.1f} s, {100 * r.stale_fraction:.1f}% stale",
                        ["node", "reads", "errors", "stale", "max ids behind", "mean behind", "p50 ms", "p99 ms", "max ms"], rows))


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"
