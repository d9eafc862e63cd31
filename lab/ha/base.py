"""The failover manager interface: what drills, status and the CLI ask of whoever runs failover.

As Patroni's AbstractDCS lets its HA loop ignore which consensus store it talks to, this small ABC
lets pglab's drills ignore which manager keeps the lab available: none (you promote by hand; a
drill plays the operator with pglab's monitor), pglab (pglab's own monitor) or patroni (Patroni
agents with an etcd cluster and HAProxy). Everything returns frozen values.
"""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Callable

from lab.cluster import faults, nodes as cluster, sql
from lab.cluster.context import Ctx
from lab.errors import InvalidInput, LabError, NodeFailed, Unsupported
from lab.failover import offline, rejoin
from lab.failover.election import DEFAULT_MAX_LAG_BYTES

Say = Callable[[str], None]


@dataclass(frozen=True)
class Member:
    """One node as the manager sees it (not as PostgreSQL does)."""
    name: str
    role: str                  # leader, sync_standby, quorum_standby, replica, (missing)
    state: str | None = None   # running, streaming, stopped, starting, crashed, …
    timeline: int | None = None
    lag_bytes: int | None = None
    api: str | None = None     # where its agent answers (Patroni's REST API)
    tags: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Component:
    """A part of the HA stack that is not a PostgreSQL node: an etcd member, HAProxy."""
    kind: str
    name: str
    address: str
    state: str                 # leader, follower, up, down, …
    detail: str | None = None


@dataclass(frozen=True)
class ManagerView:
    manager: str
    leader: str | None                  # the leader the manager holds (Patroni: the leader key)
    members: tuple[Member, ...] = ()
    components: tuple[Component, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class HAEvent:
    t: float
    kind: str            # promoted, failover, switchover, …
    node: str | None
    detail: str = ""

    def line(self) -> str:
        return f"{time.strftime('%H:%M:%S', time.localtime(self.t))} {self.kind} {self.node or ''} {self.detail}".rstrip()


@dataclass(frozen=True)
class Takeover:
    """A failover the manager made after a fault, with its phases where the manager tells them."""
    old_primary: str
    new_primary: str
    t_declared: float | None      # the manager decided the primary was gone
    t_elected: float | None
    t_promoted: float | None      # the new primary accepts writes (as far as the manager knows)
    decision: Any = None          # pglab's election table, when there is one
    t_last_ok: float | None = None   # the manager's last good look at the old primary, if it says
    failover: Any = None          # lab.failover.promotion.Failover: the data-loss estimate and truth
    path: str | None = None       # pglab's monitor: which path declared the failure (fast or slow)
    reason: str = ""


@dataclass(frozen=True)
class Change:
    """A switchover or failover asked of a manager that does it itself (through its own API)."""
    kind: str
    old_primary: str | None
    new_primary: str | None
    window_s: float | None        # from the request to the new leader accepting writes
    steps: tuple[tuple[str, float], ...] = ()
    demoted: bool = False         # the old primary streams from the new one again
    timeline: int | None = None


_OPTION_NAMES = {"fence_with": "--fence", "max_lag_bytes": "--max-lag", "allow_data_loss": "--allow-data-loss"}


def refuse_pglab_options(kw: dict[str, Any], manager: str, rules: str, *, ignore: tuple[str, ...] = ()) -> None:
    """A manager that fails over by its own rules refuses pglab's failover options in one line.
    `force` and the CLI's default --max-lag are never a choice the user made."""
    if kw.get("max_lag_bytes") == DEFAULT_MAX_LAG_BYTES:
        kw = {k: v for k, v in kw.items() if k != "max_lag_bytes"}
    bad = [k for k, v in kw.items() if k not in ("force", *ignore) and v not in (None, False, "none")]
    if bad:
        opt = _OPTION_NAMES.get(bad[0], "--" + bad[0].replace("_", "-"))
        raise InvalidInput(f"{opt} does not apply to a {manager} lab", rules)


# the async failover drill's starved standbys: no new replication connection to the primary
_STARVE_HBA = ("# pglab drill: replication refused (a starved standby); removed when the node rejoins\n"
               "host replication all all reject\nlocal replication all reject\n")


def starve_by_hba(ctx: Ctx, standby: str) -> None:
    """Starve a standby whose primary_conninfo a manager owns (and puts back, or that sits in
    postgresql.auto.conf, which outranks pglab's file): the primary refuses new replication
    connections (a reject line on top of its pg_hba.conf), and the standby's WAL receiver gets
    SIGTERM, a clean exit that drops whatever its socket still held. The startup process starts
    a new receiver at once; the primary refuses it, so the receive LSN freezes."""
    primary = ctx.state.primary
    hba = f"{ctx.rt.paths(primary).data}/pg_hba.conf"
    text = ctx.rt.read_file(primary, hba) or ""
    if not text.startswith(_STARVE_HBA):
        ctx.rt.write_file(primary, hba, _STARVE_HBA + text)
        sql.query(ctx.state, primary, "SELECT pg_reload_conf()")
        time.sleep(0.1)   # the postmaster reloads on SIGHUP, asynchronously
    pid = sql.scalar(ctx.state, standby, "SELECT pid FROM pg_stat_wal_receiver")
    if pid is not None:
        ctx.rt.run(standby, ["sh", "-c", 'kill -TERM "$1"', "sh", str(pid)])
    streaming = "SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming'"
    deadline = time.monotonic() + 5
    while sql.scalar(ctx.state, standby, streaming) != 0:
        if time.monotonic() > deadline:
            raise NodeFailed(f"{standby}'s WAL receiver still streams 5 s after SIGTERM", "see `pglab status`")
        time.sleep(0.02)


def inspect_if_down(ctx: Ctx, node: str, query: str | None) -> Any:
    """`query` run on a copy of a stopped node's files (what an old primary holds, read before a
    manager rewinds them); None when there is no query, the server runs, or the copy fails."""
    if not query or ctx.rt.postmaster_running(node):
        return None
    try:
        return offline.read_copy(ctx, node, query)
    except LabError:
        return None


def unstarve(ctx: Ctx, node: str) -> None:
    """Take the drill's reject lines out of a node's pg_hba.conf (read as a file: the server may
    be down), so that it can serve replication again once it leads."""
    hba = f"{ctx.rt.paths(node).data}/pg_hba.conf"
    text = ctx.rt.read_file(node, hba)
    if text and text.startswith(_STARVE_HBA):
        ctx.rt.write_file(node, hba, text[len(_STARVE_HBA):])


class Manager(ABC):
    """One failover manager of one lab."""

    name: str = "?"
    #: True when the manager creates and starts the servers itself (Patroni); else the lab does
    bootstraps_servers: bool = False

    def __init__(self, ctx: Ctx):
        self.ctx = ctx

    # ---- life cycle --------------------------------------------------------------------
    def check_available(self) -> None:
        """Raise a one-line error (naming what to install) before anything is created."""

    def bootstrap(self, say: Say) -> None:
        """Create and start the servers (managers with bootstraps_servers only)."""
        raise NotImplementedError

    @abstractmethod
    def start(self, say: Say) -> None:
        """Start supervising a lab whose servers run."""

    @abstractmethod
    def stop(self) -> list[str]:
        """Stop supervising (the servers stay as they are); returns what was stopped."""

    # ---- looking -----------------------------------------------------------------------
    @abstractmethod
    def leader(self) -> str | None:
        """The node the manager holds as leader now (a fresh look, not the lab's record)."""

    @abstractmethod
    def view(self) -> ManagerView: ...

    def events(self) -> list[HAEvent]:
        return [HAEvent(e["t"], e["kind"].split(":", 1)[1], e.get("node"), e.get("detail", ""))
                for e in self.ctx.state.events if str(e.get("kind", "")).startswith("ha:")]

    def endpoints(self) -> dict[str, tuple[str, int]]:
        """Client routes the manager provides (e.g. HAProxy's read-write and read-only ports)."""
        return {}

    def log_files(self) -> dict[str, tuple[str, str]]:
        """Logs an agent writes itself, beyond its service's output (Lab.save_logs keeps them):
        file name -> (node, path there)."""
        return {}

    # ---- acting ------------------------------------------------------------------------
    @abstractmethod
    def switchover(self, to: str | None) -> Any: ...

    @abstractmethod
    def failover(self, to: str | None, **kw: Any) -> Any: ...

    def fault(self, node: str, kind: str, *, rate: str = "1mbit", latency: str | None = None) -> None:
        faults.inject(self.ctx, node, kind, rate=rate, latency=latency)

    def heal(self, node: str, kind: str | None = None) -> list[str]:
        return faults.heal(self.ctx, node, kind)

    # ---- drills ------------------------------------------------------------------------
    def set_mode(self, mode: str) -> str:
        """sync or async replication for a drill; returns a description."""
        raise NotImplementedError

    def starve(self, standby: str) -> None:
        """Stop `standby` from receiving WAL while it stays up, reachable and in recovery: its
        receive LSN freezes, which is what makes an asynchronous failover lose writes. pglab
        writes the standby's configuration, so it drops primary_conninfo and reloads; a manager
        that owns the configuration does it its own way."""
        cluster.write_config(self.ctx, standby, upstream=self.ctx.state.primary, extra={"primary_conninfo": ""})
        sql.query(self.ctx.state, standby, "SELECT pg_reload_conf()")

    @abstractmethod
    def arm(self, *, interval: float, timeout: float, fence: str, allow_data_loss: bool, say: Say,
            fast_path: bool = True, confirm: float = 0.3) -> None:
        """Be ready to fail over (a drill's fault follows); returns once the manager is watching.
        `fast_path`/`confirm`: pglab's monitor's fail-stop path (other managers have their own rules)."""

    @abstractmethod
    def wait_for_takeover(self, old: str, t_fault: float, timeout: float) -> Takeover:
        """Until a new primary is in place; the lab's record follows it."""

    @abstractmethod
    def disarm(self) -> None: ...

    @abstractmethod
    def recover(self, node: str, fault: str, *, inspect: str | None = None) -> Any:
        """Bring a broken old primary back as a standby; returns a rejoin.Rejoin."""

    def rejoin(self, node: str, *, inspect: str | None = None, allow_reclone: bool = True) -> Any:
        """An old primary back as a standby (`pglab rejoin`): pg_rewind, else a re-clone."""
        return rejoin.rejoin(self.ctx, node, inspect=inspect, allow_reclone=allow_reclone)

    # ---- split brain and a lost consensus store (pglab drill split-brain / quorum-loss) -------
    has_failsafe: bool = False   # Patroni's failsafe_mode: a leader stays while every member answers

    def check_failsafe(self, failsafe: bool | None) -> None:
        """Refuse --failsafe in one line where there is no such setting (it is Patroni's)."""
        if failsafe is not None and not self.has_failsafe:
            raise InvalidInput(f"--failsafe does not apply to a {self.name} lab",
                               "it is Patroni's failsafe_mode: bring a lab up with --ha patroni")

    def set_failsafe(self, on: bool) -> bool:
        """Turn the manager's failsafe mode on or off; returns the value it had."""
        self.check_failsafe(on)
        raise NotImplementedError

    @contextmanager
    def failsafe_for_drill(self, failsafe: bool | None) -> Iterator[None]:
        """The manager's failsafe mode as a drill asks (None: as it is), put back afterwards."""
        before = self.set_failsafe(failsafe) if failsafe is not None else None
        try:
            yield
        finally:
            if failsafe is not None and before != failsafe:
                self.set_failsafe(bool(before))

    def check_split_brain(self, *, fence: str, failsafe: bool | None) -> None:
        """Refuse, in one line and before any fault, a split-brain drill this manager cannot run."""
        self.check_failsafe(failsafe)
        raise Unsupported(f"the split-brain drill is not built for {self.name} labs",
                          "use a lab with --ha none, pglab or patroni")

    def take_over_isolated(self, old: str, *, fence: str, t_fault: float, timeout: float) -> Takeover:
        """The failover of a split-brain drill: `old` leads but is cut off from its peers (its
        clients still reach it); returns once another node accepts writes."""
        raise Unsupported(f"the split-brain drill is not built for {self.name} labs")

    def settle(self, node: str, timeout: float) -> None:
        """After a fault on `node` was healed: wait until the manager has done what it does by
        itself then (Patroni rejoins the node); nothing for managers that leave it to the user."""

    def consensus_members(self) -> list[str]:
        """The members of the manager's consensus store (Patroni's etcd), faultable by name; none
        for managers that have no such store."""
        return []

    # ---- faults under a supervisor (Patroni, pg_auto_failover) -------------------------------
    @property
    def _last_fault(self) -> dict[str, str]:
        """The last fault injected per node in this process (a supervisor's takeover depends on it:
        a killed postmaster alone is restarted in place)."""
        if not hasattr(self, "_faults_seen"):
            self._faults_seen: dict[str, str] = {}
        return self._faults_seen

    def _note_fault(self, node: str, kind: str) -> None:
        self._last_fault[node] = kind
        in_force = self.ctx.state.faults.setdefault(node, [])
        if kind not in in_force and kind != "kill-postgres":   # the supervisor undoes that one by itself
            in_force.append(kind)
        self.ctx.event(f"fault:{kind}", node)

    def record(self, kind: str, node: str | None, detail: str = "") -> None:
        self.ctx.event(f"ha:{kind}", node, detail=detail)
