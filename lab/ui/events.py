"""What changed between two status snapshots, and the lab's own timeline, as event-log lines.

Pure functions over `LabStatus` and the lab's event dicts, so they are tested without a lab."""
from __future__ import annotations

from typing import Any

from lab.cluster.status import LabStatus, NodeStatus, Role


def _role(n: NodeStatus) -> str:
    return n.role.value


def diff(prev: LabStatus | None, cur: LabStatus, known_primaries: list[str] | None = None) -> list[str]:
    """Failovers, role changes, timeline changes, sync changes, upstream and replay changes.
    `known_primaries`: the last primaries seen, so that a failover seen as "p1 down" in one
    snapshot and "s1 primary" a few snapshots later is still named as the failover it is."""
    if prev is None:
        return []
    out: list[str] = []
    before = {n.name: n for n in prev.nodes}
    old_p, new_p = set(prev.primaries), set(cur.primaries)
    if new_p != old_p and not new_p:
        out.append(f"no primary answers any more (was {', '.join(sorted(old_p))})")
    elif new_p != old_p:
        old_p = set(known_primaries or ()) or old_p
        gained, lost = sorted(new_p - old_p), sorted(old_p - new_p)
        if not gained and not lost:
            out.append(f"primary {', '.join(sorted(new_p))} answers again")
        elif gained and lost:
            out.append(f"FAILOVER detected: primary {', '.join(lost)} -> {', '.join(gained)}")
        elif gained and old_p:
            out.append(f"SPLIT BRAIN: {len(new_p)} primaries ({', '.join(sorted(new_p))})")
        elif gained:
            out.append(f"new primary: {', '.join(gained)}")
        else:
            out.append(f"{', '.join(lost)} no longer primary; {', '.join(sorted(new_p))} still is")
    for n in cur.nodes:
        b = before.get(n.name)
        if b is None:
            continue
        if _role(b) != _role(n):
            out.append(f"{n.name}: {_role(b)} -> {_role(n)}" + (f" ({n.error})" if n.error and n.role in
                                                                   (Role.DOWN, Role.UNREACHABLE) else ""))
        if b.timeline and n.timeline and b.timeline != n.timeline:
            out.append(f"{n.name}: timeline {b.timeline} -> {n.timeline}")
        if n.role == Role.STANDBY and b.role == Role.STANDBY:
            if b.sync_state != n.sync_state:
                out.append(f"{n.name}: sync state {b.sync_state or 'unknown'} -> {n.sync_state or 'unknown'}")
            if b.upstream != n.upstream:
                out.append(f"{n.name}: streams from {n.upstream or 'nobody'} (was {b.upstream or 'nobody'})")
            if b.replay_paused != n.replay_paused:
                out.append(f"{n.name}: replay {'paused' if n.replay_paused else 'resumed'}")
        if n.unrecoverable and not b.unrecoverable:
            out.append(f"{n.name}: UNRECOVERABLE, the WAL it needs is gone (pglab node reclone {n.name})")
    return out


def describe_event(e: dict[str, Any]) -> str:
    """One line for an event of the lab's timeline (fault, heal, promote, failover, …)."""
    kind, node = e.get("kind", "?"), e.get("node")
    extra = {k: v for k, v in e.items() if k not in ("t", "kind", "node") and v not in (None, [], "")}
    detail = ", ".join(f"{k}={v}" for k, v in extra.items())
    return f"{kind}" + (f" {node}" if node else "") + (f" ({detail})" if detail else "")
