"""Failover managers: who keeps a lab available when its primary fails.

`manager(ctx)` gives the lab's manager, chosen by the topology's [ha] manager (an explicit registry,
like the runtimes'); everything else talks to the `Manager` interface and never asks which it is.
"""
from __future__ import annotations

from lab.cluster.context import Ctx
from lab.errors import InvalidInput, Unsupported
from lab.ha.base import Change, Component, HAEvent, Manager, ManagerView, Member, Takeover
from lab.model.haspec import MANAGERS
from lab.model.topology import Topology

__all__ = ["MANAGERS", "Change", "Component", "HAEvent", "Manager", "ManagerView", "Member", "Takeover", "check_available", "manager"]


def check_available(topology: Topology, runtime: str) -> str:
    """Before anything is created: one line naming what is missing. Returns the runtime to use
    (Patroni's and repmgr's stacks run on the local runtime only, so 'auto' means local)."""
    if topology.ha.manager == "repmgr":
        from lab.ha.repmgr import check_available as repmgr_available  # lazy: as below
        return repmgr_available(topology, runtime)
    if topology.ha.manager != "patroni":
        return runtime
    if runtime == "docker":
        raise Unsupported("--ha patroni on the Docker runtime needs images with Patroni, etcd and HAProxy, "
                          "which the lab's images do not have yet", "use --runtime local")
    from lab.ha.patroni import check_available as patroni_available  # lazy: loads Patroni's plumbing only when asked
    patroni_available(topology)
    return "local"


def manager(ctx: Ctx) -> Manager:
    kind = ctx.topology.ha.manager
    if kind == "none":
        from lab.ha.builtin import ManualManager  # lazy: each manager loads only its own dependencies
        return ManualManager(ctx)
    if kind == "pglab":
        from lab.ha.builtin import PglabManager  # lazy: as above
        return PglabManager(ctx)
    if kind == "patroni":
        from lab.ha.patroni import PatroniManager  # lazy: as above
        return PatroniManager(ctx)
    if kind == "repmgr":
        from lab.ha.repmgr import RepmgrManager  # lazy: as above
        return RepmgrManager(ctx)
    raise InvalidInput(f"unknown failover manager {kind!r}", f"use one of: {', '.join(MANAGERS)}")
