"""pglab lag [--watch] | pglab lag record | pglab lag plot.

`lag` is a group whose callback keeps the old single-shot / --watch behaviour when no
subcommand is given, so `pglab lag` and `pglab lag --watch` work as before.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.live import Live

from lab.cli.root import app
from lab.cli.core import JsonOpt, NameOpt, lag_table, open_cluster, open_lab
from lab.cli.render import console, err_console, human_bytes, human_secs, print_json, table

if TYPE_CHECKING:
    from lab.replication import lagrec

lag_app = typer.Typer(help="Replication lag: now (default), watched, recorded over time, plotted.",
                      invoke_without_command=True, no_args_is_help=False)
app.add_typer(lag_app, name="lag")


@lag_app.callback(invoke_without_command=True)
def lag(
    ctx: typer.Context,
    name: Optional[str] = NameOpt,
    watch: bool = typer.Option(False, "--watch", "-w", help="Refresh until Ctrl-C (or --duration)."),
    interval: float = typer.Option(1.0, "--interval", "-i", min=0.1, help="Seconds between refreshes."),
    duration: Optional[float] = typer.Option(None, "--duration", help="Stop watching after this many seconds."),
    as_json: bool = JsonOpt,
) -> None:
    """Replication lag of every standby, in bytes and seconds, per stage (write, flush, replay)."""
    ctx.obj = {"name": name}
    if ctx.invoked_subcommand is not None:
        return
    lab = open_cluster(name)
    if not watch:
        st = lab.status()
        if as_json:
            print_json([n for n in st.nodes if n.role.value == "standby"])
        else:
            console.print(lag_table(st))
        return
    end = time.monotonic() + duration if duration else None
    try:
        with Live(lag_table(lab.status()), console=console, refresh_per_second=max(1, int(1 / interval))) as live:
            while end is None or time.monotonic() < end:
                time.sleep(interval)
                live.update(lag_table(lab.status()))
    except KeyboardInterrupt:
        pass


def _live_row(batch: "list[lagrec.LagSample]") -> str:
    return "   ".join(f"{s.node}: {human_bytes(s.replay_lag_bytes)} / {human_secs(s.replay_lag_s)}"
                       + ("" if s.connected else " (away)") for s in batch)


@lag_app.command("record")
def record(
    ctx: typer.Context,
    duration: float = typer.Option(..., "--duration", "-d", min=0.1, help="Seconds to record."),
    out: Path = typer.Option(..., "--out", "-o", help="Output file: .json, or .csv (anything else)."),
    interval: float = typer.Option(0.1, "--interval", "-i", help="Seconds between samples (>= 0.1: at most 10 Hz)."),
    name: Optional[str] = NameOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Sample every standby's lag (bytes and seconds; write/flush/replay) to a file, with the lab's events."""
    from lab.replication import lagrec  # lazy: start-up
    lab = open_lab(name or (ctx.obj or {}).get("name"))
    last: list[str] = [""]
    with Live(console=err_console, refresh_per_second=4, transient=True) as live:
        def show(batch: "list[lagrec.LagSample]") -> None:
            last[0] = _live_row(batch)
            live.update(f"recording lag of lab {lab.name}: {last[0]}")
        rec = lab.record_lag(duration=duration, interval=interval, on_sample=show)
    lagrec.save(rec, out)
    if as_json:
        print_json({"out": str(out), "overhead": rec.overhead, "events": list(rec.events)})
        return
    _summary(rec, out)


def _summary(rec: "lagrec.LagRecording", out: Path) -> None:
    rows = []
    for n in rec.standbys:
        s = rec.series(n)
        rows.append([n, len(s), human_bytes(rec.max(n, "replay_lag_bytes")), human_secs(rec.max(n, "replay_lag_s")),
                     human_bytes(s[-1].replay_lag_bytes if s else None), sum(1 for x in s if not x.connected)])
    console.print(table(f"lag recorded to {out}", ["standby", "samples", "max replay B", "max replay s",
                                                   "last replay B", "samples away"], rows))
    ov = rec.overhead
    console.print(f"recorder overhead: {ov.samples} samples at {ov.achieved_hz:.1f} Hz over 1 connection, "
                  f"{ov.sample_ms_mean:.2f} ms per sample (max {ov.sample_ms_max:.1f} ms), "
                  f"CPU {ov.cpu_percent:.1f}% of one core, {ov.errors} failed samples")
    if rec.events:
        console.print("events: " + ", ".join(f"{e['kind']} {e.get('node') or ''}@{e['t'] - rec.started:+.1f}s"
                                             for e in rec.events))


@lag_app.command("plot")
def plot(
    file: Path = typer.Argument(..., help="A recording from `pglab lag record`."),
    out: Path = typer.Option(Path("lag.png"), "--out", "-o", help="lag.png (or .svg), or lag.html (self-contained)."),
    title: Optional[str] = typer.Option(None, "--title"),
) -> None:
    """Draw a recording: bytes and seconds behind the primary per standby, events marked."""
    from lab.replication import lagplot, lagrec  # lazy: start-up (matplotlib is slow to import)
    rec = lagrec.load(file)
    lagplot.plot(rec, out, title)
    console.print(f"wrote {out} ({len(rec.samples)} samples, {len(rec.events)} events)")

