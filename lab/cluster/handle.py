"""`Cluster`: a lab's replicated cluster as a handle — bring it up, connect, look, break, wait.

`lab.Lab` builds on it with workloads, failover and drills. The drills below the `Lab` facade
(split brain, reading from followers, shipping methods) use this handle, so that no area package
reaches up to the facade.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

import psycopg

from lab.cluster import bootstrap, faults, server, sql, status as lab_status
from lab.cluster.context import Ctx
from lab.errors import InvalidInput
from lab.model.conninfo import lab_dsn
from lab.model.names import default_name
from lab.model.topology import Topology, default_topology, load_topology
from lab.wait import wait_until

Say = Callable[[str], None]
C = TypeVar("C", bound="Cluster")


def default_pg() -> int | None:
    """$PGLAB_PG: the PostgreSQL major for labs that name none (e.g. to run a test suite on 15)."""
    raw = os.environ.get("PGLAB_PG", "").strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise InvalidInput(f"PGLAB_PG={raw!r} is not a major version", "set it to a number, e.g. PGLAB_PG=15, or unset it")
    return int(raw)


def resolve_topology(topology: Topology | str | os.PathLike | None, *, standbys: int = 2,
                     sync: str | None = None, netns: bool = False, pg: int | None = None) -> Topology:
    """A Topology from what a caller gave: a Topology, a file, or nothing (the default shape).
    The PostgreSQL major: `pg`, else the topology's version, else $PGLAB_PG, else the runtime's
    default (the embedded 18 locally)."""
    if isinstance(topology, (str, os.PathLike)):
        topology = load_topology(topology)
    if topology is None:
        topology = default_topology(standbys, sync)
    elif sync is not None:
        raise InvalidInput("--sync and a topology file both set synchronous_standby_names",
                           "set it in the file's [replication] section")
    if pg is None and topology.pg_version is None:
        pg = default_pg()
    if pg is not None:
        if topology.pg_version not in (None, pg):
            raise InvalidInput(f"--pg {pg} and the topology's version = {topology.pg_version} disagree",
                               "drop one of them")
        topology = topology.with_changes(pg_version=pg)
    return topology.with_changes(netns=True) if netns else topology


@dataclass(frozen=True)
class Node:
    """One node of a lab: `lab.node("s1").connect()`, `.fault("kill")`, `.heal()`, `.logs()`."""
    cluster: "Cluster"
    name: str

    def dsn(self, dbname: str = "postgres") -> str:
        return self.cluster.dsn(self.name, dbname=dbname)

    def connect(self, *, autocommit: bool = True, connect_timeout: int = 3) -> psycopg.Connection:
        return self.cluster.connect(self.name, autocommit=autocommit, connect_timeout=connect_timeout)

    def fault(self, kind: str, *, rate: str = "1mbit", latency: str | None = None) -> None:
        self.cluster.fault(self.name, kind, rate=rate, latency=latency)

    def heal(self, kind: str | None = None) -> list[str]:
        return self.cluster.heal(self.name, kind)

    def logs(self, lines: int = 50) -> str:
        return self.cluster.logs(self.name, lines)

    def status(self) -> lab_status.NodeStatus:
        return self.cluster.status().node(self.name)


class Cluster:
    """A lab that exists. `up()` creates one and owns it: leaving a `with` block tears it down.
    `open()` attaches to one that exists without owning it."""

    def __init__(self, ctx: Ctx, *, owned: bool = False):
        self.ctx = ctx
        self.owned = owned

    # ---- life cycle ------------------------------------------------------------------------
    @classmethod
    def up(cls: type[C], topology: Topology | str | os.PathLike | None = None, *, name: str | None = None,
           runtime: str = "auto", standbys: int = 2, sync: str | None = None, netns: bool = False,
           pg: int | None = None, say: Say | None = None) -> C:
        """Bring a lab up. `topology` is a Topology, a path to a topology file, or None for the
        default (p1 primary, s1 synchronous, the rest asynchronous). `pg`: the PostgreSQL major
        (see `lab.api.versions()`)."""
        topo = resolve_topology(topology, standbys=standbys, sync=sync, netns=netns, pg=pg)
        ctx = bootstrap.up(topo, name or default_name(), runtime, say or (lambda _: None))
        return cls(ctx, owned=True)

    @classmethod
    def open(cls: type[C], name: str | None = None) -> C:
        return cls(Ctx.open(name or default_name()), owned=False)

    def down(self) -> list[str]:
        """Remove everything of the lab (idempotent): what was removed, for people."""
        return bootstrap.down(self.name)

    def __enter__(self: C) -> C:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.owned:
            self.down()

    # ---- what it is ------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.ctx.name

    @property
    def runtime(self) -> str:
        return self.ctx.state.runtime

    @property
    def primary(self) -> str:
        """The node the lab last made primary (`status()` asks the servers)."""
        return self.ctx.state.primary

    @property
    def standbys(self) -> list[str]:
        return self.ctx.standbys

    @property
    def nodes(self) -> list[str]:
        return list(self.ctx.state.nodes)

    @property
    def topology(self) -> Topology:
        return self.ctx.topology

    @property
    def state_dir(self) -> Path:
        return self.ctx.state.dir

    @property
    def events(self) -> list[dict]:
        """The lab's timeline (faults, failovers, …) as recorded: lag plots mark them."""
        return list(self.ctx.state.events)

    def mark(self, text: str) -> None:
        """Put a mark on the lab's timeline (lag plots and reports show it)."""
        self.ctx.event("mark", None, text=text)

    def check_node(self, name: str) -> str:
        if name not in self.ctx.state.nodes:
            raise InvalidInput(f"no node {name!r} in lab {self.name}", f"nodes are: {', '.join(self.nodes)}")
        return name

    def node(self, name: str) -> Node:
        return Node(self, self.check_node(name))

    # ---- connecting ------------------------------------------------------------------------
    def dsn(self, node: str | None = None, *, role: str | None = None, dbname: str = "postgres") -> str:
        """A libpq connection string. With a node: that node. With role='primary' (or 'standby',
        'any'): every node, and libpq picks whichever matches when it connects."""
        return lab_dsn(self.ctx.state, node, role=role, dbname=dbname)

    def connect(self, node: str | None = None, *, role: str | None = None, autocommit: bool = True,
                connect_timeout: int = 3) -> psycopg.Connection:
        dsn = self.dsn(node) if node else self.dsn(role=role or "primary")
        return psycopg.connect(dsn, autocommit=autocommit, connect_timeout=connect_timeout)

    # ---- looking ---------------------------------------------------------------------------
    def status(self) -> lab_status.LabStatus:
        return lab_status.snapshot(self.ctx)

    def lag(self) -> dict[str, lab_status.NodeStatus]:
        """Every node but the primary, also those that do not answer (their upstream's view)."""
        return {n.name: n for n in self.status().nodes if n.role != lab_status.Role.PRIMARY}

    def client_program(self, name: str) -> str | None:
        """psql or pgbench that runs here against this lab's nodes (the servers' version if possible)."""
        return self.ctx.rt.client_program(name)

    def logs(self, node: str, lines: int = 50) -> str:
        """The last lines of a node's server log."""
        return server.log_tail(self.ctx.rt, self.check_node(node), lines)

    def save_logs(self, dest: Path | str, extra: dict[str, tuple[str, str]] | None = None) -> list[Path]:
        """Copy the lab's logs into `dest` to read after the lab is gone: each node's server log,
        each service's (a manager's agents, its consensus store, a proxy), `extra` (file name ->
        (node, path)) and the lab's events. A log that cannot be read (a node's container gone)
        is left out, not faked."""
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        rt, svc = self.ctx.rt, self.ctx.rt.services()
        where: dict[str, tuple[str | None, str]] = {f"{n}.server.log": (n, rt.paths(n).log) for n in self.ctx.state.nodes}
        where.update(extra or {})
        for name in svc.names():
            loc = svc.log_path(name)
            if loc:
                where[f"{name}.log"] = loc
        written = []
        for fname, (node, path) in where.items():
            try:
                text = rt.read_file(node or "", path)
            except Exception:  # noqa: BLE001 - a place that is gone or frozen: its log is missing
                text = None
            if text is not None:
                (dest / fname).write_text(text)
                written.append(dest / fname)
        events = dest / "events.json"
        events.write_text(json.dumps(self.ctx.state.events, indent=1, default=str) + "\n")
        return [*written, events]

    def wait_for(self, condition: Callable[[Any], Any], *, timeout: float = 30, what: str = "a condition",
                 interval: float = 0.1) -> Any:
        return wait_until(lambda: condition(self), timeout=timeout, what=what, interval=interval)

    def wait_caught_up(self, timeout: float = 30) -> None:
        """Until every streaming standby has replayed everything the primary has written.
        One query on the primary (pg_stat_replication), so a test can afford it between steps."""
        expected = len(self.standbys)

        def caught_up() -> bool:
            row = sql.query(self.ctx.state, self.primary,
                            "SELECT count(*), coalesce(bool_and(coalesce(replay_lsn >= pg_current_wal_lsn(), false)), "
                            "true) FROM pg_stat_replication WHERE state = 'streaming'")[0]
            return row[0] >= expected and row[1]
        wait_until(caught_up, timeout=timeout, what="standbys to replay everything", interval=0.01)

    # ---- breaking --------------------------------------------------------------------------
    def fault(self, node: str, kind: str, *, rate: str = "1mbit", latency: str | None = None) -> None:
        """Inject a fault: stop, kill, pause, partition, isolate, throttle (`rate`) or delay
        (`latency`, e.g. '20ms'; Unsupported where the kernel has no netem). See lab.cluster.faults."""
        faults.inject(self.ctx, self.check_node(node), kind, rate=rate, latency=latency)

    def heal(self, node: str, kind: str | None = None) -> list[str]:
        """Undo one fault (or all of them) on a node; a stopped or killed server is started again."""
        return faults.heal(self.ctx, self.check_node(node), kind)

    def restart(self, node: str) -> None:
        """`pg_ctl restart -m fast` on a node: its port is closed for a moment (not a fault: nothing to heal)."""
        server.restart(self.ctx.rt, self.check_node(node))
        self.ctx.event("restart", node)
