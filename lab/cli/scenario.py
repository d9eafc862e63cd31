"""Scripted drills: pglab scenario list | show FILE | run FILE…"""
from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.live import Live
from rich.text import Text

from lab.errors import LabError
from lab.cli.root import app
from lab.cli.render import console, err_console, print_json, table

scenario_app = typer.Typer(no_args_is_help=True, help="Scripted drills: scenario files with steps and expectations.")
app.add_typer(scenario_app, name="scenario")


@scenario_app.command("list")
def list_(directory: Path = typer.Argument(Path("scenarios"), help="Where the scenario files are.")) -> None:
    """Name, one-line description and topology of every scenario in a directory."""
    from lab.scenario.spec import load_scenario  # lazy: start-up
    rows = []
    for f in sorted(directory.glob("*.yaml")):
        try:
            sc = load_scenario(f)
            t = sc.topology
            rows.append([f.name, sc.description[:90], f"{len(t.nodes)} nodes, sync: {t.sync.render() or 'none'}"])
        except LabError as e:
            rows.append([f.name, f"INVALID: {e.line()}", ""])
    console.print(table(None, ["file", "what it shows", "topology"], rows))


@scenario_app.command()
def show(file: Path = typer.Argument(..., help="A scenario file.")) -> None:
    """The resolved plan of a scenario, without starting anything."""
    from lab.scenario.spec import load_scenario  # lazy: start-up
    sc = load_scenario(file)
    console.print(Text.assemble((sc.name, "bold"), f": {sc.description}"))
    t = sc.topology
    console.print(f"topology: primary {t.primary.name}; standbys {', '.join(s.name for s in t.standbys) or 'none'}; "
                  f"synchronous_standby_names '{t.sync.render()}'; synchronous_commit {t.synchronous_commit}"
                  + (f"; settings {dict(t.settings)}" if t.settings else ""))
    console.print(f"runtime: {sc.runtime or 'auto (or --runtime)'}")
    console.print(table("steps", ["#", "line", "step", "timeout"],
                        [[i, s.line, s.describe(), s.timeout] for i, s in enumerate(sc.steps, 1)]))
    console.print(table("expectations", ["expect"], [[e.text] for e in sc.expect]))


@scenario_app.command()
def run(
    files: List[Path] = typer.Argument(..., help="Scenario files."),
    runtime: Optional[str] = typer.Option(None, "--runtime", "-r", help="auto, local or docker (default: the file's)."),
    keep: bool = typer.Option(False, "--keep", help="Keep the lab after the run (print how to reach it)."),
    report: Optional[Path] = typer.Option(None, "--report", help="Write report.json, report.md and a chart here."),
    junit_xml: Optional[Path] = typer.Option(None, "--junit-xml", help="Write a JUnit XML file (one case per expectation)."),
    timeout_multiplier: float = typer.Option(1.0, "--timeout-multiplier", min=0.1, help="Scale every timeout (slow machines)."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Run scenarios against fresh labs; exit 0 when every expectation holds, 1 when one fails,
    2 when a scenario is invalid or its lab cannot start."""
    from lab.scenario.report import to_dict, write_junit, write_report  # lazy: start-up
    from lab.scenario.runner import run_scenario  # lazy: start-up
    from lab.scenario.spec import load_scenario  # lazy: start-up
    scenarios = [load_scenario(f) for f in files]   # validate all before running any
    results = []
    for sc in scenarios:
        current = {"step": "starting the lab", "t0": time.monotonic(), "run": None}

        def on_step(name, run, current=current):
            current["step"], current["run"] = name, run

        def view(current=current, sc=sc) -> Text:
            el = time.monotonic() - current["t0"]
            line = f"{sc.name}: {current['step']}  [{el:.1f}s]"
            run_ = current["run"]
            if run_ is not None and run_.workloads:
                line += f"  writes ok: {run_.writes_ok()}, errors: {run_.write_errors()}"
            if run_ is not None and run_.last_sample:
                sample = run_.last_sample
                lags = [f"{k.split('.')[0]} {sample[k] / 1024:.0f}kB"
                        for k in sorted(sample) if k.endswith(".replay_lag_bytes") and sample[k] is not None]
                if lags:
                    line += "  lag: " + ", ".join(lags)
            return Text(line)

        if as_json:
            res = run_scenario(sc, runtime=runtime, keep=keep, timeout_multiplier=timeout_multiplier, on_step=on_step)
        else:
            with Live(get_renderable=view, console=err_console, refresh_per_second=4, transient=True):
                res = run_scenario(sc, runtime=runtime, keep=keep, timeout_multiplier=timeout_multiplier,
                                   on_step=on_step)
        results.append(res)
        if report:
            write_report(res, report / sc.name if len(scenarios) > 1 else report)
        if not as_json:
            _print_result(res, keep)
    if junit_xml:
        write_junit(results, junit_xml)
    if as_json:
        print_json([to_dict(r) for r in results])
    codes = [r.exit_code for r in results]
    raise typer.Exit(2 if 2 in codes else (1 if 1 in codes else 0))


def _print_result(res, keep: bool) -> None:
    verdict = {0: ("PASSED", "green"), 1: ("FAILED", "red"), 2: ("COULD NOT RUN", "red")}[res.exit_code]
    console.print(Text.assemble(verdict, f" {res.scenario} ({res.runtime}, {res.ended - res.started:.1f} s)"))
    if res.error:
        console.print(f"  {res.error}", markup=False)
    for s in res.steps:
        mark = "ok " if s.outcome == "ok" else "FAIL"
        console.print(f"  {mark} {s.description}  ({s.ended - s.started:.2f}s)"
                      + (f"  {s.detail}" if s.detail else ""), markup=False, highlight=False)
    for e in res.expectations:
        mark = "ok " if e.passed else "FAIL"
        console.print(f"  {mark} expect {e.text}" + ("" if e.passed else f"  (expected {e.expected}, actual {e.actual})"),
                      markup=False)
    if keep:
        console.print(f"  lab kept: pglab status --name {res.lab}; pglab down --name {res.lab}")
