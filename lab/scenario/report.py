"""Reports of a scenario run: report.json (everything), report.md (for people), a lag/throughput
chart with events marked (PNG), and JUnit XML (one test case per expectation, for CI systems)."""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from lab.replication.lagplot import draw_band, draw_series, gaps
from lab.scenario.runner import RunResult


def to_dict(res: RunResult) -> dict:
    d = dataclasses.asdict(res)
    d["passed"] = res.passed
    return d


def write_report(res: RunResult, out_dir: str | Path) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "report.json", out / "report.md"]
    paths[0].write_text(json.dumps(to_dict(res), indent=1, default=str))
    chart = write_chart(res, out / "chart.png")
    paths[1].write_text(markdown(res, chart.name if chart else None))
    if chart:
        paths.append(chart)
    return paths


def _ts(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int((t % 1) * 1000):03d}"


def markdown(res: RunResult, chart: str | None = None) -> str:
    verdict = "PASSED" if res.passed else ("INVALID / LAB FAILED" if res.exit_code == 2 else "FAILED")
    lines = [f"# Scenario {res.scenario}: {verdict}", "", res.description, "",
             f"- file: `{res.path}`", f"- runtime: {res.runtime}, lab `{res.lab}`",
             f"- duration: {res.ended - res.started:.1f} s", ""]
    if res.error:
        lines += [f"**Error:** {res.error}", ""]
    nodes = res.topology.get("nodes", [])
    repl = res.topology.get("replication", {})
    lines += ["## Topology", "",
              f"nodes: {', '.join(n['name'] + (' (primary)' if n.get('role') == 'primary' else '') for n in nodes)}; "
              f"synchronous_standby_names: `{repl.get('synchronous_standby_names')}`; "
              f"synchronous_commit: `{repl.get('synchronous_commit')}`", ""]
    lines += ["## Steps", "", "| # | step | start | took | outcome | detail |", "|---|---|---|---|---|---|"]
    for i, s in enumerate(res.steps, 1):
        lines.append(f"| {i} | {s.description} | {_ts(s.started)} | {s.ended - s.started:.2f} s | {s.outcome} | "
                     f"{s.detail.replace('|', '/')[:120]} |")
    lines += ["", "## Results", "", "| figure | value |", "|---|---|"]
    for k, v in sorted(res.figures.items()):
        if "." not in k:
            lines.append(f"| {k} | {_fmt(v)} |")
    lines += data_loss_lines(res)
    lines += ["", "## Expectations", "", "| expectation | result | actual |", "|---|---|---|"]
    for e in res.expectations:
        lines.append(f"| `{e.text}` | {'pass' if e.passed else 'FAIL'} | {_fmt(e.actual)} |")
    if chart:
        lines += ["", "## Lag and writes over time", "", sampling(res), "", f"![lag and writes]({chart})"]
    return "\n".join(lines) + "\n"


def _bytes(n: object) -> str:
    if not isinstance(n, int):
        return "unknown"
    return f"{n} B" if n < 1024 else (f"{n / 1024:.1f} kB" if n < 1 << 20 else f"{n / (1 << 20):.1f} MB")


def data_loss_lines(res: RunResult) -> list[str]:
    """Every failover of the run: the election's estimate of the WAL it would lose (a lower bound,
    from the old primary's last sighting) beside the truth read from the old primary's WAL."""
    fos = [e for e in res.events if e.get("kind") == "failover" and e.get("t", 0) >= res.started]
    if not fos:
        return []
    elections = [e for e in res.events if e.get("kind") == "election" and e.get("node")]
    out = ["", "## Data loss per failover", "",
           "| at | old -> new | estimated (lower bound) | really (old primary's WAL) | commits | guard |",
           "|---|---|---|---|---|---|"]
    for e in fos:
        el = max((x for x in elections if x["t"] <= e["t"]), key=lambda x: x["t"], default={})
        est = e.get("estimate_bytes")
        out.append(f"| {_ts(e['t'])} | {e.get('old_primary')} -> {e.get('node')} | "
                   f"{'>= ' + _bytes(est) if isinstance(est, int) else 'unknown'} | {_bytes(e.get('true_bytes'))} | "
                   f"{e.get('true_commits') if e.get('true_commits') is not None else 'unknown'} | "
                   f"{str(el.get('loss', '')).replace('|', '/')} |")
    return out


def _fmt(v: object) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def sample_spacing(res: RunResult) -> float | None:
    ts = [s["t"] for s in res.samples]
    return (ts[-1] - ts[0]) / (len(ts) - 1) if len(ts) > 1 else None


def sampling(res: RunResult) -> str:
    """How often the chart's figures were measured, in words, for the report."""
    gap = sample_spacing(res)
    if gap is None:
        return "Lag was sampled fewer than twice: no chart."
    ts = [s["t"] for s in res.samples]
    longest = max(b - a for a, b in zip(ts, ts[1:]))
    return (f"Lag was sampled {len(ts)} times over {ts[-1] - ts[0]:.1f} s: one `pglab status` reading every "
            f"{gap:.2f} s on average ({1 / gap:.1f} Hz; longest interval {longest:.2f} s). What happened between two "
            "samples was not measured. A node that was down or did not answer is a hatched band, never a line; for "
            "10 Hz lag curves record with `pglab lag record` beside the scenario.")


def _node_series(res: RunResult, node: str, suffix: str, t0: float):
    ts = [s["t"] - t0 for s in res.samples]
    vals = [s.get(f"{node}{suffix}") for s in res.samples]
    states = [s.get(f"{node}.state") for s in res.samples]
    return ts, vals, states


def write_chart(res: RunResult, path: Path) -> Path | None:
    if len(res.samples) < 2:
        return None
    import matplotlib  # lazy: matplotlib takes ~0.5 s to import; only charts need it
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: as above

    evs = [e for e in res.events if e.get("kind") != "up" and e.get("t", 0) >= res.started]
    t0 = min([res.samples[0]["t"]] + [e["t"] for e in evs])
    fig, (ax0, ax1, ax2) = plt.subplots(3, 1, figsize=(10, 7.5), sharex=True)
    spacing = sample_spacing(res) or 0.25
    max_gap = 2.5 * spacing
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    nodes = sorted({k.split(".")[0] for s in res.samples for k in s
                    if k.endswith((".replay_lag_bytes", ".replay_lag_s", ".slot_retained_bytes"))})
    for i, node in enumerate(nodes):
        c = colours[i % len(colours)]
        for suffix, ax, scale in ((".replay_lag_bytes", ax0, 1 / 1048576), (".replay_lag_s", ax1, 1)):
            ts, vals, states = _node_series(res, node, suffix, t0)
            ok = [v is not None for v in vals]
            draw_series(ax, ts, [None if v is None else v * scale for v in vals], ok, max_gap, color=c, label=node)
            if ax is ax0:
                # WAL held for each standby by its slot: grows while a standby is away
                ks, kv, _ = _node_series(res, node, ".slot_retained_bytes", t0)
                draw_series(ax, ks, [None if v is None else v / 1048576 for v in kv], [v is not None for v in kv],
                            max_gap, color=c, linestyle=":", label=node + " slot")
            for a, b in gaps(ts, ok, max_gap):
                seen = [st for t, st in zip(ts, states) if a <= t <= b and st and st != "standby"]
                text = f"{node} {max(set(seen), key=seen.count)}" if seen else f"{node} not measured"
                draw_band(ax, a, b, text, c)
    ax0.set_ylabel("replay lag (MB)")
    ax1.set_ylabel("replay lag (s)")
    for ax in (ax0, ax1):
        if nodes:
            ax.legend(loc="upper left")
    xs = [s["t"] - t0 for s in res.samples]
    oks = [s.get("writes_ok") or 0 for s in res.samples]
    rate = [0.0] + [(oks[i] - oks[i - 1]) / max(1e-6, xs[i] - xs[i - 1]) for i in range(1, len(xs))]
    ax2.plot(xs, rate, color="tab:green")
    ax2.set_ylabel("acknowledged writes/s")
    ax2.set_xlabel("seconds since start")
    for e in evs:
        if True:
            for ax in (ax0, ax1, ax2):
                ax.axvline(e["t"] - t0, color="tab:red", alpha=0.5, linestyle="--")
            ax0.annotate(f"{e['kind']} {e.get('node') or e.get('text') or ''}".strip(), (e["t"] - t0, 1.0),
                         xycoords=("data", "axes fraction"), rotation=90, va="top", fontsize=7)
    fig.suptitle(f"{res.scenario} ({res.runtime}): lag sampled every {spacing:.2f} s on average; "
                 "hatched: not measured")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_junit(results: list[RunResult], path: str | Path) -> Path:
    """One test suite per scenario, one test case per expectation (and one for the steps)."""
    out = ['<?xml version="1.0" encoding="UTF-8"?>', "<testsuites>"]
    for r in results:
        cases = []
        steps_failed = [s for s in r.steps if s.outcome != "ok"]
        cases.append(("steps", r.error or "; ".join(f"{s.name}: {s.detail}" for s in steps_failed)))
        for e in r.expectations:
            cases.append((e.text, "" if e.passed else f"expected {e.expected}, actual {e.actual}"))
        failures = sum(1 for _, f in cases if f)
        out.append(f"  <testsuite name={quoteattr(r.scenario)} tests=\"{len(cases)}\" failures=\"{failures}\" "
                   f"time=\"{r.ended - r.started:.2f}\">")
        for name, failure in cases:
            out.append(f"    <testcase classname={quoteattr('scenario.' + r.scenario)} name={quoteattr(name)}>")
            if failure:
                out.append(f"      <failure message={quoteattr(failure[:500])}>{escape(failure)}</failure>")
            out.append("    </testcase>")
        out.append("  </testsuite>")
    out.append("</testsuites>")
    p = Path(path)
    p.write_text("\n".join(out) + "\n")
    return p
