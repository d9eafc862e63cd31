"""`pglab chaos`: a seeded fault soak under the failover monitor, checked by invariants."""
from __future__ import annotations

from typing import Optional

import typer

from lab.cli.core import JsonOpt, NameOpt, open_lab
from lab.cli.root import app
from lab.cli.render import console, err_console, human_secs, print_json, table


def render(r) -> None:
    console.print(f"chaos: seed {r.seed}, {r.duration_s:.0f}s on {r.runtime}, mode {r.mode}: "
                  f"{sum(1 for o in r.outcomes if o.started)} faults injected, {len(r.failovers)} failover(s) "
                  f"({r.false_failovers} false)")
    console.print(table("per fault", ["fault", "injected", "skipped", "on primary", "failovers fast", "failovers slow",
                                      "false", "recovered median", "recovered max"],
                        [[k.kind, k.injected, k.skipped, k.on_primary, k.failovers_fast, k.failovers_slow,
                          k.false_failovers, human_secs(k.recovered_median_s), human_secs(k.recovered_max_s)]
                         for k in r.kinds]))
    between = sum(1 for f in r.failovers if not f.during)
    if between:
        console.print(f"{between} failover(s) declared between faults (no fault in force: all false)")
    for f in r.failovers:
        console.print(f"failover {f.old_primary}->{f.new_primary} during {f.during or 'no fault'}: {f.path} path, RTO "
                      f"{human_secs(f.rto_s)}{' FALSE' if f.false else ''}; data loss: "
                      f"{f.loss or 'estimate/truth not available here'}", markup=False)
    skipped = sorted({o.skipped for o in r.outcomes if o.skipped})
    for s in skipped:
        console.print(f"skipped: {s}", markup=False)
    for o in r.outcomes:
        if o.error:
            console.print(f"problem after {o.event.kind} {o.node}: {o.error}", markup=False)
    for p in r.problems:
        console.print(f"problem: {p}", markup=False)
    console.print(f"writes: {r.attempted} attempted, {r.ok} ok, {r.unknown} unknown, {r.lost} lost, "
                  f"{r.unexpected} unexpected; reader: {r.samples} samples, {r.reads} reads, {r.read_errors} "
                  f"unanswered, most writable primaries in one sample {r.max_writable}; every node streaming "
                  f"{human_secs(r.final_recovered_s)} after the final heal")
    for line in r.lost_detail:
        console.print(f"  lost: {line}", markup=False)
    for k, ok in r.invariants.items():
        console.print(f"  {'PASS' if ok else 'FAIL'}  {k}", markup=False)
    if r.leaks:
        console.print(f"  left behind: {', '.join(r.leaks)}", markup=False)
    elif r.leaks is None:
        console.print("  (leaks not checked: the lab is still up; --down checks them)")


@app.command()
def chaos(name: Optional[str] = NameOpt,
          seed: int = typer.Option(1, "--seed", help="The schedule's seed: the same seed gives the same faults."),
          duration: float = typer.Option(60.0, "--duration", help="Seconds of faults (then the final heal)."),
          faults: str = typer.Option("kill,stop,pause,partition,isolate,throttle", "--faults",
                                     help="Fault kinds to draw from (partition/isolate/throttle need Docker or --netns)."),
          mode: str = typer.Option("sync", "--mode", help="sync (FIRST 1) or async."),
          clients: int = typer.Option(2, "--clients", help="Ledger writer clients."),
          timeout: float = typer.Option(2.0, "--timeout", help="The monitor's timeout (slow path)."),
          fast_path: bool = typer.Option(True, "--fast-path/--no-fast-path", help="The monitor's fail-stop fast path."),
          hold_max: float = typer.Option(5.0, "--hold-max", help="Longest a fault is held (s); the shortest is 1 s."),
          down: bool = typer.Option(False, "--down", help="Bring the lab down afterwards and check nothing is left."),
          dry_run: bool = typer.Option(False, "--dry-run", help="Print the schedule and stop (starts nothing)."),
          as_json: bool = JsonOpt) -> None:
    """A Jepsen-style soak: writes and reads throughout, seeded random faults on random nodes (the
    primary included) under the monitor, healed; then invariants and a per-fault table."""
    lab = open_lab(name)
    if dry_run:
        from lab.failover.chaos_schedule import make_schedule, parse_faults  # lazy: only for --dry-run
        sched = make_schedule(seed, duration, parse_faults(faults), tuple(lab.nodes), hold=(1.0, hold_max))
        if as_json:
            return print_json(sched)
        for ev in sched:
            console.print(ev.describe(), markup=False)
        return
    say = (lambda _: None) if as_json else (lambda line: err_console.print(line, style="dim", markup=False))
    r = lab.chaos(seed=seed, duration=duration, faults=tuple(faults.split(",")), mode=mode, clients=clients,
                  timeout=timeout, fast_path=fast_path, hold=(1.0, hold_max), down=down, say=say)
    if as_json:
        print_json({"passed": r.passed, "false_failovers": r.false_failovers, **r.__dict__})
    else:
        render(r)
    if not r.passed:
        raise typer.Exit(1)
