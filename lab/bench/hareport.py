"""`pglab bench ha`'s output: one table row per cell (Markdown for files, rows for the terminal) and
one chart (PNG): client-observed RTO per manager-profile and fault.

Pure formatting: an unknown figure prints as "unknown", a cell a manager cannot do prints "n/a" in
every figure and says why in its last column; nothing is ever blank or a made-up 0.
"""
from __future__ import annotations

from pathlib import Path

from lab.bench.ha import BenchResult, Cell

HEAD = ["manager", "fault", "mode", "n", "RTO median s", "RTO max s", "detect s", "promote s", "lost", "unexpected",
        "false failovers", "leader moved", "old primary back", "errors", "note"]
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
    return f"by itself {itself}/{len(known)}" if itself else f"by pglab {len(known)}/{len(known)}"


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
    return [c.label, c.fault, c.mode, str(c.n), _f(c.rto_median_s), _f(c.rto_max_s), phase(c.detect_median_s),
            phase(c.promote_median_s), _i(c.lost), _i(c.unexpected), _i(c.false_failovers), moved, _back(c),
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
            f"{o.repeat} repeat(s), runtime {o.runtime}, per-node namespaces: {res.root}, {res.duration_s:.0f}s in all"]
    return "\n".join(out) + "\n"


def write_chart(res: BenchResult, path: Path) -> Path:
    """Grouped bars: per fault (and mode), one bar per manager-profile at the median RTO, a whisker
    to the max; "n/a" where the manager cannot do the cell, "?" where the RTO is unknown; the floor
    as a dashed line."""
    import matplotlib  # lazy: matplotlib takes ~0.5 s to import; only charts need it
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: as above

    modes = list(dict.fromkeys(c.mode for c in res.cells))
    groups = list(dict.fromkeys((c.fault, c.mode) for c in res.cells))
    labels = list(dict.fromkeys(c.label for c in res.cells))
    by = {(c.label, c.fault, c.mode): c for c in res.cells}
    width = 0.8 / max(1, len(labels))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(groups) * max(1, len(labels)) ** 0.5), 4.5))
    top = max([c.rto_max_s for c in res.cells if c.rto_max_s is not None] + [res.floor_median_s or 0, 1.0])
    for j, lab in enumerate(labels):
        xs, ys, err = [], [], []
        for g, (f, md) in enumerate(groups):
            x = g - 0.4 + width * (j + 0.5)
            c = by.get((lab, f, md))
            if c is None or c.unsupported is not None or c.rto_median_s is None:
                mark = "?" if c is not None and c.unsupported is None else "n/a"
                ax.text(x, top * 0.02, mark, ha="center", va="bottom", fontsize=7, rotation=90, color="grey")
                continue
            xs.append(x)
            ys.append(c.rto_median_s)
            err.append((c.rto_max_s or c.rto_median_s) - c.rto_median_s)
        ax.bar(xs, ys, width, yerr=[[0] * len(err), err], capsize=2, label=lab)
    if res.floor_median_s is not None:
        ax.axhline(res.floor_median_s, color="black", linestyle="--", linewidth=0.8,
                   label=f"floor {res.floor_median_s:.2f}s")
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([f if len(modes) == 1 else f"{f} ({md})" for f, md in groups])
    ax.set_ylabel("RTO s (client-observed; bar median, whisker max)")
    ax.set_title(f"failover managers side by side: {res.options.repeat} repeat(s), runtime {res.options.runtime}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
