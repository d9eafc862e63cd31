"""Starting and stopping a node's server with pg_ctl, the same on every runtime."""
from __future__ import annotations

import logging

from lab.errors import NodeFailed
from lab.runtime.base import Runtime


def log_tail(rt: Runtime, node: str, lines: int = 15) -> str:
    text = rt.read_file(node, rt.paths(node).log) or ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


log = logging.getLogger(__name__)


def start(rt: Runtime, node: str, timeout: int = 60) -> None:
    log.debug("starting the server of %s", node)
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
    log.debug("stopping the server of %s (%s)", node, mode)
    res = rt.run(node, ["pg_ctl", "-D", p.data, "-m", mode, "-w", "-t", str(timeout), "stop"],
                 check=False, timeout=timeout + 15)
    if res.rc != 0 and rt.postmaster_running(node):
        raise NodeFailed(f"the server of node {node} did not stop", details=res.out[-1000:])
