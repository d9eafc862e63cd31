"""Where the manager's view and PostgreSQL's own disagree: an operator learns most from these."""
from __future__ import annotations

from lab.cluster.status import LabStatus, Role
from lab.ha.base import ManagerView

LEADER_ROLES = ("leader", "standby_leader")


def disagreements(pg: LabStatus, view: ManagerView) -> dict[str, str]:
    """node (or 'lab') -> what does not match, for every mismatch."""
    out: dict[str, str] = {}
    if len(pg.primaries) > 1:
        out["lab"] = f"{len(pg.primaries)} nodes accept writes: {', '.join(pg.primaries)}"
    members = {m.name: m for m in view.members}
    for n in pg.nodes:
        m = members.get(n.name)
        if m is None:
            continue
        if n.role == Role.PRIMARY and m.role not in LEADER_ROLES:
            out[n.name] = f"PostgreSQL accepts writes, {view.manager} says {m.role}"
        elif m.role in LEADER_ROLES and n.role != Role.PRIMARY:
            out[n.name] = f"{view.manager} says leader, PostgreSQL is {n.role.value}"
        elif n.role == Role.STANDBY and m.role in ("sync_standby", "quorum_standby") and n.sync_state not in ("sync", "quorum"):
            out[n.name] = f"{view.manager} says {m.role}, the primary reports {n.sync_state or 'no stream'}"
        elif n.role == Role.STANDBY and m.role == "replica" and n.sync_state in ("sync", "quorum"):
            out[n.name] = f"{view.manager} says replica, the primary reports it {n.sync_state}"
    key = next((c for c in view.components if c.kind == "etcd" and c.name == "leader key"), None)
    if key is not None and key.state == "held" and view.leader and key.detail != view.leader:
        out["leader key"] = f"etcd's leader key names {key.detail}, the agents report {view.leader}"
    return out
