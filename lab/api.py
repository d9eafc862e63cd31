"""The Python API: `Lab`, a running replicated cluster you can inspect, load and break.

    from lab import Lab
    with Lab.up(standbys=2, runtime="local") as lab:
        with lab.connect() as conn:          # the primary
            conn.execute("CREATE TABLE t (id int)")
        print(lab.status().node("s1").sync_state)   # 'sync'

`Lab.up()` owns the lab it makes (leaving the `with` block removes it); `Lab.open(name)` attaches
to a lab that exists and leaves it alone. The CLI calls these same methods.
"""
from __future__ import annotations

import dataclasses
import os
import threading
import time
from pathlib import Path
from typing import Callable

from lab.cluster import bootstrap, nodes as cluster
from lab.cluster.handle import Cluster, Node, default_name
from lab import runtime as runtimes
from lab.runtime import ServerOffer
from lab.failover import drill, monitor as monitor_mod, promotion, quorumloss, rejoin as rejoin_mod, splitbrain
from lab.failover.election import DEFAULT_MAX_LAG_BYTES
from lab.model import state as lab_state
from lab.model.conninfo import role_dsn
from lab.model.syncspec import SyncSpec
from lab.model.topology import SYNC_COMMIT_LEVELS
from lab.reads import consistency
from lab.reads.routing import Router
from lab.replication import commitbench, follower, lagrec
from lab.workload import pgbench as pgbench_mod, reader
from lab.workload.ledger import LedgerWriter
from lab.cluster import status as lab_status
from lab.cluster.context import Ctx
from lab.cluster.handle import Say, resolve_topology
from lab.ha import Manager, ManagerView, bootstraps, check_available, fit, manager
from lab.ha.compare import disagreements
from lab.model.conninfo import client_dsn
from lab.model.topology import Topology, check_ha
from lab.failover import chaos as chaos_mod
from lab.runtime import find_leftovers

__all__ = ["Lab", "Node", "default_name", "down", "list_labs", "versions"]


def versions() -> list[ServerOffer]:
    """Every PostgreSQL this machine can run (local installations, Docker images), default first."""
    return runtimes.versions()


class Lab(Cluster):
    """A lab: `Cluster` (life cycle, connecting, status, faults) plus workloads, lag over time,
    the price of commit, follower drills, reading from followers and leader failure."""

    # ---- life cycle, with a failover manager -----------------------------------------------------
    @classmethod
    def up(cls, topology: Topology | str | os.PathLike | None = None, *, name: str | None = None,
           runtime: str = "auto", standbys: int = 2, sync: str | None = None, netns: bool = False,
           pg: int | None = None, ha: str | None = None, ha_profile: str | None = None,
           say: Say | None = None) -> "Lab":
        """Bring a lab up. `topology` is a Topology, a path to a topology file, or None for the
        default (p1 primary, s1 synchronous, the rest asynchronous). `ha` picks the failover manager
        (none, pglab, patroni, pg_auto_failover, repmgr; the short form of the topology's [ha] manager), `ha_profile` its
        timing profile (default, fast). `pg`: the PostgreSQL major (see `lab.api.versions()`)."""
        topology = resolve_topology(topology, standbys=standbys, sync=sync, netns=netns, pg=pg)
        if ha is not None or ha_profile is not None:
            spec = topology.ha.with_manager(ha or topology.ha.manager, ha_profile)
            topology = topology.with_changes(ha=check_ha(spec, [s.name for s in topology.standbys], "--ha"))
        say = say or (lambda _: None)
        topology = fit(topology)
        runtime = check_available(topology, runtime)

        def init(ctx: Ctx, say: Say) -> None:
            manager(ctx).bootstrap(say)
        ctx = bootstrap.up(topology, name or default_name(), runtime, say,
                           init=init if bootstraps(topology.ha.manager) else None)
        try:   # until it is returned, the lab is this call's to remove (an error, Ctrl-C)
            lab = cls(ctx, owned=True)
            if not manager(ctx).bootstraps_servers:
                lab.manager.start(say)
        except BaseException:
            bootstrap.down(ctx.name)
            raise
        return lab

    @property
    def manager(self) -> Manager:
        """The lab's failover manager (lab.ha): none, pglab, patroni, pg_auto_failover or repmgr."""
        return manager(self.ctx)

    def save_logs(self, dest: Path | str, extra: dict[str, tuple[str, str]] | None = None) -> list[Path]:
        """As Cluster.save_logs, with the logs the manager's agents write themselves (repmgr.log)."""
        return super().save_logs(dest, {**self.manager.log_files(), **(extra or {})})

    def ha_view(self) -> ManagerView:
        """The manager's own view (Patroni: members, roles, lag, timelines, etcd, HAProxy)."""
        return self.manager.view()

    def disagreements(self, st: lab_status.LabStatus | None = None,
                      view: ManagerView | None = None) -> dict[str, str]:
        """Where the manager's view and PostgreSQL's disagree (node -> what)."""
        return disagreements(st or self.status(), view or self.ha_view())

    def dsn(self, node: str | None = None, *, role: str | None = None, dbname: str = "postgres") -> str:
        """As Cluster.dsn; with a manager that has a proxy (HAProxy), a role's DSN is the proxy's port
        for that role (`multi_host_dsn` gives the libpq form)."""
        if not node and self.topology.ha.manager != "none":
            routed = self.manager.endpoints().get(role or "primary")
            if routed:   # the manager's proxy routes to the node in that role
                return client_dsn(routed[0], routed[1], str(self.ctx.state.pgpass_path), dbname=dbname)
        return super().dsn(node, role=role, dbname=dbname)

    def multi_host_dsn(self, role: str = "primary", *, dbname: str = "postgres") -> str:
        """Every node in one DSN; libpq picks one in the role when it connects (no proxy)."""
        return super().dsn(role=role, dbname=dbname)

    # ---- breaking, through the manager (with a supervisor, a fault means what it means to it) ----
    def fault(self, node: str, kind: str, *, rate: str = "1mbit", latency: str | None = None) -> None:
        """Inject a fault: stop, kill, kill-postgres, pause, partition, isolate, throttle or delay (see
        lab.cluster.faults; with a supervisor, lab.ha.patroni says what each means)."""
        self.manager.fault(node, kind, rate=rate, latency=latency)

    def heal(self, node: str, kind: str | None = None) -> list[str]:
        """Undo one fault (or all of them) on a node; a stopped or killed server is started again."""
        return self.manager.heal(node, kind)

    # ---- lag over time -------------------------------------------------------------------------
    def record_lag(self, *, duration: float, interval: float = 0.1,
                   on_sample: Callable[[list[lagrec.LagSample]], None] | None = None) -> lagrec.LagRecording:
        """Sample every standby's lag for `duration` seconds (blocking)."""
        return lagrec.record(self.ctx, interval=interval, duration=duration, on_sample=on_sample)

    def lag_recorder(self, *, interval: float = 0.1, duration: float | None = None) -> lagrec.LagRecorder:
        """A background lag recorder: `with lab.lag_recorder() as rec: ...; rec.result()`."""
        return lagrec.LagRecorder(self.ctx, interval=interval, duration=duration)

    # ---- synchronous replication and followers ---------------------------------------------------
    def set_sync(self, spec: str | SyncSpec) -> SyncSpec:
        """Change synchronous_standby_names live (e.g. 'ANY 1 (s1, s2)', 'none'). It becomes the
        lab's synchronous policy: later reconfigurations (failover, re-clone) keep it."""
        return follower.set_sync(self.ctx, spec)

    def reclone(self, node: str) -> None:
        """Rebuild a standby from the current primary (fresh base backup, fresh slot)."""
        cluster.reclone(self.ctx, self.check_node(node))

    def drill_catchup(self, node: str, *, fault: str = "stop", outage: float = 3.0,
                      threshold_bytes: int = 256 * 1024, clients: int = 2, timeout: float = 60,
                      rate: str = "1mbit") -> follower.CatchupResult:
        """Take a standby away while writes go on, bring it back: it resumes from its slot."""
        return follower.catchup(self.ctx, self.check_node(node), fault=fault, outage=outage,
                                threshold_bytes=threshold_bytes, clients=clients, timeout=timeout, rate=rate)

    def drill_noslot(self, node: str, *, reclone: bool = True, max_segments: int = 64,
                     timeout: float = 30) -> follower.NoSlotResult:
        """Without a slot and retained WAL, a standby that falls behind cannot catch up."""
        return follower.noslot(self.ctx, self.check_node(node), reclone=reclone, max_segments=max_segments,
                               timeout=timeout)

    def drill_sync_failure(self, *, remedy: str = "none", node: str | None = None, other: str | None = None,
                           outage: float = 3.0, clients: int = 2, switch_after: float = 1.0,
                           fault: str = "stop") -> follower.SyncFailureResult:
        """A synchronous standby fails: commits stall; a remedy (any, first2, async) lifts them."""
        return follower.sync_failure(self.ctx, remedy=remedy, node=node, other=other, outage=outage,
                                     clients=clients, switch_after=switch_after, fault=fault)

    # ---- workloads --------------------------------------------------------------------------------
    def pgbench(self, *, clients: int = 4, duration: float | None = 10, transactions: int | None = None,
                builtin: str = "tpcb-like", script: str | None = None, insert: bool = False, do_init: bool = True,
                scale: int = 1, node: str | None = None, jobs: int | None = None, log_latencies: bool = True,
                on_progress: Callable[[pgbench_mod.Progress], None] | None = None,
                extra_args: list[str] | None = None, stop: threading.Event | None = None, keep_tx: bool = False,
                options: str | None = None) -> pgbench_mod.PgbenchResult:
        """Run the real pgbench against the primary (or `node`); see lab.workload.pgbench.run."""
        return pgbench_mod.run(self.ctx, clients=clients, duration=duration, transactions=transactions,
                               builtin=builtin, script=script, insert=insert, do_init=do_init, scale=scale,
                               node=node, jobs=jobs, log_latencies=log_latencies, on_progress=on_progress,
                               extra_args=extra_args, stop=stop, keep_tx=keep_tx, options=options)

    def prepare_insert_table(self) -> None:
        """The table pgbench's INSERT script and the readers use."""
        pgbench_mod.prepare_insert_table(self.ctx)

    def read_workload(self, *, target: str = "standby", clients: int = 2, duration: float | None = 5.0,
                      count: int | None = None, acked: Callable[[], int | None] | None = None,
                      stop: threading.Event | None = None,
                      on_read: Callable[[str, int, float], None] | None = None) -> reader.ReadResult:
        """Readers on the primary/standbys that record what they saw and how stale it was."""
        return reader.run(self.ctx, target=target, clients=clients, duration=duration, count=count, acked=acked,
                          stop=stop, on_read=on_read)

    def ledger(self, *, clients: int = 4, duration: float | None = 10.0, count: int | None = None,
               path: str | None = None, op_timeout: float = 3.0) -> LedgerWriter:
        """A ledger writer through the routed DSN (not started): .start(), .stop(), .wait() -> summary."""
        nodes = {f"{a.host}:{a.port}": n for n, a in self.ctx.state.nodes.items()}
        path = path or str(self.ctx.state.dir / "ledger" / f"{int(time.time() * 1000)}.jsonl")
        return LedgerWriter(lambda: role_dsn(self.ctx.state, "primary"), path, clients=clients, duration=duration,
                            count=count, op_timeout=op_timeout, nodes=nodes)

    def bench_commit(self, *, clients: int = 4, duration: float = 2.0,
                     levels: tuple[str, ...] = SYNC_COMMIT_LEVELS,
                     specs: tuple[str, ...] = commitbench.DEFAULT_SPECS, visibility: bool = True,
                     on_cell: Callable[[commitbench.CommitCell], None] | None = None) -> commitbench.CommitBench:
        """The price of synchronous commit: synchronous_commit × synchronous_standby_names."""
        return commitbench.run(self.ctx, clients=clients, duration=duration, levels=levels, specs=specs,
                               visibility=visibility, on_cell=on_cell)

    # ---- reading from followers --------------------------------------------------------------------
    def router(self, followers: list[str] | None = None, *, token_timeout: float = 2.0, window_s: float = 1.0,
               down_for_s: float = 1.0, connect_timeout: int = 2, seed: int | None = None,
               monotonic_floor: bool = True) -> Router:
        """A read router over this lab (leader / any / sticky / token-bounded follower)."""
        return Router.from_lab(self, followers, token_timeout=token_timeout, window_s=window_s,
                               down_for_s=down_for_s, connect_timeout=connect_timeout, seed=seed,
                               monotonic_floor=monotonic_floor)

    def set_apply_delay(self, node: str, delay: str | None) -> None:
        """recovery_min_apply_delay on a standby, live (None or '0' removes it)."""
        consistency.set_apply_delay(self, self.check_node(node), delay)

    def pause_replay(self, node: str) -> None:
        consistency.pause_replay(self, self.check_node(node))

    def resume_replay(self, node: str) -> None:
        consistency.resume_replay(self, self.check_node(node))

    # ---- leader failure ------------------------------------------------------------------------------
    def promote(self, node: str) -> promotion.Promotion:
        """pg_promote() a standby, then reconfigure the rest around it."""
        return promotion.promote(self.ctx, self.check_node(node))

    def switchover(self, to: str | None = None) -> promotion.Switchover:
        """Planned change of leader with zero lost writes (through the lab's manager)."""
        return self.manager.switchover(self.check_node(to) if to else None)

    def failover(self, to: str | None = None, *, allow_data_loss: bool = False, max_lag_bytes: int | None = None,
                 fence: str = "none", force: bool = False) -> promotion.Failover:
        """Unplanned: elect the most advanced standby and promote it (raises lab.errors.FailoverRefused
        with the decision table when no candidate is acceptable). The data-loss guard compares the
        winner with the old primary's last position that the lab sampled (status, monitor, lag
        recorder) and refuses beyond `max_lag_bytes` (1 MB) unless `allow_data_loss`; the result holds
        that estimate and the truth read afterwards from the old primary's WAL (`loss_estimate_bytes`,
        `loss_true_bytes`, `loss_true_commits`). With Patroni, its REST API does it."""
        return self.manager.failover(self.check_node(to) if to else None, allow_data_loss=allow_data_loss,
                                     max_lag_bytes=DEFAULT_MAX_LAG_BYTES if max_lag_bytes is None else max_lag_bytes,
                                     fence_with=fence, force=force)

    def rejoin(self, node: str, *, inspect: str | None = None, allow_reclone: bool = True) -> rejoin_mod.Rejoin:
        """An old primary back as a standby of the current primary (pg_rewind, else re-clone; with
        Patroni, pglab waits for Patroni to do it)."""
        return self.manager.rejoin(self.check_node(node), inspect=inspect, allow_reclone=allow_reclone)

    def monitor(self, *, interval: float = 0.5, timeout: float = 2.0, fence: str = "kill", duration: float = 60.0,
                max_lag_bytes: int = DEFAULT_MAX_LAG_BYTES, allow_data_loss: bool = False,
                fast_path: bool = True, confirm: float = 0.3,
                say: Callable[[str], None] | None = None, log_path: str | None = None,
                reload_state: bool = False) -> monitor_mod.Monitor:
        """An in-process failover monitor (not started): call .run() or .start_thread()/.stop().
        fast_path: declare a certainly dead primary (port refused, no standby streaming, for
        `confirm` seconds) without waiting for the timeout."""
        cfg = monitor_mod.MonitorConfig(interval=interval, timeout=timeout, fence=fence, duration=duration,
                                        max_lag_bytes=max_lag_bytes, allow_data_loss=allow_data_loss,
                                        fast_path=fast_path, confirm=confirm)
        return monitor_mod.Monitor(self.ctx, cfg, say=say, log_path=log_path, reload_state=reload_state)

    def start_monitor(self, *, interval: float = 0.5, timeout: float = 2.0, fence: str = "kill",
                      duration: float = 3600.0, max_lag_bytes: int = DEFAULT_MAX_LAG_BYTES,
                      allow_data_loss: bool = False, fast_path: bool = True, confirm: float = 0.3) -> int:
        """Start the monitor as a detached process (`down` stops it too); returns its pid."""
        cfg = monitor_mod.MonitorConfig(interval=interval, timeout=timeout, fence=fence, duration=duration,
                                        max_lag_bytes=max_lag_bytes, allow_data_loss=allow_data_loss,
                                        fast_path=fast_path, confirm=confirm)
        return monitor_mod.start_background(self.ctx, cfg)

    def stop_monitor(self) -> int | None:
        """Stop the background monitor; its pid, or None if none ran."""
        return monitor_mod.stop_background(self.name)

    def monitor_pid(self) -> int | None:
        return monitor_mod.background_pid(self.name)

    def monitor_log(self, lines: int = 20) -> list[str]:
        return monitor_mod.log_tail(self.name, lines)

    def drill_failover(self, *, repeat: int = 1, mode: str = "sync", fault: str = "kill",
                       lag_standby: str | None = None, clients: int = 4, interval: float = 0.5, timeout: float = 2.0,
                       fence: str = "kill", settle: float = 1.0, fast_path: bool = True, confirm: float = 0.3,
                       say: Callable[[str], None] | None = None) -> drill.DrillReport:
        """`pglab drill failover`: write, break the primary, let the manager fail over, check."""
        return drill.repeat(self.ctx, repeat, mode=mode, fault=fault, lag_standby=lag_standby, clients=clients,
                            interval=interval, timeout=timeout, fence=fence, settle=settle, fast_path=fast_path,
                            confirm=confirm, say=say)

    def drill_split_brain(self, *, fence: str = "none", writes: int = 3, timeout: float = 2.0,
                          failsafe: bool | None = None) -> splitbrain.SplitBrainResult:
        """Cut the primary off from its peers (its clients still reach it), let the manager fail
        over, write to both. `failsafe`: Patroni's failsafe_mode for the drill (Patroni labs only)."""
        return splitbrain.drill(self.ctx, fence=fence, writes=writes, timeout=timeout, failsafe=failsafe)

    def drill_quorum_loss(self, *, failsafe: bool | None = None, hold: float = 40.0, clients: int = 2,
                          say: Callable[[str], None] | None = None) -> quorumloss.QuorumLoss:
        """Kill a majority of the manager's consensus store (Patroni's etcd) for `hold` s under a
        ledger, then heal: did the primary stop taking writes, for how long, was anything lost."""
        return quorumloss.drill(self.ctx, failsafe=failsafe, hold=hold, clients=clients, say=say)

    def drill_restart(self, *, restarts: int = 3, interval: float = 0.5, timeout: float = 2.0, confirm: float = 0.3,
                      clients: int = 2, say: Callable[[str], None] | None = None) -> drill.RestartDrill:
        """`pglab drill restart`: restart the primary under the monitor (fast path on): no failover."""
        return drill.drill_restart(self.ctx, restarts=restarts, interval=interval, timeout=timeout, confirm=confirm,
                                   clients=clients, say=say)

    def chaos(self, *, seed: int = 1, duration: float = 60.0, faults: tuple[str, ...] | None = None,
              mode: str = "sync", clients: int = 2, timeout: float = 2.0, fast_path: bool = True,
              hold: tuple[float, float] = (1.0, 5.0), down: bool = False,
              say: Callable[[str], None] | None = None) -> "chaos_mod.ChaosResult":
        """`pglab chaos`: a seeded fault soak under the monitor (same seed, same schedule); checked by
        invariants at the end. down=True brings the lab down afterwards and adds the invariant that
        nothing of it is left on this machine."""
        cfg = chaos_mod.ChaosConfig(seed=seed, duration=duration, faults=faults or chaos_mod.FAULTS, mode=mode,
                                    clients=clients, timeout=timeout, fast_path=fast_path, hold=hold)
        r = chaos_mod.run_chaos(self.ctx, cfg, say=say, loss_report=_loss_report)
        if down:
            self.down()
            left = tuple(find_leftovers(self.name))
            r = dataclasses.replace(r, leaks=left,
                                    invariants={**r.invariants, "nothing of the lab left after down": not left})
        return r


def list_labs() -> list[str]:
    return lab_state.list_labs()


def down(name: str | None = None) -> list[str]:
    """Remove everything of a lab by name, whether or not its state can be read (idempotent)."""
    return bootstrap.down(name or default_name())


def _loss_report(ctx: object, record: object) -> str | None:
    """The chaos soak's line per failover: the data-loss estimate beside the truth, when the
    monitor's record carries the failover (lab.failover.promotion.Failover)."""
    fo = getattr(record, "failover", None)
    return getattr(fo, "loss_line", None) if fo is not None else None
