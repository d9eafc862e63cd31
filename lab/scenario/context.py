"""What the steps of one scenario run share (the lab, figures measured so far, running workloads)."""
from __future__ import annotations

import dataclasses
import threading
from typing import Any

from lab.api import Lab
from lab.scenario.spec import Step

DEFAULT_WAIT = 30.0


class RunCtx:
    """What the steps of one run share: the lab, the figures measured so far, running workloads."""

    def __init__(self, lab: Lab, figures: dict[str, Any], timeout_multiplier: float = 1.0):
        self.lab = lab
        self.figures = figures
        self.mult = timeout_multiplier
        self.workloads: dict[str, Any] = {}
        self.lock = threading.Lock()
        self.last_sample: dict[str, Any] = {}   # the runner's latest lag sample, for the live view

    def timeout(self, step: Step, default: float = DEFAULT_WAIT) -> float:
        return (step.timeout or default) * self.mult

    def write_errors(self) -> int:
        return sum(w.error_count() for w in list(self.workloads.values()) if hasattr(w, "error_count"))

    def writes_ok(self) -> int:
        return sum(w.ok_count() for w in list(self.workloads.values()) if hasattr(w, "ok_count"))

    def add_figures(self, obj: Any, prefix: str = "") -> None:
        """Scalar fields of a result (a dataclass or dict) become figures expectations can use."""
        d = dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else dict(obj or {})
        with self.lock:
            for k, v in d.items():
                if isinstance(v, (int, float, str, bool)) or v is None:
                    self.figures[k] = v
                    if prefix:
                        self.figures[f"{prefix}.{k}"] = v
