"""Running a scenario against a fresh lab: steps in order, lag sampled throughout, expectations
checked at the end, the lab always torn down (unless keep), also on failure and Ctrl-C.

Exit status of a run: 0 every expectation held, 1 a step or an expectation failed,
2 the scenario is invalid or the lab could not start.
"""
from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import psycopg

from lab.api import Lab
from lab.errors import LabError
from lab.cluster.status import Role
from lab.scenario.actions import RunCtx, run_step, stop_all_workloads
from lab.scenario.spec import Scenario, Step


@dataclass
class StepResult:
    name: str
    action: str
    description: str
    started: float
    ended: float
    outcome: str            # ok, failed
    detail: str = ""


@dataclass
class ExpectResult:
    text: str
    passed: bool
    expected: str
    actual: Any


@dataclass
class RunResult:
    scenario: str
    path: str
    description: str
    runtime: str
    lab: str
    started: float
    ended: float = 0.0
    exit_code: int = 0
    error: str = ""
    steps: list[StepResult] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    expectations: list[ExpectResult] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    topology: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.exit_code == 0


class _Sampler(threading.Thread):
    """Samples every standby's lag (and the write count) a few times a second while the steps run."""

    def __init__(self, run: RunCtx, out: list[dict[str, Any]], interval: float = 0.25):
        super().__init__(daemon=True)
        self.rctx, self.out, self.interval = run, out, interval
        self.stopped = threading.Event()

    def run(self) -> None:  # type: ignore[override]
        while not self.stopped.wait(self.interval):
            try:
                st = self.rctx.lab.status()
            except Exception:  # noqa: BLE001 - sampling must never break the run
                continue
            sample: dict[str, Any] = {"t": st.taken_at, "primary": st.primary,
                                      "writes_ok": self.rctx.writes_ok()}
            for n in st.nodes:
                # what each node was at that moment, so that a chart shows a down node as a gap
                sample[f"{n.name}.state"] = n.role.value
                if n.role != Role.PRIMARY and (n.replay_lag_bytes is not None or n.replay_lag_s is not None):
                    # a standby that does not answer still has its upstream's figures: measured
                    sample[f"{n.name}.replay_lag_bytes"] = n.replay_lag_bytes
                    sample[f"{n.name}.replay_lag_s"] = n.replay_lag_s
                if n.slot_retained_bytes is not None:
                    # WAL the primary keeps for this standby (also while the standby is away)
                    sample[f"{n.name}.slot_retained_bytes"] = n.slot_retained_bytes
            self.out.append(sample)
            self.rctx.last_sample = sample


def run_scenario(sc: Scenario, *, runtime: str | None = None, keep: bool = False, timeout_multiplier: float = 1.0,
                 on_step: Callable[[str, RunCtx], None] | None = None, learner: Any = None,
                 name: str | None = None) -> RunResult:
    kind = runtime or sc.runtime or "auto"
    name = name or f"sc-{uuid.uuid4().hex[:6]}"
    res = RunResult(sc.name, sc.path, sc.description, kind, name, time.time(), topology=sc.topology.to_dict())
    try:
        lab = Lab.up(sc.topology, name=name, runtime=kind)
    except LabError as e:
        res.exit_code, res.error, res.ended = 2, f"the lab could not start: {e.line()}", time.time()
        return res
    res.runtime = lab.runtime
    run = RunCtx(lab, res.figures, timeout_multiplier)
    run.learner = learner
    sampler = _Sampler(run, res.samples)
    sampler.start()
    try:
        for step in sc.steps:
            if on_step:
                on_step(step.name, run)
            ok = _run_one(run, step, res)
            if not ok:
                res.exit_code = 1
                break
        stop_all_workloads(run)
        _final_figures(run, res)
        for e in sc.expect:
            passed, actual = e.check(res.figures)
            res.expectations.append(ExpectResult(e.text, passed, f"{e.op} {e.value!r}",
                                                 actual if e.figure in res.figures else "not measured"))
            if not passed:
                res.exit_code = 1
    finally:
        sampler.stopped.set()
        sampler.join(timeout=2)
        try:
            stop_all_workloads(run)
        finally:
            res.events = lab.events
            res.ended = time.time()
            if not keep:
                lab.down()
    return res


def _run_one(run: RunCtx, step: Step, res: RunResult) -> bool:
    t0 = time.time()
    try:
        detail = run_step(run, step) or ""
        res.steps.append(StepResult(step.name, step.action, step.describe(), t0, time.time(), "ok", str(detail)))
        return True
    except LabError as e:
        res.steps.append(StepResult(step.name, step.action, step.describe(), t0, time.time(), "failed", e.line()))
    except AssertionError as e:
        res.steps.append(StepResult(step.name, step.action, step.describe(), t0, time.time(), "failed", str(e)))
    except psycopg.Error as e:
        # a server that does not answer (cut off, down) or refuses: the step failed, the run goes on
        # to its clean-up and report like any other failure
        why = (str(e).strip().splitlines() or [type(e).__name__])[0]
        res.steps.append(StepResult(step.name, step.action, step.describe(), t0, time.time(), "failed",
                                    f"{type(e).__name__}: {why}"))
    return False


def _final_figures(run: RunCtx, res: RunResult) -> None:
    try:
        st = run.lab.status()
    except Exception:  # noqa: BLE001
        return
    prims = st.primaries
    res.figures["primary"] = prims[0] if len(prims) == 1 else ",".join(prims)
    res.figures["primaries"] = len(prims)
    lags_s = [s.get(k) for s in res.samples for k in s if k.endswith(".replay_lag_s")]
    lags_b = [s.get(k) for s in res.samples for k in s if k.endswith(".replay_lag_bytes")]
    kept = [s.get(k) for s in res.samples for k in s if k.endswith(".slot_retained_bytes")]
    # a maximum over no readable sample is unknown, not 0: the figure is then left out, and an
    # expectation on it says "not measured"
    for figure, values in (("max_replay_lag_s", lags_s), ("max_replay_lag_bytes", lags_b),
                           ("max_slot_retained_bytes", kept)):
        read = [x for x in values if x is not None]
        if read:
            res.figures[figure] = max(read)
    tl = [n.timeline for n in st.nodes if n.role == Role.PRIMARY and n.timeline]
    if tl:
        res.figures["timeline"] = max(tl)
