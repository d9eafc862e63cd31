"""Faults and healing: pglab fault KIND NODE, pglab heal NODE."""
from __future__ import annotations

from typing import Optional

import typer

from lab.api import Lab, default_name
from lab.cluster.faults import Fault
from lab.cli import app
from lab.cli.core import NameOpt
from lab.cli.render import console


@app.command()
def fault(
    kind: str = typer.Argument(..., help="stop, kill, kill-postgres, pause, partition, isolate or throttle."),
    node: str = typer.Argument(..., help="The node to break (with --ha patroni also an etcd member: e1, e2, e3 "
                                         "or etcd-leader)."),
    rate: str = typer.Option("1mbit", "--rate", help="Bandwidth for throttle (tc units: 512kbit, 1mbit, …)."),
    name: Optional[str] = NameOpt,
) -> None:
    """Inject a fault on a node (stop, kill, pause, partition, isolate, throttle)."""
    lab = Lab.open(name or default_name())
    lab.fault(node, kind, rate=rate)
    console.print(f"{kind} {node}" + (f" ({rate})" if kind == Fault.THROTTLE.value else "") + f"; undo with `pglab heal {node}`")


@app.command()
def heal(
    node: str = typer.Argument(..., help="The node to heal."),
    kind: Optional[str] = typer.Argument(None, help="One fault to undo (default: all)."),
    name: Optional[str] = NameOpt,
) -> None:
    """Undo faults on a node; a stopped or killed server is started again."""
    done = Lab.open(name or default_name()).heal(node, kind)
    console.print(f"{node}: " + (", ".join(done) if done else "nothing to heal"))
