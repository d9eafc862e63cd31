"""Reports of a scenario run: report.json (everything), report.md (for people), a lag/throughput
chart with events marked (PNG), and JUnit XML (one test case per expectation, for CI systems)."""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

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
        lines += ["", "## Lag and writes over time", "", f"![lag and writes]({chart})"]
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


def write_chart(res: RunResult, path: Path) -> Path | None:
    if len(res.samples) < 2:
        return None
    import matplotlib  # lazy: matplotlib takes ~0.5 s to import; only charts need it
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: as above

    evs = [e for e in res.events if e.get("kind") != "up" and e.get("t", 0) >= res.started]
    t0 = min([res.samples[0]["t"]] + [e["t"] for e in evs])
    fig, (ax0, ax1, ax2) = plt.subplots(3, 1, figsize=(10, 7.5), sharex=True)
    for suffix, ax, label in ((".replay_lag_bytes", ax0, "replay lag (MB)"), (".replay_lag_s", ax1, "replay lag (s)")):
        keys = sorted({k for s in res.samples for k in s if k.endswith(suffix)})
        for k in keys:
            pts = [(s["t"] - t0, s[k]) for s in res.samples if s.get(k) is not None]
            scale = 1 / 1048576 if suffix.endswith("bytes") else 1
            ax.plot([p[0] for p in pts], [p[1] * scale for p in pts], label=k.split(".")[0])
        if suffix.endswith("bytes"):
            # WAL held for each standby by its slot: grows while a standby is away
            for k in sorted({k for s in res.samples for k in s if k.endswith(".slot_retained_bytes")}):
                pts = [(s["t"] - t0, s[k] / 1048576) for s in res.samples if s.get(k) is not None]
                ax.plot([p[0] for p in pts], [p[1] for p in pts], linestyle=":", label=k.split(".")[0] + " slot")
        ax.set_ylabel(label)
        if keys:
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
    fig.suptitle(f"{res.scenario} ({res.runtime})")
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
