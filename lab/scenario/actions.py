"""What each scenario step does, through the `Lab` API (the same calls the CLI makes)."""
from __future__ import annotations

import dataclasses
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from lab.errors import InvalidInput, LabError, WaitTimeout
from lab.scenario import benchstep, drillsteps, narration
from lab.scenario.conditions import parse_condition, parse_value
from lab.scenario.spec import Step
from lab.scenario.context import RunCtx
from lab.scenario.workloads import check_workload, monitor, start_workload, stop_workload, stopped

def run_step(run: RunCtx, step: Step) -> str | None:
    fn = _ACTIONS.get(step.action)
    if fn is None:  # pragma: no cover - spec validation prevents it
        raise InvalidInput(f"unknown action {step.action!r}")
    return fn(run, step)


def _node_arg(run: RunCtx, step: Step) -> str:
    return run.lab.check_node(str(step.arg))


def _fault(run: RunCtx, step: Step) -> str:
    node = step.options["node"]
    run.lab.fault(node, str(step.arg), rate=str(step.options.get("rate", "1mbit")))
    return f"{step.arg} {node}"


def _restart(run: RunCtx, step: Step) -> str:
    node = _node_arg(run, step)
    run.lab.restart(node)
    return f"restarted {node}"


def _heal(run: RunCtx, step: Step) -> str:
    done = run.lab.heal(_node_arg(run, step), step.options.get("kind"))
    return ", ".join(done)


def _wait(run: RunCtx, step: Step) -> str:
    cond = parse_condition(str(step.arg), run.lab.nodes)
    t0 = time.monotonic()
    try:
        run.lab.wait_for(lambda lab: cond.holds(lab.status()), timeout=run.timeout(step), what=cond.text, interval=0.1)
    except WaitTimeout:
        raise WaitTimeout(f"'{cond.text}' did not hold within {run.timeout(step):.0f}s") from None
    return f"held after {time.monotonic() - t0:.2f}s"


def _sleep(run: RunCtx, step: Step) -> None:
    time.sleep(float(step.arg))


def _sql(run: RunCtx, step: Step) -> str:
    """SQL on a node. With a step timeout the statement is cancelled when it runs out — also a
    COMMIT waiting for a synchronous standby, which ignores statement_timeout: PostgreSQL then
    keeps the row (committed locally) and only warns; such statements are counted in the figure
    `sql_unreplicated`."""
    node = step.options.get("node")
    warnings: list[str] = []
    with (run.lab.connect(node) if node else run.lab.connect()) as conn:
        conn.add_notice_handler(lambda d: warnings.append(d.message_primary or ""))
        timer = threading.Timer(run.timeout(step), conn.cancel_safe) if step.timeout else None
        if timer:
            timer.start()
        try:
            cur = conn.execute(str(step.arg))
            rows = cur.fetchall() if cur.description else []
        finally:
            if timer:
                timer.cancel()
    unreplicated = any("synchronous replication" in w for w in warnings)
    if unreplicated:
        with run.lock:
            run.figures["sql_unreplicated"] = run.figures.get("sql_unreplicated", 0) + 1
    got = rows[0][0] if rows and len(rows[0]) == 1 and len(rows) == 1 else rows
    if "figure" in step.options:
        with run.lock:
            run.figures[str(step.options["figure"])] = got if not isinstance(got, list) else len(got)
    if "expect" in step.options:
        want = step.options["expect"]
        want_v = parse_value(want) if isinstance(want, str) else want
        if got != want_v and str(got) != str(want):
            raise AssertionError(f"sql returned {got!r}, expected {want!r}")
    return repr(got) + ("; WARNING: " + warnings[-1] if unreplicated else "")


def _mark(run: RunCtx, step: Step) -> str:
    run.lab.mark(str(step.arg))
    return str(step.arg)


def _parallel(run: RunCtx, step: Step) -> str:
    with ThreadPoolExecutor(max_workers=len(step.children)) as ex:
        futures = [ex.submit(run_step, run, c) for c in step.children]
        results = [f.result() for f in futures]  # re-raises the first failure
    return "; ".join(str(r) for r in results if r)


def _api(method: str):
    """Steps that are one call of a Lab method (promote, switchover, failover, rejoin, …)."""
    def call(run: RunCtx, step: Step) -> str:
        fn = getattr(run.lab, method, None)
        if fn is None:
            raise LabError(f"this version of pglab has no {method}", "upgrade pglab")
        if step.action in ("promote", "rejoin", "reclone"):
            result = fn(_node_arg(run, step))
        elif step.action == "switchover":
            result = fn(step.arg or None)
        elif step.action == "failover":
            result = fn(**{k: v for k, v in step.options.items()})
        else:
            result = fn(step.arg)
        if result is not None:
            run.add_figures(result, step.action)
        return _short(result)
    return call


def _short(result: Any) -> str:
    if result is None:
        return ""
    if dataclasses.is_dataclass(result):
        d = dataclasses.asdict(result)
        return ", ".join(f"{k}={v}" for k, v in d.items() if isinstance(v, (int, float, str, bool)))[:300]
    return str(result)[:300]


def _workload(run: RunCtx, step: Step) -> str:
    wid = str(step.options.get("id") or step.arg)
    if wid in run.workloads:
        raise InvalidInput(f"a workload with id {wid!r} is already running", "give each workload its own id")
    run.workloads[wid] = start_workload(run, str(step.arg), step.options)
    return f"{step.arg} started as {wid}"


def _stop(run: RunCtx, step: Step) -> str:
    wid = str(step.arg)
    if wid not in run.workloads:
        raise InvalidInput(f"no running workload {wid!r}", f"running: {', '.join(run.workloads) or 'none'}")
    return stop_workload(run, wid)


def _check(run: RunCtx, step: Step) -> str:
    return check_workload(run, str(step.arg))


def _monitor(run: RunCtx, step: Step) -> str:
    return monitor(run, str(step.arg), step.options)


def _drill(run: RunCtx, step: Step) -> str:
    opts = dict(step.options)
    fn = getattr(run.lab, f"drill_{step.arg}")
    result = fn(opts.pop("node"), **opts) if "node" in opts and step.arg != "sync_failure" else fn(**opts)
    run.add_figures(result, "drill")
    return _short(result)


def _chaos(run: RunCtx, step: Step) -> str:
    o = step.options
    faults = o.get("faults", "kill,stop,pause,partition,isolate,throttle")
    r = run.lab.chaos(seed=int(o.get("seed", 1)), duration=float(step.arg or 60),
                      faults=tuple(faults.split(",") if isinstance(faults, str) else faults),
                      mode=str(o.get("mode", "sync")), timeout=float(o.get("timeout", 2.0)),
                      fast_path=bool(o.get("fast_path", True)))
    injected = sum(1 for x in r.outcomes if x.started)
    run.add_figures({"chaos_faults": injected, "chaos_failovers": len(r.failovers),
                     "chaos_false_failovers": r.false_failovers, "chaos_lost": r.lost,
                     "chaos_unexpected": r.unexpected, "chaos_max_writable": r.max_writable,
                     "chaos_recovered_s": r.final_recovered_s,
                     "chaos_invariants_failed": sum(1 for ok in r.invariants.values() if not ok)})
    fos = ", ".join(f"{f.old_primary}->{f.new_primary} {f.path}" for f in r.failovers) or "none"
    return (f"seed {r.seed}: {injected} faults, failovers {fos}, {r.false_failovers} false, {r.lost} lost, "
            f"at most {r.max_writable} writable primary")


def stop_all_workloads(run: RunCtx) -> None:
    """Stop what is still running (workloads, the monitor) at the end of a run, success or not."""
    if not run.workloads:
        return
    for wid in list(run.workloads):
        try:
            if wid == "_monitor":
                monitor(run, "stop", {})
            elif not stopped(run.workloads[wid]):
                stop_workload(run, wid)
        except Exception:  # noqa: BLE001 - teardown goes on
            run.workloads.pop(wid, None)


_ACTIONS = {
    "fault": _fault, "heal": _heal, "restart": _restart, "chaos": _chaos, "wait": _wait, "sleep": _sleep, "sql": _sql, "mark": _mark,
    "parallel": _parallel, "drill": _drill, "workload": _workload, "stop": _stop, "check": _check, "monitor": _monitor,
    "promote": _api("promote"), "switchover": _api("switchover"), "failover": _api("failover"),
    "rejoin": _api("rejoin"), "reclone": _api("reclone"), "set_sync": _api("set_sync"),
    "say": narration.say, "ask": narration.ask,
    "consistency": drillsteps.consistency_step, "methods": drillsteps.methods_step,
    "measure": drillsteps.measure_step, "bench": benchstep.bench_step,
}
