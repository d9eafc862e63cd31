"""`pglab lab consistency …` and `pglab lab methods`: the drills of reading from followers and
of the three ways to ship changes. Each brings its own labs up and takes them down again."""
from __future__ import annotations

import typer

from lab.cli.root import app
from lab.cli.render import console, print_json, table


def _lab_group() -> typer.Typer:
    # other command modules may add to the same `pglab lab` group: share it, whoever comes first
    for g in app.registered_groups:
        if g.name == "lab" and g.typer_instance is not None:
            return g.typer_instance
    sub = typer.Typer(no_args_is_help=True, help="Drills that bring up their own labs, run, measure and clean up.")
    app.add_typer(sub, name="lab")
    return sub


lab_app = _lab_group()
DRILLS = ("read-after-write", "monotonic", "prefix", "all")


@lab_app.command("consistency")
def consistency(
    which: str = typer.Argument("all", help="read-after-write, monotonic, prefix or all."),
    delay: str = typer.Option("150ms", "--delay", help="recovery_min_apply_delay of the lagging follower."),
    runtime: str = typer.Option("local", "--runtime", "-r", help="local or docker."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Read from lagging followers: anomaly counts without and with each remedy, and what the remedy costs."""
    from lab.errors import InvalidInput  # lazy: start-up
    from lab.reads.consistency import run  # lazy: start-up
    if which not in DRILLS:
        raise InvalidInput(f"unknown drill {which!r}", f"use one of: {', '.join(DRILLS)}")
    results = run(which, delay=delay, runtime=runtime)
    if as_json:
        print_json(results)
        return
    for d in results:
        rows = [[r.remedy, r.reads, r.anomalies, f"{r.read_ms:.1f}", f"{r.write_ms:.1f}", f"{r.waited_ms:.1f}",
                 r.fell_back, r.reroutes] for r in d.runs]
        console.print(table(f"{d.drill}: {d.lag}", ["remedy", "reads", "anomalies", "read ms", "write ms",
                                                    "waited ms", "fell back", "rerouted"], rows))
        for n in d.notes:
            console.print(f"  {n}", style="dim")
        ex = next((r for r in d.runs if r.example), None)
        if ex:
            console.print(f"  e.g. ({ex.remedy}): {ex.example}", style="dim")


@lab_app.command("methods")
def methods(
    runtime: str = typer.Option("local", "--runtime", "-r", help="local, or docker for logical 15 -> 17."),
    seconds: float = typer.Option(2.0, "--seconds", help="Length of each throughput measurement."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Statement-based vs WAL shipping vs logical replication, side by side, from a real run."""
    from lab.methods.compare import compare  # lazy: start-up
    res = compare(runtime=runtime, seconds=seconds)
    if as_json:
        print_json(res)
        return
    console.print(table("three ways to ship changes (measured)",
                        ["method", "determinism (diverged rows)", "cross-version", "lag", "overhead"],
                        [[m.method, m.determinism, m.cross_version, m.lag, m.overhead] for m in res.methods]))
    for n in res.notes:
        console.print(f"  {n}", style="dim")
