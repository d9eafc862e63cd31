"""The Python API: `Lab`, a running replicated cluster you can inspect and break.

    from lab import Lab
    with Lab.up(standbys=2, runtime="local") as lab:
        with lab.connect() as conn:          # the primary
            conn.execute("CREATE TABLE t (id int)")
        print(lab.status().node("s1").sync_state)   # 'sync'

The CLI calls these same methods.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

import psycopg

from lab.cluster import bootstrap, faults, status as lab_status
from lab.model import state as lab_state
from lab.model.conninfo import client_dsn, multi_host_dsn
from lab.cluster.context import Ctx
from lab.errors import InvalidInput
from lab.model.topology import Topology, default_topology, load_topology
from lab.runtime import find_leftovers
from lab.wait import wait_until

DEFAULT_NAME = "pglab"


def default_name() -> str:
    return os.environ.get("PGLAB_NAME", DEFAULT_NAME)


class Lab:
    def __init__(self, ctx: Ctx):
        self.ctx = ctx

    # ---- life cycle ------------------------------------------------------------
    @classmethod
    def up(cls, topology: Topology | str | None = None, *, name: str | None = None, runtime: str = "auto",
           standbys: int = 2, sync: str | None = None, netns: bool = False,
           say: Callable[[str], None] | None = None) -> "Lab":
        """Bring a lab up. `topology` is a Topology, a path to a topology file, or None for the
        default (p1 primary, s1 synchronous, the rest asynchronous)."""
        if isinstance(topology, (str, os.PathLike)):
            topology = load_topology(topology)
        if topology is None:
            topology = default_topology(standbys, sync)
        elif sync is not None:
            raise InvalidInput("--sync and a topology file both set synchronous_standby_names",
                               "set it in the file's [replication] section")
        if netns:
            topology = topology.with_changes(netns=True)
        ctx = bootstrap.up(topology, name or default_name(), runtime, say or (lambda _: None))
        return cls(ctx)

    @classmethod
    def open(cls, name: str | None = None) -> "Lab":
        return cls(Ctx.open(name or default_name()))

    def down(self) -> list[str]:
        return bootstrap.down(self.name)

    def __enter__(self) -> "Lab":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.down()

    # ---- what it is ------------------------------------------------------------
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

    def node(self, name: str) -> str:
        if name not in self.ctx.state.nodes:
            raise InvalidInput(f"no node {name!r} in lab {self.name}", f"nodes are: {', '.join(self.nodes)}")
        return name

    # ---- connecting ------------------------------------------------------------
    def dsn(self, node: str | None = None, *, role: str | None = None, dbname: str = "postgres") -> str:
        """A libpq connection string. With a node: that node. With role='primary' (or 'standby'):
        every node, and libpq picks whichever is primary (standby) when it connects."""
        passfile = str(self.ctx.state.pgpass_path)
        if node and role:
            raise InvalidInput("give a node or --role, not both", "e.g. `pglab dsn s1` or `pglab dsn --role primary`")
        if node:
            a = self.ctx.state.nodes[self.node(node)]
            return client_dsn(a.host, a.port, passfile, dbname=dbname)
        role = role or "primary"
        attrs = {"primary": "read-write", "standby": "standby", "any": "any"}.get(role)
        if attrs is None:
            raise InvalidInput(f"unknown role {role!r}", "use primary, standby or any")
        order = [self.primary, *self.standbys] if role != "standby" else [*self.standbys, self.primary]
        addrs = [(self.ctx.state.nodes[n].host, self.ctx.state.nodes[n].port) for n in order]
        return multi_host_dsn(addrs, passfile, attrs, dbname=dbname)

    def connect(self, node: str | None = None, *, role: str | None = None, autocommit: bool = True,
                **kw: Any) -> psycopg.Connection:
        dsn = self.dsn(node, role=role) if node else self.dsn(role=role or "primary")
        return psycopg.connect(dsn, autocommit=autocommit, **kw)

    # ---- looking ---------------------------------------------------------------
    def status(self) -> lab_status.LabStatus:
        return lab_status.snapshot(self.ctx)

    def lag(self) -> dict[str, lab_status.NodeStatus]:
        return {n.name: n for n in self.status().nodes if n.role == lab_status.Role.STANDBY}

    def wait_for(self, condition: Callable[["Lab"], Any], *, timeout: float = 30, what: str = "a condition",
                 interval: float = 0.1) -> Any:
        return wait_until(lambda: condition(self), timeout=timeout, what=what, interval=interval)

    def wait_caught_up(self, timeout: float = 30) -> None:
        """Until every streaming standby has replayed everything the primary has written.
        One query on the primary (pg_stat_replication), so a test can afford it between steps."""
        from lab.cluster import sql
        expected = len(self.standbys)

        def caught_up() -> bool:
            row = sql.query(self.ctx.state, self.primary,
                            "SELECT count(*), coalesce(bool_and(coalesce(replay_lsn >= pg_current_wal_lsn(), false)), true) "
                            "FROM pg_stat_replication WHERE state = 'streaming'")[0]
            return row[0] >= expected and row[1]
        wait_until(caught_up, timeout=timeout, what="standbys to replay everything", interval=0.01)

    # ---- breaking ----------------------------------------------------------------
    def fault(self, node: str, kind: str, *, rate: str = "1mbit") -> None:
        """Inject a fault: stop, kill, pause, partition or throttle (see lab.cluster.faults)."""
        faults.inject(self.ctx, self.node(node), kind, rate=rate)

    def restart(self, node: str) -> None:
        """`pg_ctl restart -m fast` on a node: its port is closed for a moment (not a fault: nothing to heal)."""
        from lab.cluster import server  # lazy: keeps `import lab` light, as the other methods do
        server.restart(self.ctx.rt, self.node(node))
        self.ctx.event("restart", node)

    def heal(self, node: str, kind: str | None = None) -> list[str]:
        """Undo one fault (or all of them) on a node; a stopped or killed server is started again."""
        return faults.heal(self.ctx, self.node(node), kind)

    # ---- workloads and lag ----------------------------------------------------------
    # (issue 4: lab/lagrec.py, lab/workload/{pgbench,reader}.py, lab/commitbench.py, lab/follower.py)
    def record_lag(self, *, duration: float, interval: float = 0.1, on_sample: Callable | None = None):
        """Sample every standby's lag for `duration` seconds (blocking): a lagrec.LagRecording."""
        from lab.replication import lagrec
        return lagrec.record(self.ctx, interval=interval, duration=duration, on_sample=on_sample)

    def lag_recorder(self, *, interval: float = 0.1, duration: float | None = None):
        """A background lag recorder: `with lab.lag_recorder() as rec: ...; rec.result()`."""
        from lab.replication import lagrec
        return lagrec.LagRecorder(self.ctx, interval=interval, duration=duration)

    def set_sync(self, spec: str):
        """Change synchronous_standby_names live (e.g. 'ANY 1 (s1, s2)', 'none'); the lab's saved
        topology follows, so later reconfigurations keep it. Returns the SyncSpec."""
        from lab.replication import follower
        return follower.set_sync(self.ctx, spec)

    def reclone(self, node: str) -> None:
        """Rebuild a standby from the current primary (fresh base backup, fresh slot)."""
        from lab.cluster import nodes as cluster
        cluster.reclone(self.ctx, self.node(node))

    def pgbench(self, **kw: Any):
        """Run the real pgbench against the primary (see lab.workload.pgbench.run)."""
        from lab.workload import pgbench
        return pgbench.run(self.ctx, **kw)

    def read_workload(self, **kw: Any):
        """Readers on the primary/standbys that record what they saw and how stale it was."""
        from lab.workload import reader
        return reader.run(self.ctx, **kw)

    def bench_commit(self, **kw: Any):
        """The price of synchronous commit (see lab.replication.commitbench.run)."""
        from lab.replication import commitbench
        return commitbench.run(self.ctx, **kw)

    def drill_catchup(self, node: str, **kw: Any):
        from lab.replication import follower
        return follower.catchup(self.ctx, self.node(node), **kw)

    def drill_noslot(self, node: str, **kw: Any):
        from lab.replication import follower
        return follower.noslot(self.ctx, self.node(node), **kw)

    def drill_sync_failure(self, **kw: Any):
        from lab.replication import follower
        return follower.sync_failure(self.ctx, **kw)
    # ---- end of workloads and lag ----------------------------------------------------

    # ---- reading from followers ----------------------------------------------------
    # (issue 7: lab/routing.py, lab/anomalies.py, lab/consistency.py)
    def router(self, followers: list[str] | None = None, **kw: Any):
        """A read router over this lab (leader / any / sticky / token-bounded follower): routing.Router."""
        from lab.reads.routing import Router
        return Router.from_lab(self, followers, **kw)

    def set_apply_delay(self, node: str, delay: str | None) -> None:
        """recovery_min_apply_delay on a standby, live (None or '0' removes it)."""
        from lab.reads import consistency
        consistency.set_apply_delay(self, self.node(node), delay)

    def pause_replay(self, node: str) -> None:
        from lab.reads import consistency
        consistency.pause_replay(self, self.node(node))

    def resume_replay(self, node: str) -> None:
        from lab.reads import consistency
        consistency.resume_replay(self, self.node(node))
    # ---- end of reading from followers ----------------------------------------------

    # ---- leader failure ----------------------------------------------------------------
    # (issue 5: lab/election.py, promotion.py, reconfigure.py, rejoin.py, monitor.py, drill.py,
    # workload/ledger.py, checker.py)
    def promote(self, node: str):
        """pg_promote() a standby, then reconfigure the rest around it: promotion.Promotion."""
        from lab.failover import promotion
        return promotion.promote(self.ctx, self.node(node))

    def switchover(self, to: str | None = None):
        """Planned change of leader with zero lost writes: promotion.Switchover."""
        from lab.failover import promotion
        return promotion.switchover(self.ctx, self.node(to) if to else None)

    def failover(self, to: str | None = None, *, allow_data_loss: bool = False, max_lag_bytes: int | None = None,
                 fence: str = "none", force: bool = False):
        """Unplanned: elect the most advanced standby and promote it: promotion.Failover
        (raises promotion.FailoverRefused with the decision table when no candidate is acceptable)."""
        from lab.failover import promotion
        from lab.failover.election import DEFAULT_MAX_LAG_BYTES
        return promotion.failover(self.ctx, self.node(to) if to else None, allow_data_loss=allow_data_loss,
                                  max_lag_bytes=DEFAULT_MAX_LAG_BYTES if max_lag_bytes is None else max_lag_bytes,
                                  fence_with=fence, force=force)

    def rejoin(self, node: str, *, inspect: str | None = None, allow_reclone: bool = True):
        """An old primary back as a standby of the current primary (pg_rewind, else re-clone): rejoin.Rejoin."""
        from lab.failover import rejoin
        return rejoin.rejoin(self.ctx, self.node(node), inspect=inspect, allow_reclone=allow_reclone)

    def monitor(self, *, interval: float = 0.5, timeout: float = 2.0, fence: str = "kill", duration: float = 60.0,
                allow_data_loss: bool = False, fast_path: bool = True, confirm: float = 0.3,
                say: Callable[[str], None] | None = None):
        """An in-process failover monitor (not started): call .run() or .start_thread()/.stop().
        fast_path: declare a certainly dead primary (port refused, no standby streaming, for
        `confirm` seconds) without waiting for the timeout."""
        from lab.failover.monitor import Monitor, MonitorConfig
        return Monitor(self.ctx, MonitorConfig(interval=interval, timeout=timeout, fence=fence, duration=duration,
                                               allow_data_loss=allow_data_loss, fast_path=fast_path, confirm=confirm),
                       say=say)

    def ledger(self, *, clients: int = 4, duration: float | None = 10.0, count: int | None = None,
               path: str | None = None, op_timeout: float = 3.0):
        """A ledger writer through the routed DSN (not started): .start(), .stop(), .wait() -> summary."""
        import time as _time
        from lab.failover.drill import routed_dsn
        from lab.workload.ledger import LedgerWriter
        nodes = {f"{a.host}:{a.port}": n for n, a in self.ctx.state.nodes.items()}
        path = path or str(self.ctx.state.dir / "ledger" / f"{int(_time.time() * 1000)}.jsonl")
        return LedgerWriter(lambda: routed_dsn(self.ctx), path, clients=clients, duration=duration, count=count,
                            op_timeout=op_timeout, nodes=nodes)

    def drill_failover(self, *, repeat: int = 1, **kw: Any):
        """`pglab drill failover`: drill.DrillReport over `repeat` drills."""
        from lab.failover import drill
        return drill.repeat(self.ctx, repeat, **kw)

    def chaos(self, *, down: bool = False, say: Callable[[str], None] | None = None, loss_report=None, **kw: Any):
        """`pglab chaos`: a seeded fault soak under the monitor; chaos.ChaosResult. kw: the fields of
        chaos.ChaosConfig (seed, duration, faults, mode, timeout, ...). down=True brings the lab down
        afterwards and adds the invariant that nothing of it is left on this machine."""
        from lab.failover import chaos  # lazy: keeps `import lab` light, as the other methods do
        r = chaos.run_chaos(self.ctx, chaos.ChaosConfig(**kw), say=say, loss_report=loss_report)
        if down:
            self.down()
            left = tuple(find_leftovers(self.name))
            r = dataclasses.replace(r, leaks=left, invariants={**r.invariants, "nothing of the lab left after down": not left})
        return r

    def drill_restart(self, **kw: Any):
        """`pglab drill restart`: restart the primary under the monitor (fast path on); drill.RestartDrill."""
        from lab.failover import drill  # lazy: keeps `import lab` light, as the other methods do
        return drill.drill_restart(self.ctx, **kw)
    # ---- end of leader failure ---------------------------------------------------------


def list_labs() -> list[str]:
    return lab_state.list_labs()
