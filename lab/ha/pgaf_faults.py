"""Faults on a pg_auto_failover lab, as they mean with a keeper on every node (see lab.ha.pgaf):
a data node's keeper and server together, the server alone, or the monitor.

partition and isolate are the runtime's (lab.runtime): on Docker a node's container is cut off
the lab network (partition: its keeper and server with it) or from the other nodes only (isolate);
the local runtime, whose pg_auto_failover labs listen on 127.0.0.1, refuses them in one line."""
from __future__ import annotations

from lab.errors import InvalidInput, Unsupported
from lab.wait import wait_until

MONITOR = "monitor"
FAULTS = ("kill", "kill-postgres", "stop", "pause", "partition", "isolate")
NETWORK = ("partition", "isolate")


class PgafFaults:
    """Mixed into PgAutoFailoverManager, whose ctx, _svc(), _service() and _start_keeper() it uses."""

    def fault(self, node: str, kind: str, *, rate: str = "1mbit", latency: str | None = None) -> None:
        svc, rt = self._svc(), self.ctx.rt
        if node not in self.ctx.state.nodes and node != MONITOR:
            raise InvalidInput(f"no node {node!r} in lab {self.ctx.name}",
                               f"nodes are: {', '.join([*self.ctx.state.nodes, MONITOR])}")
        if kind in ("throttle", "delay"):
            raise Unsupported(f"{kind} is not a fault pglab injects on a pg_auto_failover lab",
                              "use kill, kill-postgres, stop, pause (or partition, isolate on Docker)")
        if kind not in FAULTS:
            raise InvalidInput(f"unknown fault {kind!r}", f"use one of: {', '.join(FAULTS)}")
        keeper = self._service(node)
        if kind == "kill":
            # the keeper's process group holds its workers and the postmaster it started: all at
            # once, as when the machine dies (the server's children follow their postmaster)
            svc.signal(keeper, "kill", group=True)
            rt.kill(node)
        elif kind == "kill-postgres":
            rt.kill(node)
        elif kind == "stop":
            svc.signal(keeper, "term")
            wait_until(lambda: svc.pid(keeper) is None and not rt.postmaster_running(node), timeout=120,
                       what=f"pg_autoctl on {node} to stop", interval=0.1)
        elif kind == "pause":
            # the keeper first (it must not react), then the server: PostgreSQL's children lead
            # process groups of their own, so the keeper's group does not reach them
            svc.signal(keeper, "stop", group=True)
            if rt.postmaster_running(node):
                rt.pause(node)
        elif kind in NETWORK:
            try:
                if kind == "partition":
                    rt.partition(node)
                else:
                    rt.isolate(node)
            except Unsupported as e:
                # the runtime's own reason (the local one: no per-node network namespaces, which
                # a pg_auto_failover lab never has, so its hint to add --netns does not apply)
                raise Unsupported(f"{kind} on a pg_auto_failover lab: {e.message}",
                                  "use --runtime docker, or kill, kill-postgres, stop or pause") from None
        self._note_fault(node, kind)

    def heal(self, node: str, kind: str | None = None) -> list[str]:
        if node not in self.ctx.state.nodes and node != MONITOR:
            raise InvalidInput(f"no node {node!r} in lab {self.ctx.name}",
                               f"nodes are: {', '.join([*self.ctx.state.nodes, MONITOR])}")
        svc = self._svc()
        todo = [kind] if kind else list(self.ctx.state.faults.get(node, []))
        healed = []
        for f in todo:
            if f == "pause":
                self.ctx.rt.resume(node)
                svc.signal(self._service(node), "cont", group=True)
            elif f == "partition":
                self.ctx.rt.heal_partition(node)
            elif f == "isolate":
                self.ctx.rt.unisolate(node)
            healed.append(f)
        if svc.pid(self._service(node)) is None:
            self._start_keeper(node)
            healed.append("start pg_autoctl")
        self.ctx.state.faults[node] = [f for f in self.ctx.state.faults.get(node, []) if f not in healed]
        self.ctx.save()
        self.ctx.event("heal", node, healed=healed)
        return healed
