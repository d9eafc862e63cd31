"""The runtime interface: everything the cluster logic needs from "a machine that runs a node".

The cluster logic (bootstrap, clone, promote, rewind, status) only talks to a
Runtime; it never asks which one it is. A runtime runs commands as the
server's unprivileged user on a node, reads and writes files there, and
provides the fault primitives (kill, pause, partition, throttle).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from lab.model.state import NodeAddr
from lab.model.topology import NodeSpec


@dataclass(frozen=True)
class NodePaths:
    home: str      # the server user's working directory on the node (pgpass, logs, sockets)
    data: str      # PGDATA
    log: str       # the server log (pg_ctl -l)
    socket_dir: str


@dataclass(frozen=True)
class CommandResult:
    rc: int
    out: str   # stdout and stderr together, as a person would read them


@runtime_checkable
class Runtime(Protocol):
    kind: str

    def prepare(self, nodes: tuple[NodeSpec, ...]) -> dict[str, NodeAddr]:
        """Create what the nodes need (directories, containers, networks) and pick their addresses."""

    def add_node(self, node: NodeSpec) -> NodeAddr:
        """Create one more node in a lab that is already prepared."""

    def paths(self, node: str) -> NodePaths: ...

    def listen_address(self, node: str) -> str: ...

    def probe_address(self, node: str, addr: NodeAddr) -> tuple[str, int] | None:
        """Where a monitor on the lab's network reaches the node's server port (`addr` is the
        node's address in the lab state) with nothing in between (no proxy that accepts for it),
        so that a closed port is refused; None when the node is not on the network."""

    def hba_networks(self) -> list[str]:
        """CIDRs that clients and peers of this lab connect from."""

    def run(self, node: str, argv: list[str], *, env: dict[str, str] | None = None,
            timeout: float = 120, check: bool = True) -> CommandResult:
        """Run a server program (initdb, pg_ctl, pg_basebackup, …) as the server user on the node."""

    def write_file(self, node: str, path: str, text: str, mode: int = 0o600) -> None: ...

    def read_file(self, node: str, path: str) -> str | None: ...

    def remove_path(self, node: str, path: str) -> None: ...

    def postmaster_running(self, node: str) -> bool: ...

    def kill(self, node: str) -> None:
        """SIGKILL the postmaster (a crash, as far as PostgreSQL can tell)."""

    def pause(self, node: str) -> None:
        """Freeze every process of the node (SIGSTOP / cgroup freezer)."""

    def resume(self, node: str) -> None: ...

    def partition(self, node: str) -> None:
        """Cut the node off the lab network: peers and clients can no longer reach it."""

    def heal_partition(self, node: str) -> None: ...

    def isolate(self, node: str) -> None:
        """Cut the node off from the other nodes only: clients on this machine still reach it
        (the old primary of a split brain that its application still talks to)."""

    def unisolate(self, node: str) -> None: ...

    def reach(self, node: str, other: "Runtime", other_addr: NodeAddr) -> tuple[str, int, list[str]]:
        """Let `node` of this lab connect to a node of another lab (a logical subscriber to its
        publisher). Returns the host and port to use, and networks this node's own clients may now
        arrive from (for its pg_hba.conf)."""

    def throttle(self, node: str, rate: str) -> None:
        """Limit the node's outgoing bandwidth (tc tbf), e.g. rate='1mbit'."""

    def unthrottle(self, node: str) -> None: ...

    def destroy(self) -> list[str]:
        """Remove everything of the lab (idempotent); return what was removed, for the user."""

    def runtime_data(self) -> dict:
        """What this runtime must remember across commands (saved in the lab state)."""
