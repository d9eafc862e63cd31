"""The dashboard's keys: each acts on the selected node through one `Lab` call, and each has the
`pglab` command that does the same, shown when the key is pressed so people learn the CLI."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from lab.api import Lab


@dataclass(frozen=True)
class NodeAction:
    key: str
    name: str                                  # the action_* suffix, and the label in the footer
    help: str
    command: Callable[[str, str], str]         # (node, lab name) -> the equivalent pglab command
    call: Callable[[Lab, str], Any]            # what the key does


def toggle_replay(lab: Lab, node: str) -> str:
    """Pause replay, or resume it when it is paused (read from the server, not remembered)."""
    if lab.status().node(node).replay_paused:
        lab.resume_replay(node)
        return "replay resumed"
    lab.pause_replay(node)
    return "replay paused"


def _fault(kind: str) -> NodeAction:
    return NodeAction({"kill": "k", "stop": "s", "pause": "p", "partition": "x", "isolate": "i",
                       "throttle": "t"}[kind], kind, f"{kind} the selected node (a fault; heal with h)",
                      lambda n, lab, k=kind: f"pglab fault {k} {n} --name {lab}" + (" --rate 1mbit" if k == "throttle" else ""),
                      lambda lab, n, k=kind: lab.fault(n, k))


ACTIONS: tuple[NodeAction, ...] = (
    _fault("kill"), _fault("stop"), _fault("pause"), _fault("partition"), _fault("isolate"), _fault("throttle"),
    NodeAction("h", "heal", "undo every fault on the selected node (a stopped or killed server is started)",
               lambda n, lab: f"pglab heal {n} --name {lab}", lambda lab, n: lab.heal(n)),
    NodeAction("r", "replay", "pause WAL replay on the selected standby, or resume it",
               lambda n, lab: f"pglab psql {n} --name {lab} -c 'SELECT pg_wal_replay_pause()'  (or _resume())",
               lambda lab, n: toggle_replay(lab, n)),
    NodeAction("P", "promote", "promote the selected standby by hand and re-point the others",
               lambda n, lab: f"pglab promote {n} --name {lab}", lambda lab, n: lab.promote(n)),
    NodeAction("w", "switchover", "planned switchover to the selected standby (no lost writes)",
               lambda n, lab: f"pglab switchover --to {n} --name {lab}", lambda lab, n: lab.switchover(n)),
    NodeAction("f", "failover", "unplanned failover to the selected standby, fencing the old primary",
               lambda n, lab: f"pglab failover --to {n} --fence kill --name {lab}",
               lambda lab, n: lab.failover(n, fence="kill")),
    NodeAction("j", "rejoin", "bring the selected old primary back as a standby (pg_rewind, else re-clone)",
               lambda n, lab: f"pglab rejoin {n} --name {lab}", lambda lab, n: lab.rejoin(n)),
)

BY_NAME = {a.name: a for a in ACTIONS}
