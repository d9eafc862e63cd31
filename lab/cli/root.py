"""The root `pglab` command, where every command module registers itself.

A LabError becomes one line on stderr and exit status 2, here at the edge and nowhere else.
"""
from __future__ import annotations

import logging
import os

import typer
from typer.core import TyperGroup

from lab.cli.render import err_console
from lab.errors import LabError


class LabGroup(TyperGroup):
    def invoke(self, ctx: typer.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except LabError as e:
            err_console.print(f"pglab: error: {e.line()}", style="bold red", highlight=False, soft_wrap=True,
                              markup=False)
            if e.details:
                err_console.print(e.details, style="dim", highlight=False, markup=False)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("pglab: interrupted; what this command had made was removed", highlight=False,
                              markup=False)
            raise typer.Exit(130) from None


app = typer.Typer(cls=LabGroup, no_args_is_help=True, add_completion=False,
                  pretty_exceptions_show_locals=False,
                  help="A PostgreSQL streaming-replication lab: real servers, real faults, measured.")


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v",
                                       help="Debug detail on stderr (also PGLAB_LOG=debug).")) -> None:
    level = "DEBUG" if verbose else os.environ.get("PGLAB_LOG", "WARNING").upper()
    logging.basicConfig(level=getattr(logging, level, logging.WARNING), format="pglab: %(name)s: %(message)s")
