"""Failover managers: who keeps a lab available when its primary fails.

`manager(ctx)` gives the lab's manager, chosen by the topology's [ha] manager (an explicit registry,
like the runtimes'); everything else talks to the `Manager` interface and never asks which it is.
"""
from __future__ import annotations

from lab.cluster.context import Ctx
from lab.errors import InvalidInput
from lab.ha.base import Change, Component, HAEvent, Manager, ManagerView, Member, Takeover
from lab.model.haspec import MANAGERS
from lab.model.topology import Topology

__all__ = ["MANAGERS", "Change", "Component", "HAEvent", "Manager", "ManagerView", "Member", "Takeover", "bootstraps", "check_available", "fit", "manager"]


def check_available(topology: Topology, runtime: str) -> str:
    """Before anything is created: one line naming what is missing. Returns the runtime to use
    ('auto' means local for Patroni, whose Docker stack needs an HA image built first, and for
    repmgr and pg_auto_failover, whose Docker labs need the lab's 15 image with the manager)."""
    if topology.ha.manager == "pg_auto_failover":
        from lab.ha.pgaf import check_available as pgaf_available  # lazy: pg_auto_failover's plumbing only when asked
        return pgaf_available(topology, runtime)
    if topology.ha.manager == "repmgr":
        from lab.ha.repmgr import check_available as repmgr_available  # lazy: repmgr's plumbing only when asked
        return repmgr_available(topology, runtime)
    if topology.ha.manager != "patroni":
        return runtime
    if runtime == "docker":
        from lab.runtime.images import check_ha_image  # lazy: the Docker SDK is slow to import
        check_ha_image(topology.pg_version, topology.image)
        return runtime
    from lab.ha.patroni import check_available as patroni_available  # lazy: loads Patroni's plumbing only when asked
    patroni_available(topology)
    return "local"


def bootstraps(kind: str) -> bool:
    """Whether the manager creates the servers itself (else the lab does, and the manager supervises)."""
    return kind in ("patroni", "pg_auto_failover")


def fit(topology: Topology) -> Topology:
    """The topology a manager can run: pg_auto_failover exists for PostgreSQL 15 only, so a lab that
    asks for no version gets 15 (one that asks for another is refused by check_available)."""
    if topology.ha.manager == "pg_auto_failover" and topology.pg_version is None and topology.bindir is None:
        return topology.with_changes(pg_version=15)
    return topology


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
    if kind == "pg_auto_failover":
        from lab.ha.pgaf import PgAutoFailoverManager  # lazy: as above
        return PgAutoFailoverManager(ctx)
    if kind == "repmgr":
        from lab.ha.repmgr import RepmgrManager  # lazy: as above
        return RepmgrManager(ctx)
    raise InvalidInput(f"unknown failover manager {kind!r}", f"use one of: {', '.join(MANAGERS)}")
