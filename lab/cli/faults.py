"""Faults and healing: pglab fault KIND NODE, pglab heal NODE."""
from __future__ import annotations

from typing import Optional

import typer

from lab.cli.root import app
from lab.cli.core import NameOpt, open_cluster
from lab.cli.render import console


@app.command()
def fault(
    kind: str = typer.Argument(..., help="stop, kill, pause, partition, isolate or throttle."),
    node: str = typer.Argument(..., help="The node to break."),
    rate: str = typer.Option("1mbit", "--rate", help="Bandwidth for throttle (tc units: 512kbit, 1mbit, …)."),
    name: Optional[str] = NameOpt,
) -> None:
    """Inject a fault on a node (stop, kill, pause, partition, isolate, throttle)."""
    lab = open_cluster(name)
    lab.fault(node, kind, rate=rate)
    console.print(f"{kind} {node}" + (f" ({rate})" if kind == "throttle" else "") + f"; undo with `pglab heal {node}`")


@app.command()
def heal(
    node: str = typer.Argument(..., help="The node to heal."),
    kind: Optional[str] = typer.Argument(None, help="One fault to undo (default: all)."),
    name: Optional[str] = NameOpt,
) -> None:
    """Undo faults on a node; a stopped or killed server is started again."""
    done = open_cluster(name).heal(node, kind)
    console.print(f"{node}: " + (", ".join(done) if done else "nothing to heal"))
