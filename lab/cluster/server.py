"""Starting and stopping a node's server with pg_ctl, the same on every runtime."""
from __future__ import annotations

from lab.errors import NodeFailed
from lab.runtime.base import Runtime


def log_tail(rt: Runtime, node: str, lines: int = 15) -> str:
    text = rt.read_file(node, rt.paths(node).log) or ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def start(rt: Runtime, node: str, timeout: int = 60) -> None:
    p = rt.paths(node)
    res = rt.run(node, ["pg_ctl", "-D", p.data, "-l", p.log, "-w", "-t", str(timeout), "start"],
                 check=False, timeout=timeout + 15)
    if res.rc != 0:
        raise NodeFailed(f"the server of node {node} did not start",
                         "its last log lines are below", details=log_tail(rt, node))


def stop(rt: Runtime, node: str, mode: str = "fast", timeout: int = 60) -> None:
    p = rt.paths(node)
    if not rt.postmaster_running(node):
        return
    res = rt.run(node, ["pg_ctl", "-D", p.data, "-m", mode, "-w", "-t", str(timeout), "stop"],
                 check=False, timeout=timeout + 15)
    if res.rc != 0 and rt.postmaster_running(node):
        raise NodeFailed(f"the server of node {node} did not stop", details=res.out[-1000:])


def restart(rt: Runtime, node: str, mode: str = "fast", timeout: int = 60) -> None:
    """`pg_ctl restart`: the port is closed between the old postmaster's exit and the new one's start."""
    p = rt.paths(node)
    res = rt.run(node, ["pg_ctl", "-D", p.data, "-l", p.log, "-m", mode, "-w", "-t", str(timeout), "restart"],
                 check=False, timeout=timeout + 15)
    if res.rc != 0:
        raise NodeFailed(f"the server of node {node} did not restart", "its last log lines are below",
                         details=log_tail(rt, node))
