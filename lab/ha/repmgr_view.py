"""repmgr's view of a lab, for `pglab status` and the drills: repmgr.nodes (roles, upstreams,
priorities), each node's repmgrd, and repmgr's own event log (repmgr.events)."""
from __future__ import annotations

import psycopg

from lab.cluster import sql
from lab.ha import repmgr_conf as conf
from lab.ha.base import Component, HAEvent, ManagerView, Member


class RepmgrView:
    """Mixed into RepmgrManager, whose ctx, name, _svc(), _home() and _ids() it uses."""

    # ---- looking -----------------------------------------------------------------------------
    def _nodes_table(self) -> tuple[str | None, list[tuple]]:
        """repmgr.nodes, read from the node PostgreSQL says is the primary (repmgr writes its
        metadata there), else from any node that answers; (node read, rows)."""
        order = sorted(self.ctx.state.nodes, key=lambda n: n != self.ctx.state.primary)
        fallback: tuple[str | None, list[tuple]] = (None, [])
        for n in order:
            try:
                with sql.connect(self.ctx.state, n, dbname=conf.DB, connect_timeout=2) as c:
                    rows = c.execute("SELECT n.node_id, n.node_name, n.type, u.node_name, n.active, n.priority "
                                     "FROM repmgr.nodes n LEFT JOIN repmgr.nodes u ON u.node_id = n.upstream_node_id "
                                     "ORDER BY n.node_id").fetchall()
                    primary = c.execute("SELECT NOT pg_is_in_recovery()").fetchone()[0]
            except psycopg.Error:
                continue
            if primary:
                return n, rows
            if fallback[0] is None:
                fallback = (n, rows)
        return fallback

    def leader(self) -> str | None:
        _, rows = self._nodes_table()
        return next((r[1] for r in rows if r[2] == "primary" and r[4]), None)

    def view(self) -> ManagerView:
        src, rows = self._nodes_table()
        svc = self._svc()
        comps = [Component("repmgrd", f"repmgrd-{n}", f"{self._home(n)}/repmgr.log",
                           "up" if svc.pid(f"repmgrd-{n}") else "down",
                           f"pid {svc.pid(f'repmgrd-{n}')}" if svc.pid(f"repmgrd-{n}") else None)
                 for n in self.ctx.state.nodes]
        try:
            ssn = sql.scalar(self.ctx.state, self.ctx.state.primary, "SHOW synchronous_standby_names")
        except psycopg.Error:
            ssn = None
        comps.append(Component("pglab", "synchronous_standby_names", self.ctx.state.primary,
                               "set by pglab (repmgr does not)", ssn if ssn is not None else "unreadable"))
        if src is None:
            return ManagerView(self.name, None, (), tuple(comps), error="no node answers with repmgr's metadata")
        members = []
        for node_id, name, kind, upstream, active, prio in rows:
            if kind == "primary":
                role = "leader" if active else "primary (inactive)"
            else:
                role = "standby" if active else "standby (inactive)"
            members.append(Member(name, role, f"upstream {upstream}" if upstream else ("registered" if active else "inactive"),
                                  tags={"node_id": node_id, "priority": prio, "repmgrd": bool(svc.pid(f"repmgrd-{name}"))}))
        seen = {m.name for m in members}
        members += [Member(n, "(missing)", "not registered with repmgr") for n in self.ctx.state.nodes if n not in seen]
        leader = next((m.name for m in members if m.role == "leader"), None)
        return ManagerView(self.name, leader, tuple(members), tuple(comps))

    def _repmgr_events(self, after: float | None = None, on: str | None = None) -> list[tuple[float, str, str, bool, str]]:
        """(time, event, node, successful, details) from repmgr.events on the primary (or `on`)."""
        names = {v: k for k, v in self._ids().items()}
        try:
            with sql.connect(self.ctx.state, on or self.ctx.state.primary, dbname=conf.DB, connect_timeout=2) as c:
                rows = c.execute("SELECT extract(epoch FROM event_timestamp)::float8, event, node_id, successful, "
                                 "coalesce(details, '') FROM repmgr.events WHERE event_timestamp >= to_timestamp(%s) "
                                 "ORDER BY event_timestamp", (after or 0,)).fetchall()
        except psycopg.Error:
            return []
        return [(t, ev, names.get(nid, str(nid)), ok, det) for t, ev, nid, ok, det in rows]

    def events(self) -> list[HAEvent]:
        """What the lab recorded, and repmgr's own event log (repmgr.events), oldest first."""
        out = super().events()  # type: ignore[misc]  # Manager.events, after this mixin in the MRO
        for t, ev, node, ok, det in self._repmgr_events():
            out.append(HAEvent(t, ev if ok else f"{ev} (failed)", node, f"{det[:90]} (repmgr.events)".strip()))
        return sorted(out, key=lambda e: e.t)

