"""Faults on a node and their healing, the same on every runtime.

kind       what happens                                   heal
stop       pg_ctl stop -m fast (a clean shutdown)         start the server
kill       SIGKILL of the postmaster (a crash)            start the server (crash recovery)
kill-postgres  the same without a supervisor (with one, lab.ha: the postmaster only, not the node)
pause      every process frozen (SIGSTOP / docker pause)  resume
partition  cut off the lab network (peers and clients)    reconnect
isolate    cut off from the other nodes only; clients on  remove the blackhole routes
           this machine still reach it (split brain)
throttle   outgoing bandwidth limited (tc tbf)            remove the limit
delay      what the node sends waits, e.g. 20ms (tc netem; remove the qdisc
           refused with the reason where the kernel has
           no netem)
"""
from __future__ import annotations

import re
from enum import Enum

from lab.cluster import server
from lab.cluster.context import Ctx
from lab.errors import InvalidInput


class Fault(str, Enum):
    STOP = "stop"
    KILL = "kill"
    KILL_POSTGRES = "kill-postgres"
    PAUSE = "pause"
    PARTITION = "partition"
    ISOLATE = "isolate"
    THROTTLE = "throttle"
    DELAY = "delay"


# tc's time units; a latency without a unit is refused rather than read as microseconds
LATENCY_RE = re.compile(r"^\d+(\.\d+)?(us|ms|s)$")


def parse_latency(latency: str | None) -> str:
    if not latency or not LATENCY_RE.match(latency):
        raise InvalidInput(f"invalid latency {latency!r}", "give a time with its unit, e.g. `pglab fault delay s1 20ms`")
    return latency


def parse_fault(kind: str) -> Fault:
    try:
        return Fault(kind)
    except ValueError:
        raise InvalidInput(f"unknown fault {kind!r}", f"use one of: {', '.join(f.value for f in Fault)}") from None


def inject(ctx: Ctx, node: str, kind: str | Fault, *, rate: str = "1mbit", latency: str | None = None) -> None:
    fault = parse_fault(kind) if isinstance(kind, str) else kind
    if node not in ctx.state.nodes:
        raise InvalidInput(f"no node {node!r} in lab {ctx.name}", f"nodes are: {', '.join(ctx.state.nodes)}")
    if fault is Fault.DELAY:
        parse_latency(latency)
    # both are the root qdisc of the node's link: one would silently replace the other
    other = {Fault.DELAY: Fault.THROTTLE, Fault.THROTTLE: Fault.DELAY}.get(fault)
    if other and other.value in active(ctx, node):
        raise InvalidInput(f"{node} is under a {other.value} already, and {fault.value} would replace it",
                           f"undo it first with `pglab heal {node} {other.value}`")
    if fault is Fault.STOP:
        server.stop(ctx.rt, node)
    elif fault in (Fault.KILL, Fault.KILL_POSTGRES):
        ctx.rt.kill(node)
    elif fault is Fault.PAUSE:
        ctx.rt.pause(node)
    elif fault is Fault.PARTITION:
        ctx.rt.partition(node)
    elif fault is Fault.ISOLATE:
        ctx.rt.isolate(node)
    elif fault is Fault.THROTTLE:
        ctx.rt.throttle(node, rate)
    elif fault is Fault.DELAY:
        ctx.rt.delay(node, latency)
    in_force = ctx.state.faults.setdefault(node, [])
    if fault.value not in in_force:
        in_force.append(fault.value)
    detail = {"rate": rate} if fault is Fault.THROTTLE else {"latency": latency} if fault is Fault.DELAY else {}
    ctx.event(f"fault:{fault.value}", node, **detail)


def active(ctx: Ctx, node: str) -> list[str]:
    return list(ctx.state.faults.get(node, []))


def heal(ctx: Ctx, node: str, kind: str | Fault | None = None) -> list[str]:
    """Undo one fault, or (kind=None) every fault on the node; a stopped or killed server is started."""
    if node not in ctx.state.nodes:
        raise InvalidInput(f"no node {node!r} in lab {ctx.name}", f"nodes are: {', '.join(ctx.state.nodes)}")
    todo = [parse_fault(kind).value if isinstance(kind, str) else kind.value] if kind else active(ctx, node)
    healed = []
    for f in todo:
        if f == Fault.PAUSE.value:
            ctx.rt.resume(node)
        elif f == Fault.PARTITION.value:
            ctx.rt.heal_partition(node)
        elif f == Fault.ISOLATE.value:
            ctx.rt.unisolate(node)
        elif f == Fault.THROTTLE.value:
            ctx.rt.unthrottle(node)
        elif f == Fault.DELAY.value:
            ctx.rt.undelay(node)
        healed.append(f)
    if kind is None or todo[0] in (Fault.STOP.value, Fault.KILL.value, Fault.KILL_POSTGRES.value):
        if not ctx.rt.postmaster_running(node):
            server.start(ctx.rt, node)
            healed.append("start")
    ctx.state.faults[node] = [f for f in active(ctx, node) if f not in healed and f not in ("stop", "kill", "kill-postgres")]
    ctx.event("heal", node, healed=healed)
    return healed
