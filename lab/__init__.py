"""pglab: a PostgreSQL streaming-replication lab, as a library.

    from lab import Lab
    with Lab.up() as lab:                      # p1 primary, s1 sync, s2 async; removed at the end
        lab.node("s1").fault("pause")
        print(lab.status().node("s1").replay_lag_bytes)

The result types of `Lab`'s methods live in the area packages (`lab.failover.promotion.Failover`,
`lab.replication.follower.CatchupResult`, …); the most used ones are exported here, with every
error type.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lab.api import Lab, down, list_labs
    from lab.cluster.handle import Cluster, Node
    from lab.cluster.status import LabStatus, NodeStatus, Role
    from lab.errors import (FailoverRefused, InvalidInput, LabError, LabExists, LabNotFound, NodeFailed,
                            RuntimeUnavailable, Unsupported, WaitTimeout)
    from lab.failover.checker import SetCheck
    from lab.failover.drill import DrillReport, DrillResult
    from lab.failover.promotion import Failover, Promotion, Switchover
    from lab.failover.rejoin import Rejoin
    from lab.failover.splitbrain import SplitBrainResult
    from lab.model.syncspec import SyncSpec
    from lab.model.topology import NodeSpec, Topology, default_topology, load_topology
    from lab.replication.commitbench import CommitBench
    from lab.replication.follower import CatchupResult, NoSlotResult, SyncFailureResult
    from lab.replication.lagrec import LagRecording
    from lab.workload.pgbench import PgbenchResult

# `import lab.x` must not import the whole API: the CLI imports only what a command needs, so that
# `pglab status` starts in a fraction of a second. Names of the API load on first use (PEP 562).
_HOMES = {
    "Lab": "lab.api", "down": "lab.api", "list_labs": "lab.api",
    "Cluster": "lab.cluster.handle", "Node": "lab.cluster.handle",
    "LabStatus": "lab.cluster.status", "NodeStatus": "lab.cluster.status", "Role": "lab.cluster.status",
    **{n: "lab.errors" for n in ("FailoverRefused", "InvalidInput", "LabError", "LabExists", "LabNotFound",
                                 "NodeFailed", "RuntimeUnavailable", "Unsupported", "WaitTimeout")},
    "SetCheck": "lab.failover.checker", "DrillReport": "lab.failover.drill", "DrillResult": "lab.failover.drill",
    "Failover": "lab.failover.promotion", "Promotion": "lab.failover.promotion", "Switchover": "lab.failover.promotion",
    "Rejoin": "lab.failover.rejoin", "SplitBrainResult": "lab.failover.splitbrain", "SyncSpec": "lab.model.syncspec",
    "NodeSpec": "lab.model.topology", "Topology": "lab.model.topology", "default_topology": "lab.model.topology",
    "load_topology": "lab.model.topology", "CommitBench": "lab.replication.commitbench",
    "CatchupResult": "lab.replication.follower", "NoSlotResult": "lab.replication.follower",
    "SyncFailureResult": "lab.replication.follower", "LagRecording": "lab.replication.lagrec",
    "PgbenchResult": "lab.workload.pgbench",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'lab' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)


__all__ = [
    "CatchupResult", "Cluster", "CommitBench", "DrillReport", "DrillResult", "Failover", "FailoverRefused",
    "InvalidInput", "Lab", "LabError", "LabExists", "LabNotFound", "LabStatus", "LagRecording",
    "NoSlotResult", "Node", "NodeFailed", "NodeSpec", "NodeStatus", "PgbenchResult", "Promotion", "Rejoin", "Role",
    "RuntimeUnavailable", "SetCheck", "SplitBrainResult", "Switchover", "SyncFailureResult", "SyncSpec",
    "Topology", "Unsupported", "WaitTimeout", "default_topology", "down", "list_labs", "load_topology",
]
__version__ = "0.1.0"
