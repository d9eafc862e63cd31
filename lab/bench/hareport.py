"""`pglab bench ha`'s output: one table row per cell (Markdown for files, rows for the terminal) and
one chart of client-observed RTO per manager-profile and fault: as text for the terminal (what
the bare command prints) and as a PNG (--chart).

Pure formatting: an unknown figure prints as "unknown", a cell a manager cannot do prints "n/a" in
every figure and says why in its last column; nothing is ever blank or a made-up 0.
"""
from __future__ import annotations

import math
import statistics
from pathlib import Path

from lab.bench.ha import BenchResult, Cell, DrillRow
from lab.bench.haplan import BenchOptions
from lab.errors import InvalidInput

HEAD = ["manager", "fault", "mode", "n", "RTO median s", "RTO max s", "longest outage s", "detect s", "promote s",
        "lost", "unexpected", "recovered", "two primaries s", "false failovers", "leader moved", "old primary back",
        "operator steps", "errors", "note"]
UNKNOWN = "unknown"
NA = "n/a"


def _f(x: float | None) -> str:
    return UNKNOWN if x is None else f"{x:.2f}"


def _i(x: int | None) -> str:
    return UNKNOWN if x is None else str(x)


def _back(c: Cell) -> str:
    """Whether the old primary came back as a standby by itself (the manager) or by pglab's rejoin."""
    done = [r for r in c.rows if r.error is None]
    if done and not any(r.leader_moved for r in done):
        return "not needed"     # it stayed the primary (pause-short, a restart in place)
    known = [r for r in done if r.rejoin_by is not None]
    if not known:
        return UNKNOWN if done else NA
    itself = sum(1 for r in known if r.rejoin_by == "manager")
    took = [r.rejoin_s for r in known if r.rejoin_s is not None]
    # when: from the drill's heal of the old primary until it streamed again, the median
    when = f" in {statistics.median(took):.1f}s" if took else ""
    return (f"by itself {itself}/{len(known)}" if itself else f"by pglab {len(known)}/{len(known)}") + when


def _note(c: Cell) -> str:
    errs = [r.error for r in c.rows if r.error]
    probs = sorted({p for r in c.rows for p in r.problems if not p.startswith("hold ")})
    bits = []
    if c.fault == "pause-short" and c.bound_s is not None:
        bits.append(f"paused {c.bound_s / 2:.1f}s (half the bound)")
    if errs:
        bits.append("error: " + errs[0])
    if probs:
        bits.append("; ".join(probs))
    return " ".join(bits) or "-"


def row(c: Cell) -> list[str]:
    if c.unsupported is not None:
        return [c.label, c.fault, c.mode] + [NA] * (len(HEAD) - 4) + [f"unsupported: {c.unsupported}"]
    moved = NA if c.n == 0 else f"{_i(c.leader_moved)}/{c.n}"
    # pause-short has no detection/promotion phases: nothing is meant to fail over
    phase = (lambda x: NA) if c.fault == "pause-short" else _f
    return [c.label, c.fault, c.mode, str(c.n), _f(c.rto_median_s), _f(c.rto_max_s), _f(c.outage_max_s),
            phase(c.detect_median_s), phase(c.promote_median_s), _i(c.lost), _i(c.unexpected), _i(c.recovered),
            _f(c.two_primaries_max_s), _i(c.false_failovers), moved, _back(c), _i(c.operator_steps_max),
            str(c.errors), _note(c)]


def table(res: BenchResult) -> list[list[str]]:
    return [row(c) for c in res.cells]


def floor_line(res: BenchResult) -> str:
    if res.floor_median_s is None:
        return f"floor (kill -9 + pg_promote by hand + first write): unknown ({res.floor_error or 'not measured'})"
    return (f"floor (kill -9 + pg_promote by hand + first write): median {res.floor_median_s:.2f}s over "
            f"{len(res.floors_s)} ({', '.join(f'{x:.2f}' for x in res.floors_s)})")


def markdown(res: BenchResult) -> str:
    o = res.options
    out = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    out += ["| " + " | ".join(x.replace("|", "\\|") for x in r) + " |" for r in table(res)]
    out += ["", floor_line(res),
            f"{o.repeat} repeat(s), runtime {o.runtime}, per-node namespaces: {res.root}, {res.duration_s:.0f}s in all",
            "", "```", *text_chart(res), "```"]
    return "\n".join(out) + "\n"


BAR = 32   # characters of the terminal chart's longest bar


def _scale(res: BenchResult) -> tuple[float, float]:
    """The RTO axis both charts share: logarithmic, from half the smallest median (or 1 s) to 1.5x
    the largest max, so the floor's 0.1 s and a minute-long failover both stay readable."""
    rtos = [c.rto_max_s for c in res.cells if c.rto_max_s is not None]
    top = max(rtos + [res.floor_median_s or 0, 1.0]) * 1.5
    bottom = min([c.rto_median_s for c in res.cells if c.rto_median_s] + [res.floor_median_s or 1.0, 1.0]) / 2
    return bottom, top


def bar_cells(x: float, bottom: float, top: float, width: int = BAR) -> int:
    """How many characters a value gets on the log axis: at least 1 for any RTO above the axis'
    foot, `width` at its top."""
    if x <= bottom:
        return 1
    return max(1, min(width, round(width * math.log(x / bottom) / math.log(top / bottom))))


def text_chart(res: BenchResult) -> list[str]:
    """The chart for a terminal: per mode and fault, one bar per manager-profile at its median RTO
    (log scale, as the PNG), the max beside it; "unknown" or "n/a" where there is no bar to draw."""
    bottom, top = _scale(res)
    labels = list(dict.fromkeys(c.label for c in res.cells))
    w = max((len(x) for x in labels), default=0)
    by = {(c.label, c.fault, c.mode): c for c in res.cells}
    out = [f"RTO per manager and fault: bar = median, log scale {bottom:.2f}s to {top:.1f}s; max in brackets"]
    for md in dict.fromkeys(c.mode for c in res.cells):
        for f in dict.fromkeys(c.fault for c in res.cells):
            out.append(f"{md} {f}")
            for lab in labels:
                c = by.get((lab, f, md))
                if c is None:
                    continue
                if c.unsupported is not None:
                    out.append(f"  {lab:<{w}}  {NA}")
                elif c.rto_median_s is None:
                    out.append(f"  {lab:<{w}}  {UNKNOWN}")
                else:
                    bar = "#" * bar_cells(c.rto_median_s, bottom, top)
                    out.append(f"  {lab:<{w}}  {bar:<{BAR}} {c.rto_median_s:.2f}s (max {_f(c.rto_max_s)}s)")
    if res.floor_median_s is not None:
        out.append(f"  {'floor':<{w}}  {'#' * bar_cells(res.floor_median_s, bottom, top):<{BAR}} "
                   f"{res.floor_median_s:.2f}s")
    return out


def write_chart(res: BenchResult, path: Path) -> Path:
    """One panel per mode (sync above async), grouped bars per fault: one bar per manager-profile
    at the median RTO, a whisker to the max; "n/a" where the manager cannot do the cell, "?" where
    the RTO is unknown; the floor as a dashed line. The RTO axis is logarithmic: the floor and
    pglab's half second sit beside minute-long failovers, and a linear axis flattens the first."""
    import matplotlib  # lazy: matplotlib takes ~0.5 s to import; only charts need it
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: as above

    modes = list(dict.fromkeys(c.mode for c in res.cells)) or ["sync"]
    faults = list(dict.fromkeys(c.fault for c in res.cells))
    labels = list(dict.fromkeys(c.label for c in res.cells))
    by = {(c.label, c.fault, c.mode): c for c in res.cells}
    width = 0.8 / max(1, len(labels))
    bottom, top = _scale(res)
    # wide enough for the bars of one fault to stay apart, never wider than a page can show
    fig_w = min(16.0, max(6.0, 0.9 * len(faults) * max(1, len(labels)) ** 0.5))
    fig, axes = plt.subplots(len(modes), 1, figsize=(fig_w, 3.6 * len(modes) + 0.6), squeeze=False)
    for ax, md in zip((a[0] for a in axes), modes):
        for j, lab in enumerate(labels):
            xs, ys, err = [], [], []
            for g, f in enumerate(faults):
                x = g - 0.4 + width * (j + 0.5)
                c = by.get((lab, f, md))
                if c is None or c.unsupported is not None or c.rto_median_s is None:
                    mark = "?" if c is not None and c.unsupported is None else "n/a"
                    ax.text(x, bottom * 1.1, mark, ha="center", va="bottom", fontsize=6, rotation=90, color="grey")
                    continue
                xs.append(x)
                ys.append(c.rto_median_s)
                err.append((c.rto_max_s or c.rto_median_s) - c.rto_median_s)
            ax.bar(xs, ys, width, yerr=[[0] * len(err), err], capsize=2, label=lab)
        if res.floor_median_s is not None:
            ax.axhline(res.floor_median_s, color="black", linestyle="--", linewidth=0.8,
                       label=f"floor {res.floor_median_s:.2f}s")
        ax.set_yscale("log")
        ax.set_ylim(bottom, top)
        ax.set_xticks(range(len(faults)))
        ax.set_xticklabels(faults)
        ax.set_ylabel(f"RTO s, {md} (log)")
        ax.grid(axis="y", which="major", linewidth=0.3)
    axes[0][0].set_title(f"failover managers side by side: {res.options.repeat} repeat(s), runtime "
                         f"{res.options.runtime}; bar median, whisker max")
    axes[0][0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def from_json(data: dict, source: str = "the file") -> BenchResult:
    """A run saved with --json, back as a result: its table and chart can be drawn again (a new
    chart style, a lost PNG) without an hour of drills."""
    try:
        opts = BenchOptions(**{k: tuple(v) if isinstance(v, list) else v for k, v in data["options"].items()})
        cells = tuple(Cell(**{**c, "rows": tuple(DrillRow(**{**r, "problems": tuple(r["problems"])})
                                                 for r in c["rows"])}) for c in data["cells"])
        return BenchResult(opts, tuple(data["floors_s"]), data["floor_error"], cells, tuple(data["labs"]),
                           data["root"], data.get("duration_s", 0.0), data.get("drill_seconds", {}))
    except (KeyError, TypeError, AttributeError) as e:
        raise InvalidInput(f"{source} is not the JSON of `pglab bench ha --json` ({type(e).__name__}: {e})",
                           "give the file a run's --json output was saved to") from None
