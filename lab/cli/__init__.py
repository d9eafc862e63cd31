"""The `pglab` command: a thin layer over the `lab` API.

Each command parses its options, calls one API function and renders the result
(a rich table, or JSON with --json). A LabError becomes one line on stderr and
exit status 2, here at the edge and nowhere else.
"""
from __future__ import annotations

import sys

import typer
from typer.core import TyperGroup

from lab.errors import LabError
from lab.cli.render import err_console


class LabGroup(TyperGroup):
    def invoke(self, ctx: typer.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except LabError as e:
            err_console.print(f"[bold red]pglab: error:[/] {e.line()}", highlight=False, soft_wrap=True)
            if e.details:
                err_console.print(e.details, style="dim", highlight=False, markup=False)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("pglab: interrupted; what this command had made was removed", highlight=False)
            raise typer.Exit(130) from None


app = typer.Typer(cls=LabGroup, no_args_is_help=True, add_completion=False,
                  pretty_exceptions_show_locals=False,
                  help="A PostgreSQL streaming-replication lab: real servers, real faults, measured.")

# command modules register themselves on `app`
from lab.cli import core, faults, scenario  # noqa: E402,F401
from lab.cli import images  # noqa: E402,F401  (issue 3: image, prune, compose)
from lab.cli import bench, lagcmd, node, workload  # noqa: E402,F401  (issue 4: workloads, lag, bench, drills)
from lab.cli import consistency as _consistency  # noqa: E402,F401  (issue 7: pglab lab consistency|methods)
from lab.cli import failover  # noqa: E402,F401  (issue 5: promote, switchover, failover, rejoin, monitor, drill)
from lab.cli import chaos as _chaos  # noqa: E402,F401  (issues 13, 17: pglab chaos)


def main() -> None:
    sys.exit(app())
