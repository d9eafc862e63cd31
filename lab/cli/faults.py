"""Faults and healing: pglab fault KIND NODE, pglab heal NODE."""
from __future__ import annotations

from typing import Optional

import typer

from lab.cli.root import app
from lab.cli.core import NameOpt, open_lab
from lab.cli.render import console
from lab.errors import InvalidInput


@app.command()
def fault(
    kind: str = typer.Argument(..., help="stop, kill, kill-postgres, pause, partition, isolate, throttle or delay."),
    node: str = typer.Argument(..., help="The node to break (with --ha patroni also an etcd member: e1, e2, e3 "
                                         "or etcd-leader)."),
    latency: Optional[str] = typer.Argument(None, help="For delay: what the node sends waits this long, e.g. 20ms."),
    rate: str = typer.Option("1mbit", "--rate", help="Bandwidth for throttle (tc units: 512kbit, 1mbit, …)."),
    name: Optional[str] = NameOpt,
) -> None:
    """Inject a fault on a node (stop, kill, pause, partition, isolate, throttle, delay LATENCY).

    delay needs the kernel's netem qdisc; where it has none, pglab says so and changes nothing."""
    lab = open_lab(name)
    if latency is not None and kind != "delay":
        raise InvalidInput(f"{kind} takes no latency ({latency!r})", f"e.g. `pglab fault {kind} {node}`")
    lab.fault(node, kind, rate=rate, latency=latency)
    extra = f" ({rate})" if kind == "throttle" else f" ({latency})" if kind == "delay" else ""
    console.print(f"{kind} {node}{extra}; undo with `pglab heal {node}`")


@app.command()
def heal(
    node: str = typer.Argument(..., help="The node to heal."),
    kind: Optional[str] = typer.Argument(None, help="One fault to undo (default: all)."),
    name: Optional[str] = NameOpt,
) -> None:
    """Undo faults on a node; a stopped or killed server is started again."""
    done = open_lab(name).heal(node, kind)
    console.print(f"{node}: " + (", ".join(done) if done else "nothing to heal"))
