"""A lab that exists: its saved state and its runtime, opened by name."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from lab import runtime as runtimes
from lab.model import state as lab_state
from lab.runtime.base import Runtime
from lab.model.state import LabState
from lab.model.topology import Topology, topology_from_dict


@dataclass
class Ctx:
    state: LabState
    rt: Runtime
    log: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, name: str) -> "Ctx":
        st = lab_state.load(name)
        return cls(st, runtimes.make(st.runtime, st.name, st.dir, st.runtime_data))

    @cached_property
    def topology(self) -> Topology:
        return topology_from_dict(self.state.topology, source=f"lab {self.state.name}")

    @property
    def name(self) -> str:
        return self.state.name

    @property
    def primary(self) -> str:
        return self.state.primary

    @property
    def standbys(self) -> list[str]:
        return self.state.standbys

    def save(self) -> None:
        self.state.runtime_data = self.rt.runtime_data()
        self.state.save()

    def event(self, kind: str, node: str | None = None, **detail: Any) -> None:
        """Record an event (fault, failover, …) on the lab's timeline; lag plots mark them."""
        self.state.events.append({"t": time.time(), "kind": kind, "node": node, **detail})
        self.save()
