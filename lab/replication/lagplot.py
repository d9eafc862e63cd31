"""Drawing a lag recording: bytes and seconds behind the primary per standby, events marked.

A PNG (matplotlib, Agg backend: no display needed) or a self-contained HTML page (the same
figure as inline SVG: no scripts, no network, opens anywhere).
"""
from __future__ import annotations

import html
import io
from pathlib import Path

from lab.errors import InvalidInput
from lab.replication.lagrec import LagRecording


def _figure(rec: LagRecording, title: str | None = None):
    import matplotlib  # lazy: matplotlib takes ~0.5 s to import; only charts need it
    matplotlib.use("Agg")          # never try to open a window (CI, ssh sessions)
    import matplotlib.pyplot as plt  # lazy: as above

    fig, (ax_b, ax_s) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    t0 = rec.started or (min(s.t for s in rec.samples) if rec.samples else 0.0)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, node in enumerate(rec.standbys):
        series = rec.series(node)
        c = colours[i % len(colours)]
        t = [s.t - t0 for s in series]
        # bytes: replay (solid) and flush (dashed); the gap between them is WAL received but not applied
        ax_b.plot(t, [_mb(s.replay_lag_bytes) for s in series], color=c, label=f"{node} replay")
        ax_b.plot(t, [_mb(s.flush_lag_bytes) for s in series], color=c, linestyle="--", linewidth=0.8,
                  label=f"{node} flush")
        ax_s.plot(t, [s.replay_lag_s for s in series], color=c, label=f"{node} replay")
        # where the standby was not streaming (away, or stuck): shade under its curve
        away = [s.t - t0 for s in series if not s.connected]
        if away:
            ax_s.scatter(away, [0] * len(away), color=c, marker="|", s=30, label=f"{node} not streaming")
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
    ov = rec.overhead
    fig.suptitle(title or f"lab {rec.lab}: replication lag (sampled at {ov.achieved_hz:.1f} Hz, "
                          f"{ov.sample_ms_mean:.1f} ms/sample)", fontsize=11)
    fig.tight_layout()
    return fig, plt


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
