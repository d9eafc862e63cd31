"""Starting and stopping a node's server with pg_ctl, the same on every runtime."""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from lab.errors import NodeFailed
from lab.runtime.base import Runtime
from lab.wait import wait_until


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


def _started(rt: Runtime, node: str) -> bool:
    """True once the postmaster says it accepts connections (postmaster.pid, line 8: "ready", or
    "standby" for a hot standby); NodeFailed once it has exited with a FATAL or PANIC in its log."""
    p = rt.paths(node)
    lines = (rt.read_file(node, f"{p.data}/postmaster.pid") or "").splitlines()
    if len(lines) >= 8 and lines[7].strip() in ("ready", "standby"):
        return True
    if not rt.postmaster_running(node):
        log = rt.read_file(node, p.log) or ""
        if "FATAL:" in log or "PANIC:" in log:
            raise NodeFailed(f"the server of node {node} did not start",
                             "its last log lines are below", details=log_tail(rt, node))
    return False


def start_all(rt: Runtime, nodes: list[str], timeout: float = 60) -> None:
    """Start every node's server at once and wait until all accept connections. Polls more often
    than `pg_ctl -w` (every 100 ms), which matters when a lab comes up in a second or two."""
    def launch(node: str) -> None:
        p = rt.paths(node)
        res = rt.run(node, ["pg_ctl", "-D", p.data, "-l", p.log, "start"], check=False, timeout=30)
        if res.rc != 0:
            raise NodeFailed(f"the server of node {node} did not start", "its last log lines are below",
                             details=(res.out.strip() + "\n" + log_tail(rt, node)).strip())

    with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as ex:
        list(ex.map(launch, nodes))
    waiting = list(nodes)

    looks = ThreadPoolExecutor(max_workers=max(1, len(nodes)))

    def all_started() -> bool:
        # every node looked at at once: a look costs a round trip on Docker
        started = list(looks.map(lambda n: _started(rt, n), waiting))
        waiting[:] = [n for n, ok in zip(waiting, started) if not ok]
        return not waiting

    try:
        wait_until(all_started, timeout=timeout, interval=0.01, what=f"the servers of {', '.join(nodes)} to accept connections",
                   logs=lambda: "\n".join(f"--- {n} ---\n{log_tail(rt, n)}" for n in waiting))
    finally:
        looks.shutdown(wait=False)


def restart(rt: Runtime, node: str, mode: str = "fast", timeout: int = 60) -> None:
    """`pg_ctl restart`: the port is closed between the old postmaster's exit and the new one's start."""
    p = rt.paths(node)
    res = rt.run(node, ["pg_ctl", "-D", p.data, "-l", p.log, "-m", mode, "-w", "-t", str(timeout), "restart"],
                 check=False, timeout=timeout + 15)
    if res.rc != 0:
        raise NodeFailed(f"the server of node {node} did not restart", "its last log lines are below",
                         details=log_tail(rt, node))
