"""The managers pglab has always had: `none` (you promote; a drill plays the operator with pglab's
monitor, in-process) and `pglab` (pglab's monitor in the background, started with the lab)."""
from __future__ import annotations

from typing import Any

from lab.cluster.status import Role, snapshot
from lab.model import state as lab_state
from lab.failover import drill, promotion
from lab.failover.election import DEFAULT_MAX_LAG_BYTES
from lab.failover.monitor import Monitor, MonitorConfig, MAX_DURATION, background_pid, start_background, stop_background
from lab.failover.rejoin import rejoin
from lab.errors import InvalidInput
from lab.ha.base import Manager, ManagerView, Member, Say, Takeover
from lab.wait import wait_until


class ManualManager(Manager):
    """No supervisor: failover is `pglab failover` (or a drill's in-process monitor)."""

    name = "none"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.monitor: Monitor | None = None

    def start(self, say: Say) -> None:
        pass

    def stop(self) -> list[str]:
        return []

    def leader(self) -> str | None:
        return snapshot(self.ctx).primary

    def view(self) -> ManagerView:
        """The lab's record (the node it last made primary, which the monitor keeps up to date)
        over PostgreSQL's facts: a record that lags behind them shows as a disagreement."""
        recorded = lab_state.load(self.ctx.name).primary
        st = snapshot(self.ctx)
        members = tuple(Member(n.name, "leader" if n.name == recorded else
                               (n.sync_state + "_standby" if n.sync_state in ("sync", "quorum") else "replica")
                               if n.role == Role.STANDBY else "(missing)", n.role.value, n.timeline,
                               n.replay_lag_bytes) for n in st.nodes)
        return ManagerView(self.name, recorded, members)

    def switchover(self, to: str | None) -> Any:
        return promotion.switchover(self.ctx, to)

    def failover(self, to: str | None, **kw: Any) -> Any:
        if kw.get("max_lag_bytes") is None:
            kw["max_lag_bytes"] = DEFAULT_MAX_LAG_BYTES
        return promotion.failover(self.ctx, to, **kw)

    # ---- drills: pglab's monitor in this process ---------------------------------------------
    def set_mode(self, mode: str) -> str:
        return drill.set_mode(self.ctx, mode).render() or "async"

    def arm(self, *, interval: float, timeout: float, fence: str, allow_data_loss: bool, say: Say,
            fast_path: bool = True, confirm: float = 0.3) -> None:
        cfg = MonitorConfig(interval=interval, timeout=timeout, fence=fence, allow_data_loss=allow_data_loss,
                            duration=timeout + 120, max_failovers=1, fast_path=fast_path, confirm=confirm)
        self.monitor = Monitor(self.ctx, cfg, say=say).start_thread()
        m = self.monitor
        wait_until(lambda: any("health:" in ln and " ok " in ln for ln in m.lines), timeout=10,
                   what="the monitor's first good health check")

    def wait_for_takeover(self, old: str, t_fault: float, timeout: float) -> Takeover:
        m = self.monitor
        assert m is not None, "arm() first"
        wait_until(lambda: m.failovers or None, timeout=timeout, what="the monitor to fail over", interval=0.05)
        rec = m.failovers[0]
        self.record("promoted", rec.new_primary, f"by pglab's monitor after {old} failed")
        return Takeover(old, rec.new_primary, rec.t_declared, rec.t_elected, rec.t_promoted, rec.decision,
                        rec.t_last_ok, rec.failover, rec.path, rec.reason)

    def disarm(self) -> None:
        if self.monitor is not None:
            self.monitor.stop()
            self.monitor = None

    # ---- split brain: the user (played by the drill) fails over with pglab's promotion ---------
    def check_split_brain(self, *, fence: str, failsafe: bool | None) -> None:
        self.check_failsafe(failsafe)
        if fence not in promotion.FENCES:
            raise InvalidInput(f"unknown fencing {fence!r}", f"use one of: {', '.join(promotion.FENCES)}")

    def take_over_isolated(self, old: str, *, fence: str, t_fault: float, timeout: float) -> Takeover:
        # the primary answers its clients, so only a forced failover replaces it
        fo = promotion.failover(self.ctx, None, allow_data_loss=True, fence_with=fence, force=True)
        p = fo.promotion
        return Takeover(old, self.ctx.state.primary, None, None, p.t_promoted if p else None, fo.decision,
                        failover=fo, reason="pglab failover --force (the drill plays the operator)")

    def recover(self, node: str, fault: str, *, inspect: str | None = None) -> Any:
        # heal what the fault left (the old primary stays down: it must come back only as a standby)
        if fault == "partition":
            self.ctx.rt.heal_partition(node)
        self.ctx.rt.resume(node)
        self.ctx.state.faults[node] = []
        self.ctx.save()
        return rejoin(self.ctx, node, inspect=inspect)


class PglabManager(ManualManager):
    """pglab's monitor as a background process, started with the lab and stopped with it."""

    name = "pglab"

    def start(self, say: Say) -> None:
        if background_pid(self.ctx.name) is None:
            pid = start_background(self.ctx, MonitorConfig(duration=MAX_DURATION))
            say(f"pglab's failover monitor runs in the background (pid {pid})")

    def stop(self) -> list[str]:
        pid = stop_background(self.ctx.name)
        return [f"monitor (pid {pid})"] if pid else []

    def view(self) -> ManagerView:
        v = super().view()
        running = background_pid(self.ctx.name) is not None
        return ManagerView(v.manager, v.leader, v.members, error=None if running else "the background monitor is not running")

    def arm(self, **kw: Any) -> None:
        # the drill's monitor replaces the background one while it runs
        self._was_running = background_pid(self.ctx.name) is not None
        stop_background(self.ctx.name)
        super().arm(**kw)

    def disarm(self) -> None:
        super().disarm()
        if getattr(self, "_was_running", False) and background_pid(self.ctx.name) is None:
            start_background(self.ctx, MonitorConfig(duration=MAX_DURATION))
        self._was_running = False

