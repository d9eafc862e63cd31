"""What the dashboard shows besides status: lag histories from the lag recorder, the optional
ledger writer, the in-process failover monitor, and what is still broken at exit."""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Callable

from lab.api import Lab
from lab.cluster.status import LabStatus, Role
from lab.errors import LabError
from lab.model import state as lab_state

HISTORY = 120          # samples kept per standby: 12 s at the recorder's 10 Hz


class LagFeed:
    """The existing lag recorder (one prepared query on the primary per tick, ~10 Hz) feeding
    per-standby histories. Restarted when the primary changes, since it samples the standbys it
    was started with: the cost stays one connection and one query per tick."""

    def __init__(self, lab: Lab, interval: float = 0.1):
        self.lab, self.interval = lab, interval
        self.lock = threading.Lock()
        self.bytes: dict[str, deque] = {}
        self.secs: dict[str, deque] = {}
        self.latest: dict[str, Any] = {}       # node -> its last LagSample
        self.rec = None
        self.primary: str | None = None

    def _on_sample(self, batch) -> None:
        with self.lock:
            for s in batch:
                self.latest[s.node] = s
                # an unreadable value is left out of the history, never drawn as 0
                if s.replay_lag_bytes is not None:
                    self.bytes.setdefault(s.node, deque(maxlen=HISTORY)).append(s.replay_lag_bytes)
                if s.replay_lag_s is not None:
                    self.secs.setdefault(s.node, deque(maxlen=HISTORY)).append(s.replay_lag_s)

    def follow(self, primary: str | None) -> None:
        """(Re)start the recorder for the current primary."""
        if primary == self.primary and self.rec is not None:
            return
        self.stop()
        self.primary = primary
        if primary is None:
            return
        self.rec = self.lab.lag_recorder(interval=self.interval)
        self.rec.on_sample = self._on_sample
        with self.lock:
            self.latest.pop(primary, None)
        self.rec.start()

    def history(self, node: str) -> tuple[list[float], list[float], Any]:
        with self.lock:
            return list(self.bytes.get(node, ())), list(self.secs.get(node, ())), self.latest.get(node)

    def stop(self) -> None:
        if self.rec is not None:
            self.rec.stop()
            self.rec = None


class Writer:
    """The built-in ledger writer, toggled by a key, so lag moves on an idle lab."""

    def __init__(self, lab: Lab, clients: int = 2):
        self.lab, self.clients = lab, clients
        self.writer = None
        self._mark: tuple[float, int] = (time.monotonic(), 0)
        self.rate: float | None = None

    @property
    def running(self) -> bool:
        return self.writer is not None

    def toggle(self) -> bool:
        if self.writer is None:
            self.writer = self.lab.ledger(clients=self.clients, duration=3600.0)
            self.writer.start()
            self._mark, self.rate = (time.monotonic(), 0), None
            return True
        self.stop()
        return False

    def counts(self) -> tuple[int, int]:
        """(acknowledged, failed or unknown) so far."""
        ops = self.writer.ops() if self.writer else []
        ok = sum(1 for o in ops if o.outcome in ("ok", "ok_unreplicated"))
        return ok, len(ops) - ok

    def tick(self) -> None:
        """Acknowledged writes per second since the last tick."""
        if not self.writer:
            return
        ok, _ = self.counts()
        t, n = self._mark
        now = time.monotonic()
        if now - t >= 0.5:
            self.rate, self._mark = (ok - n) / (now - t), (now, ok)

    def stop(self) -> None:
        if self.writer is not None:
            self.writer.stop()
            self.writer.wait(timeout=10)
            self.writer = None


class MonitorSwitch:
    """The in-process failover monitor, on and off; its log lines go to `say`."""

    def __init__(self, lab: Lab, say: Callable[[str], None], timeout: float = 2.0):
        self.lab, self.say, self.timeout = lab, say, timeout
        self.monitor = None

    @property
    def running(self) -> bool:
        return self.monitor is not None

    def toggle(self) -> bool:
        if self.monitor is None:
            self.monitor = self.lab.monitor(interval=0.5, timeout=self.timeout, fence="kill", duration=24 * 3600.0,
                                            say=self.say).start_thread()
            return True
        self.stop()
        return False

    def stop(self) -> None:
        if self.monitor is not None:
            self.monitor.stop()
            self.monitor = None


def still_broken(lab: Lab, st: LabStatus | None) -> list[str]:
    """What the learner leaves behind: faults in force, nodes down or unreachable, paused replay,
    several primaries; each with the command that repairs it."""
    out = []
    try:
        in_force = lab_state.load(lab.name).faults     # also those made by other processes
    except LabError:
        in_force = lab.ctx.state.faults
    for node, faults in sorted(in_force.items()):
        if faults:
            out.append(f"{node}: {', '.join(faults)} in force  (pglab heal {node} --name {lab.name})")
    if st is None:
        return out + ["the lab's status could not be read"]
    if len(st.primaries) > 1:
        out.append(f"{len(st.primaries)} primaries: {', '.join(st.primaries)}  (pglab rejoin NODE --name {lab.name})")
    for n in st.nodes:
        if n.role in (Role.DOWN, Role.UNREACHABLE) and not in_force.get(n.name):
            out.append(f"{n.name}: {n.role.value}  (pglab heal {n.name} --name {lab.name}, or pglab rejoin {n.name})")
        if n.replay_paused:
            out.append(f"{n.name}: replay paused  (pglab psql {n.name} --name {lab.name} -c 'SELECT pg_wal_replay_resume()')")
        if n.unrecoverable:
            out.append(f"{n.name}: cannot catch up  (pglab node reclone {n.name} --name {lab.name})")
    return out
