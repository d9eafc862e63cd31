"""pglab bench ha: the failover managers side by side, each on a lab of its own (lab.bench.ha)."""
from __future__ import annotations

import json
from pathlib import Path

import typer

from lab.bench.haplan import BenchOptions
from lab.cli.bench import bench_app
from lab.cli.core import JsonOpt
from lab.cli.render import console, err_console, print_json, table
from lab.errors import InvalidInput


def _out(path: Path | None, option: str, suffix: str | None = None) -> None:
    """An output file's place is checked before any lab starts (a run takes minutes)."""
    if path is None:
        return
    if suffix and path.suffix.lower() != suffix:
        raise InvalidInput(f"{option} {path}: the chart is written as PNG", f"name it with {suffix}")
    if not path.parent.is_dir():
        raise InvalidInput(f"{option} {path}: no directory {path.parent}", "create it first or write elsewhere")


_D = BenchOptions()   # unset options: the whole table


def _saved(path: Path):
    from lab.bench import hareport  # lazy: as in ha()
    try:
        text = path.read_text()
    except OSError as e:
        raise InvalidInput(f"--from {path}: {e.strerror.lower() if e.strerror else e}", "give a file saved from --json") from None
    try:
        data = json.loads(text[text.index("{"):])
    except ValueError:
        raise InvalidInput(f"--from {path}: no JSON in it", "give the file a run's --json output was saved to") from None
    return hareport.from_json(data, f"--from {path}")


@bench_app.command("ha")
def ha(
    managers: str = typer.Option(",".join(_D.managers), "--managers",
                                 help="Comma-separated: none, pglab, patroni, pg_auto_failover, repmgr."),
    profiles: str = typer.Option(",".join(_D.profiles), "--profiles",
                                 help="Timing profiles (Patroni, pg_auto_failover, repmgr): default, fast."),
    faults: str = typer.Option(",".join(_D.faults), "--faults",
                               help="Comma-separated: kill, kill-postgres, stop, partition, isolate, pause-short, "
                                    "pause-long."),
    modes: str = typer.Option(",".join(_D.modes), "--modes", help="Replication during the drill: sync, async."),
    repeat: int = typer.Option(_D.repeat, "--repeat", help="Drills per cell (1-20); the floor is measured as often."),
    runtime: str = typer.Option(_D.runtime, "--runtime", help="local or docker."),
    jobs: int = typer.Option(_D.jobs, "--jobs", help="Labs of Patroni, pg_auto_failover and repmgr run this many at a "
                                                     "time (1-4; their failovers wait on timers). none and pglab always "
                                                     "run alone."),
    markdown: Path | None = typer.Option(None, "--markdown", help="Also write the table as Markdown to FILE."),
    chart: Path | None = typer.Option(None, "--chart", help="Also write a PNG chart of RTO to FILE.png."),
    keep_logs: Path | None = typer.Option(None, "--keep-logs", help="Copy each lab's logs (servers, the manager's "
                                                                   "agents, events) into DIR/<lab> before it goes "
                                                                   "down: to find out afterwards why a drill went "
                                                                   "wrong."),
    from_file: Path | None = typer.Option(None, "--from", help="Run nothing: show the run saved in FILE by --json "
                                                               "(its table, --markdown, --chart)."),
    as_json: bool = JsonOpt,
) -> None:
    """Failover managers side by side (unset options: all of them, about an hour): for each
    manager x profile x fault x mode, the same failover drill on a lab of its own; client-observed
    RTO (median, max), lost and unexpected acknowledged writes, false failovers, and a floor
    measured in the same run. Labs are brought down at the end."""
    from lab.bench import ha as bench_ha  # lazy: start-up (starting labs imports most of pglab)
    from lab.bench import haplan, hareport  # lazy: as above
    opts = haplan.options(managers=managers, profiles=profiles, faults=faults, modes=modes, repeat=repeat,
                          runtime=runtime, jobs=jobs)
    _out(markdown, "--markdown")
    _out(chart, "--chart", ".png")
    if keep_logs is not None and not keep_logs.is_dir():
        raise InvalidInput(f"--keep-logs {keep_logs}: no such directory", "create it first")
    if from_file is not None:
        res = _saved(from_file)
    else:
        res = bench_ha.run(opts, say=lambda s: err_console.print(s, style="dim", highlight=False, markup=False),
                           keep_logs=keep_logs)
    if markdown:
        markdown.write_text(hareport.markdown(res))
    if chart:
        hareport.write_chart(res, chart)
    if as_json:
        print_json(res)
        return
    console.print(table("failover managers side by side", hareport.HEAD, hareport.table(res)))
    console.print(hareport.floor_line(res), highlight=False)
    console.print("\n".join(hareport.text_chart(res)), highlight=False, markup=False)
