"""The scenario step `bench: ha` (options as `pglab bench ha`'s, lists or comma-separated text):
the failover managers side by side on labs of their own, beside the scenario's lab.

Figures, per cell that ran (names in lower case, '-' as '_'):
bench.<manager_profile>.<fault>.<mode>.{rto_median_s, rto_max_s, lost, unexpected, false_failovers,
leader_moved, n, errors}; bench.floor_s; bench.labs (the labs it made, all down again). A cell the manager cannot do has no figures (an
expectation on it fails as unknown, never as 0).
"""
from __future__ import annotations

from typing import Any

from lab.bench import haplan
from lab.errors import InvalidInput

FIGURES = ("rto_median_s", "rto_max_s", "lost", "unexpected", "false_failovers", "leader_moved", "n", "errors")


def _text(v: Any, default: tuple[str, ...]) -> str:
    if v is None:
        return ",".join(default)
    return ",".join(str(x) for x in v) if isinstance(v, (list, tuple)) else str(v)


def bench_options(o: dict[str, Any]) -> haplan.BenchOptions:
    d = haplan.BenchOptions()
    try:
        repeat = int(o.get("repeat", 1))
    except (TypeError, ValueError):
        raise InvalidInput(f"bench: repeat {o.get('repeat')!r} is not a number", f"use 1 to {haplan.MAX_REPEAT}") from None
    return haplan.options(managers=_text(o.get("managers"), d.managers), profiles=_text(o.get("profiles"), d.profiles),
                          faults=_text(o.get("faults"), d.faults), modes=_text(o.get("modes"), d.modes),
                          repeat=repeat, runtime=str(o.get("runtime", "local")))


def figure_name(*parts: str) -> str:
    return ".".join(p.lower().replace("-", "_") for p in ("bench", *parts))


def bench_step(run, step) -> str:
    from lab.bench.ha import run as run_bench  # lazy: loading a scenario must not import the labs' machinery
    res = run_bench(bench_options(step.options))
    figures: dict[str, Any] = {"bench.labs": ",".join(res.labs)}     # all down again; for leftover checks
    if res.floor_median_s is not None:
        figures["bench.floor_s"] = round(res.floor_median_s, 3)
    for c in res.cells:
        if c.unsupported is None:
            for k in FIGURES:
                v = getattr(c, k)
                if v is not None:
                    figures[figure_name(c.label, c.fault, c.mode, k)] = v
    run.add_figures(figures)
    ran = [c for c in res.cells if c.unsupported is None]
    return "; ".join(f"{c.label} {c.fault} {c.mode}: RTO {c.rto_median_s if c.rto_median_s is not None else 'unknown'}"
                     f" s, lost {c.lost if c.lost is not None else 'unknown'}" for c in ran) or "no cell could run"
