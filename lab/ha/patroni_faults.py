"""Faults on a Patroni lab, as they mean with a supervisor (see lab.ha.patroni for the table):
a node's agent and server together, the server alone, or one etcd member."""
from __future__ import annotations

import json

from lab.errors import InvalidInput, NodeFailed
from lab.ha import etcd
from lab.wait import wait_until

NODE_FAULTS = ("kill", "kill-postgres", "stop", "pause", "partition", "isolate", "throttle")
ETCD_FAULTS = ("kill", "stop", "pause", "partition")


class PatroniFaults:
    """Mixed into PatroniManager, whose ctx, _svc(), _members() and _start_agent() it uses."""

    def _etcd_target(self, name: str) -> etcd.EtcdMember | None:
        members = self._members()
        if name == "etcd-leader":
            lead = etcd.leader(self._svc(), members)
            if lead is None:
                raise NodeFailed("the etcd cluster has no leader now", "see `pglab status`")
            name = lead
        return next((m for m in members if m.name == name), None)

    def fault(self, node: str, kind: str, *, rate: str = "1mbit", latency: str | None = None) -> None:
        svc, rt = self._svc(), self.ctx.rt
        m = self._etcd_target(node) if node.startswith("e") else None
        if m is not None:
            if kind not in ETCD_FAULTS:
                raise InvalidInput(f"fault {kind!r} does not apply to etcd member {m.name}", f"use one of: {', '.join(ETCD_FAULTS)}")
            if kind == "partition":
                svc.partition(m.name, True)
            else:
                svc.signal(m.service, {"kill": "kill", "stop": "term", "pause": "stop"}[kind])
            self._note_fault(m.name, kind)
            return
        if node not in self.ctx.state.nodes:
            names = [*self.ctx.state.nodes, *(x.name for x in self._members()), "etcd-leader"]
            raise InvalidInput(f"no node {node!r} in lab {self.ctx.name}", f"nodes are: {', '.join(names)}")
        if kind not in NODE_FAULTS:
            raise InvalidInput(f"unknown fault {kind!r}", f"use one of: {', '.join(NODE_FAULTS)}")
        agent = f"patroni-{node}"
        if kind == "kill":
            svc.signal(agent, "kill")
            rt.kill(node)
        elif kind == "kill-postgres":
            rt.kill(node)
        elif kind == "stop":
            svc.signal(agent, "term")
            wait_until(lambda: svc.pid(agent) is None, timeout=120, what=f"Patroni on {node} to stop", interval=0.1)
        elif kind == "pause":
            svc.signal(agent, "stop")
            if rt.postmaster_running(node):
                rt.pause(node)
        elif kind == "partition":
            rt.partition(node)
        elif kind == "isolate":
            rt.isolate(node)
        elif kind == "throttle":
            rt.throttle(node, rate)
        self._note_fault(node, kind)

    def heal(self, node: str, kind: str | None = None) -> list[str]:
        svc, rt = self._svc(), self.ctx.rt
        todo = [kind] if kind else list(self.ctx.state.faults.get(node, []))
        m = self._etcd_target(node) if node.startswith("e") else None
        healed = []
        for f in todo:
            if m is not None:
                if f == "partition":
                    svc.partition(m.name, False)
                elif f == "pause":
                    svc.signal(m.service, "cont")
                elif f in ("kill", "stop") and svc.pid(m.service) is None:
                    self._restart_etcd(m)
            elif f == "pause":
                svc.signal(f"patroni-{node}", "cont")
                rt.resume(node)
            elif f == "partition":
                rt.heal_partition(node)
            elif f == "isolate":
                rt.unisolate(node)
            elif f == "throttle":
                rt.unthrottle(node)
            elif f in ("kill", "stop"):
                if svc.pid(f"patroni-{node}") is None:
                    self._start_agent(node)
            healed.append(f)
        if m is None and node in self.ctx.state.nodes and svc.pid(f"patroni-{node}") is None:
            self._start_agent(node)
            healed.append("start patroni")
        key = m.name if m is not None else node
        self.ctx.state.faults[key] = [f for f in self.ctx.state.faults.get(key, []) if f not in healed]
        self.ctx.event("heal", key, healed=healed)
        return healed

    def _restart_etcd(self, m: etcd.EtcdMember) -> None:
        # the same member, with its data: it rejoins the cluster it belonged to
        svc = self._svc()
        rec_argv = None
        for name in svc.names():
            if name == m.service:
                rec_argv = json.loads((self.ctx.state.dir / "services" / f"{name}.json").read_text())["argv"]
        if rec_argv is None:
            raise NodeFailed(f"etcd member {m.name} was never started here")
        argv = [a if a != "new" else "existing" for a in rec_argv]
        d = svc.workdir("etcd")
        svc.start(m.service, argv, where=m.name, log=f"{d}/{m.name}.log")
