"""The lab's synchronous policy, in one place.

The policy is what `synchronous_standby_names` should mean across changes of leader (FIRST 1,
ANY 2, async …). `pglab sync set`, the drills' sync/async mode and the topology file all write
it here: the lab's saved topology. Reconfiguration after a failover reads it here, so whichever
was set last is what the next primary gets.
"""
from __future__ import annotations

from lab.cluster.context import Ctx
from lab.model.syncspec import SyncSpec


def get(ctx: Ctx) -> SyncSpec:
    return ctx.topology.sync


def put(ctx: Ctx, spec: SyncSpec) -> None:
    """Remember `spec` as the policy (saved with the lab state)."""
    ctx.state.topology.setdefault("replication", {})["synchronous_standby_names"] = spec.render() or "none"
    ctx.__dict__.pop("topology", None)   # Ctx.topology is a cached_property: parse it again
    ctx.save()
