"""The runtime interface: everything the cluster logic needs from "a machine that runs a node".

The cluster logic (bootstrap, clone, promote, rewind, status) only talks to a
Runtime; it never asks which one it is. A runtime runs commands as the
server's unprivileged user on a node, reads and writes files there, and
provides the fault primitives (kill, pause, partition, throttle).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Protocol, runtime_checkable

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


@dataclass(frozen=True)
class ServerOffer:
    """A PostgreSQL this machine can run (`pglab versions`)."""
    version: str      # "18.6" (local: from `postgres --version`; Docker: the image's label or tag)
    runtime: str      # "local" or "docker"
    source: str       # "embedded", "system", "image"
    where: str        # a bindir or an image name
    default: bool = False


@runtime_checkable
class Services(Protocol):
    """Long-running lab processes other than the PostgreSQL servers (a failover manager's agents,
    its consensus store, a proxy), started and broken by the runtime that runs the nodes.

    A service runs "on" a node (its network namespace, when nodes have one) or on its own lab host
    (e.g. an etcd member: another namespace on the lab network). Each is named; its pid, command
    and log are kept in the lab directory, so `down` finds it."""

    def host(self, name: str) -> str:
        """Create (once) a lab host that runs no PostgreSQL; return its address."""

    def address(self, where: str) -> str:
        """The address of a node or lab host, as the lab's other places reach it."""

    def bind_address(self, where: str) -> str:
        """The address a service at a node or lab host listens on there."""

    def reach(self, where: str, port: int) -> tuple[str, int] | None:
        """Where this machine (pglab itself) reaches a service's port at a node or lab host now;
        None when the place is cut off."""

    def front(self, name: str, ports: tuple[int, ...]) -> tuple[str | None, str, list[tuple[int, int]]]:
        """A place for a proxy that this machine's clients reach on 127.0.0.1: `where` to start it
        (None: this machine), the address it binds, and per wanted port (the port it listens on
        there, the 127.0.0.1 port clients use)."""

    def program(self, name: str) -> str | None:
        """A service program (patroni, etcd, haproxy) as the runtime's places provide it (an image's),
        or None: this machine's own installation."""

    def put(self, path: str, text: str) -> None:
        """Write a file in a workdir (mode 0600, the server user's) that the services read."""

    def port(self, where: str, preferred: int) -> int:
        """A port for a service at a node or lab host: `preferred` when the place has its own address,
        else a free one on 127.0.0.1 (also for where="": this machine)."""

    def start(self, name: str, argv: list[str], *, where: str | None, server_user: bool = True,
              env: dict[str, str] | None = None, log: str, cwd: str | None = None) -> int:
        """Start argv in the background (as the server user, or root) on node/host `where`
        (None: this machine's own network); return its pid."""

    def workdir(self, name: str) -> str:
        """A directory (made once) that a service run as the server user may write: data, sockets, logs."""

    def node_dir(self, name: str) -> str:
        """A directory at one path on every node, each node's own as far as its server can tell: what
        a setting copied from node to node may name (pg_basebackup and pg_rewind copy
        postgresql.auto.conf), e.g. the socket directory. Where the nodes share this machine's file
        system it is one shared directory (their ports keep their sockets apart); where each node
        has its own (a container) it is a directory in each. The caller makes it on each node
        (`mkdir -p` as the server user; a no-op where it is shared)."""

    def pid(self, name: str) -> int | None:
        """The service's pid if it runs (a frozen one counts), else None."""

    def signal(self, name: str, sig: str, *, group: bool = False) -> bool:
        """Send kill, term, stop (freeze) or cont to the service; False if it does not run. `group`:
        to every process the service started too (a supervisor's children and the server it runs)."""

    def names(self) -> list[str]: ...

    def log_path(self, name: str) -> tuple[str | None, str] | None:
        """Where a service's log is: (the node or lab host it runs on, the path there), or None."""

    def partition(self, where: str, on: bool) -> None:
        """Cut a lab host off the lab network (or reconnect it)."""

    def destroy(self) -> list[str]:
        """Kill every service (idempotent)."""


@runtime_checkable
class Runtime(Protocol):
    kind: str

    def prepare(self, nodes: tuple[NodeSpec, ...], template: str | None = None) -> dict[str, NodeAddr]:
        """Create what the nodes need (directories, containers, networks) and pick their addresses.
        `template`: the recipe the lab's data will be copied from (data_from_template), if any; a
        runtime may start those copies meanwhile."""

    def add_node(self, node: NodeSpec) -> NodeAddr:
        """Create one more node in a lab that is already prepared."""

    def data_from_template(self, nodes: list[str], recipe: str, build: Callable[[str], None]) -> bool:
        """Make each node's data directory a file copy of a cached, stopped, initialised cluster
        (a cold clone: same system identifier, a valid base backup). The cache is keyed by the
        server build and `recipe` (a description of how build makes it); on first use the runtime
        calls build(nodes[0]) to initialise that node and keeps a copy. Returns False, doing
        nothing, when this runtime keeps no templates: the caller then runs initdb and clones."""

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

    def write_files(self, node: str, files: Mapping[str, str], mode: int = 0o600) -> None:
        """Several files at once: one round trip where the runtime pays one per file (Docker)."""

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

    def host_data_dir(self, node: str) -> str | None:
        """The node's data directory as a path on this machine, or None where it is not one
        (a container's volume)."""

    def client_program(self, name: str) -> str | None:
        """A client program (psql, pgbench) that runs on this machine and talks to the nodes:
        the servers' own version where this runtime has it; None when there is none."""

    def delay(self, node: str, latency: str) -> None:
        """Make everything the node sends wait `latency` (tc netem), e.g. latency='20ms'. Where the
        kernel has no netem, raise Unsupported saying so (never pretend)."""

    def undelay(self, node: str) -> None: ...

    def destroy(self) -> list[str]:
        """Remove everything of the lab (idempotent); return what was removed, for the user."""

    def runtime_data(self) -> dict:
        """What this runtime must remember across commands (saved in the lab state)."""

    def services(self) -> Services:
        """Where a failover manager's processes run (raises Unsupported where the runtime cannot)."""
