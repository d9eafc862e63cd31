"""Drawing a lag recording: bytes and seconds behind the primary per standby, events marked.

A PNG (matplotlib, Agg backend: no display needed) or a self-contained HTML page (the same
figure as inline SVG: no scripts, no network, opens anywhere).

Only what was measured is drawn. A line joins two samples only if both were measured the same
way and no tick was missed between them; a standby that was away (its figures are then where
its slot stopped) or a stretch with no sample at all is a gap with a marked, labelled band.
"""
from __future__ import annotations

import html
import io
from pathlib import Path

from lab.errors import InvalidInput
from lab.replication.lagrec import LagRecording


def runs(ts: list[float], ok: list[bool], max_gap: float) -> list[tuple[int, int]]:
    """Index ranges [i, j] of consecutive samples that may be joined by a line: each `ok`, and
    no more than `max_gap` seconds apart (a longer gap means ticks without a sample)."""
    out: list[tuple[int, int]] = []
    start = None
    for i, good in enumerate(ok):
        if good and start is not None and ts[i] - ts[i - 1] > max_gap:
            out.append((start, i - 1))
            start = None
        if good and start is None:
            start = i
        elif not good and start is not None:
            out.append((start, i - 1))
            start = None
    if start is not None:
        out.append((start, len(ok) - 1))
    return out


def gaps(ts: list[float], ok: list[bool], max_gap: float, end: float | None = None) -> list[tuple[float, float]]:
    """Time spans [a, b] not covered by the runs: from the last good sample before (or the first
    sample) to the first good one after (or `end`). What happened inside is not known."""
    if not ts:
        return []
    rs = runs(ts, ok, max_gap)
    out: list[tuple[float, float]] = []
    prev_end = ts[0] if not ok[0] else None
    for i, j in rs:
        if prev_end is not None and ts[i] > prev_end:
            out.append((prev_end, ts[i]))
        prev_end = ts[j]
    last = end if end is not None else ts[-1]
    if rs and (rs[-1][1] < len(ts) - 1 or last - ts[-1] > max_gap) and last > ts[rs[-1][1]]:
        out.append((ts[rs[-1][1]], last))
    if not rs:
        out.append((ts[0], last))
    return out


def draw_series(ax, ts: list[float], values: list[float | None], ok: list[bool], max_gap: float, **style) -> None:
    """Plot the measured runs of one series, each run its own line (never across a gap)."""
    label = style.pop("label", None)
    good = [g and v is not None for g, v in zip(ok, values)]
    for i, j in runs(ts, good, max_gap):
        ax.plot(ts[i:j + 1], values[i:j + 1], label=label, **style)
        label = None


def draw_band(ax, a: float, b: float, text: str | None, colour) -> None:
    ax.axvspan(a, b, color=colour, alpha=0.12, hatch="//", linewidth=0)
    if text:
        ax.annotate(text, ((a + b) / 2, 0.5), xycoords=("data", "axes fraction"), ha="center", va="center",
                    fontsize=8, color=colour, rotation=90 if b - a < 1 else 0)


def _figure(rec: LagRecording, title: str | None = None):
    import matplotlib  # lazy: matplotlib takes ~0.5 s to import; only charts need it
    matplotlib.use("Agg")          # never try to open a window (CI, ssh sessions)
    import matplotlib.pyplot as plt  # lazy: as above

    fig, (ax_b, ax_s) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    t0 = rec.started or (min(s.t for s in rec.samples) if rec.samples else 0.0)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    # a tick without a sample (the primary did not answer) shows as more than 2.5 intervals apart
    max_gap = 2.5 * (rec.interval or 0.1)
    for i, node in enumerate(rec.standbys):
        series = rec.series(node)
        c = colours[i % len(colours)]
        t = [s.t - t0 for s in series]
        ok = [s.connected for s in series]
        # bytes: replay (solid) and flush (dashed); the gap between them is WAL received but not applied
        draw_series(ax_b, t, [_mb(s.replay_lag_bytes) for s in series], ok, max_gap, color=c, label=f"{node} replay")
        draw_series(ax_b, t, [_mb(s.flush_lag_bytes) for s in series], ok, max_gap, color=c, linestyle="--",
                    linewidth=0.8, label=f"{node} flush")
        draw_series(ax_s, t, [s.replay_lag_s for s in series], ok, max_gap, color=c, label=f"{node} replay")
        # away: what the slot says (where it stopped), dotted, inside a band that says so
        away = [not x for x in ok]
        draw_series(ax_b, t, [_mb(s.replay_lag_bytes) for s in series], away, max_gap, color=c, linestyle=":",
                    linewidth=0.8, label=f"{node} away: slot position")
        for a, b in gaps(t, ok, max_gap, rec.ended - t0 if rec.ended else None):
            gone = [s for s in series if a <= s.t - t0 <= b and not s.connected]
            text = f"{node} away" if gone else "no sample"
            for ax in (ax_b, ax_s):
                draw_band(ax, a, b, text if ax is ax_s else None, c)
    for e in rec.events:
        x = e.get("t", 0) - t0
        label = e.get("kind", "?") + (f" {e['node']}" if e.get("node") else "")
        for ax in (ax_b, ax_s):
            ax.axvline(x, color="grey", linestyle=":", linewidth=1)
        ax_b.annotate(label, (x, 1), xycoords=("data", "axes fraction"), rotation=90, va="top", ha="right",
                      fontsize=8, color="dimgrey")
    ax_b.set_ylabel("behind primary (MB)")
    ax_s.set_ylabel("behind primary (s)")
    ax_s.set_xlabel("seconds since start of recording")
    for ax in (ax_b, ax_s):
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
        ax.legend(loc="upper left", fontsize=8)
    fig.suptitle(title or f"lab {rec.lab}: replication lag ({_rate(rec)}; hatched: not measured)", fontsize=11)
    fig.tight_layout()
    return fig, plt


def _rate(rec: LagRecording) -> str:
    """How often it was sampled: the recorder's own account, or (a CSV keeps none) the samples'."""
    ov = rec.overhead
    if ov.achieved_hz:
        return f"sampled at {ov.achieved_hz:.1f} Hz, {ov.sample_ms_mean:.1f} ms/sample"
    ts = sorted({s.t for s in rec.samples})
    return f"{len(ts)} samples, {(len(ts) - 1) / (ts[-1] - ts[0]):.1f} Hz" if len(ts) > 1 else f"{len(ts)} sample"


def _mb(b: int | None) -> float | None:
    return None if b is None else b / (1024 * 1024)


def plot(rec: LagRecording, out: str | Path, title: str | None = None) -> Path:
    """Write a .png (or .svg/.pdf) or a .html file, by the output's suffix."""
    out = Path(out)
    if not rec.samples:
        raise InvalidInput("the recording has no samples", "record longer, or check that the lab is up")
    fig, plt = _figure(rec, title)
    try:
        if out.suffix in (".html", ".htm"):
            buf = io.StringIO()
            fig.savefig(buf, format="svg")
            svg = buf.getvalue()
            svg = svg[svg.find("<svg"):]   # drop the XML prolog: the SVG goes inline
            events = "".join(f"<li>{e.get('t', 0) - rec.started:+.2f}s {html.escape(str(e.get('kind')))} "
                             f"{html.escape(str(e.get('node') or ''))}</li>" for e in rec.events)
            ov = rec.overhead
            out.write_text(
                "<!doctype html><meta charset='utf-8'>"
                f"<title>lag of lab {html.escape(rec.lab)}</title><body style='font-family:sans-serif'>"
                f"{svg}<h3>events</h3><ul>{events or '<li>none</li>'}</ul>"
                f"<p>{ov.samples} samples, {ov.achieved_hz:.1f} Hz, {ov.sample_ms_mean:.2f} ms per sample "
                f"(max {ov.sample_ms_max:.1f}), recorder CPU {ov.cpu_percent:.1f}% of one core</p></body>")
        else:
            fig.savefig(out, dpi=110)
    finally:
        plt.close(fig)
    return out
