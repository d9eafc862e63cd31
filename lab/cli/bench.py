"""pglab bench commit: the price of synchronous commit, one run, one table (`bench ha`: lab.cli.benchha)."""
from __future__ import annotations

from typing import Optional

import typer

from lab.model.syncspec import BENCH_SPECS
from lab.model.topology import SYNC_COMMIT_LEVELS
from lab.cli.root import app
from lab.cli.core import JsonOpt, NameOpt, open_lab
from lab.cli.render import console, err_console, print_json, table

bench_app = typer.Typer(no_args_is_help=True, help="Measurements: on a running lab (commit), or on labs of its own (ha).")
app.add_typer(bench_app, name="bench")


@bench_app.command("commit")
def commit(
    clients: int = typer.Option(4, "--clients", "-c", min=1),
    duration: float = typer.Option(2, "--duration", "-d", min=1, help="Seconds per cell (20 cells by default)."),
    levels: str = typer.Option(",".join(SYNC_COMMIT_LEVELS), "--levels", help="synchronous_commit levels."),
    specs: str = typer.Option(";".join(BENCH_SPECS), "--specs",
                              help="synchronous_standby_names rules, separated by ';'."),
    markdown: bool = typer.Option(False, "--markdown", help="Print a Markdown table (for the README)."),
    name: Optional[str] = NameOpt,
    as_json: bool = JsonOpt,
) -> None:
    """For each synchronous_standby_names rule and synchronous_commit level: TPS, commit p50/p99,
    ratios to `local`, and how often a row was not yet visible on the synchronous standby."""
    lab = open_lab(name)
    b = lab.bench_commit(clients=clients, duration=duration, levels=tuple(x.strip() for x in levels.split(",") if x.strip()),
                         specs=tuple(x.strip() for x in specs.split(";") if x.strip()),
                         on_cell=lambda c: err_console.print(f"  {c.spec} / {c.level}: {c.tps:.0f} tps", style="dim"))
    if as_json:
        print_json(b)
    elif markdown:
        from lab.replication.commitbench import markdown  # lazy: start-up
        print(markdown(b))
    else:
        rows = [[c.spec, c.level, f"{c.tps:.0f}", _f(c.p50_ms), _f(c.p99_ms), _f(c.p50_x_local), _f(c.tps_x_local),
                 "-" if not c.probes else f"{c.not_visible}/{c.probes}"] for c in b.cells]
        console.print(table(f"price of synchronous commit: {b.clients} clients, {b.duration_s:.0f} s per cell, lab {lab.name}",
                            ["sync names", "sync commit", "TPS", "p50 ms", "p99 ms", "p50 x local", "TPS x local",
                             "not visible"], rows))
    if b.skipped:
        err_console.print(f"skipped (standbys missing): {', '.join(b.skipped)}")


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"
