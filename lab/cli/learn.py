"""Guided lessons: pglab learn (list, with saved progress) | pglab learn N [--yes]."""
from __future__ import annotations

import sys
import time
from datetime import datetime
from typing import Any, Optional

import typer
from rich.live import Live
from rich.markup import escape
from rich.text import Text

from lab.cli import app
from lab.cli.render import console, err_console, table
from lab.errors import InvalidInput
from lab.lessons import progress
from lab.lessons.catalog import all_lessons, lesson as find_lesson


class ConsoleLearner:
    """Narration and questions on the terminal. Interactive: `pause` waits for Enter and a question
    waits for an answer. With --yes nobody is asked: the measured answer is shown and explained."""

    def __init__(self, interactive: bool):
        self.interactive = interactive
        self.live: Live | None = None

    def _prompt(self, text: str) -> str:
        if self.live:
            self.live.stop()    # the live status line must not draw over what the learner types
        try:
            return console.input(text)
        finally:
            if self.live:
                self.live.start()

    def say(self, text: str, *, pause: bool = False) -> None:
        console.print(f"\n[bold cyan]>[/] {escape(text)}", soft_wrap=True, markup=True)
        if pause and self.interactive:
            self._prompt("  [dim](Enter to go on)[/] ")

    def ask(self, question: str) -> str | None:
        console.print(f"\n[bold yellow]?[/] {escape(question)}", soft_wrap=True, markup=True)
        if not self.interactive:
            return None
        return self._prompt("  your answer: ").strip() or None

    def answer(self, question: str, given: str | None, measured: Any, right: bool | None, explain: str) -> None:
        verdict = {None: "", True: "  [green]right[/]", False: f"  [red]not quite[/] (you said {escape(str(given))})"}[right]
        shown = f"{measured:.3g}" if isinstance(measured, float) else measured
        console.print(f"  measured: [bold]{escape(str(shown))}[/]{verdict}", markup=True)
        if explain:
            console.print(f"  {explain}", soft_wrap=True)


def _list() -> None:
    saved = progress.load()
    rows = []
    for ls in all_lessons():
        p = saved.get(ls.number)
        sc = ls.scenario()
        done = "-" if p is None else (
            ("done" if p.passed else "failed") + f", {p.runs} run(s), last {datetime.fromtimestamp(p.last):%Y-%m-%d %H:%M}"
            + (f", {p.answered_right}/{p.questions} answered right" if p.answered else ", watched (--yes)"))
        rows.append([ls.number, sc.name.split(". ", 1)[-1], done])
    console.print(table("lessons (pglab learn N runs one)", ["#", "lesson", "progress"], rows))
    console.print(f"progress is saved in {progress.progress_path()}", style="dim")


def _status_line(current: dict) -> Text:
    run = current.get("run")
    line = f"  [{time.monotonic() - current['t0']:.1f}s] {current['step']}"
    if run is not None and run.workloads:
        line += f" | writes acknowledged {run.writes_ok()}, errors {run.write_errors()}"
    if run is not None and run.last_sample:
        s = run.last_sample
        lags = []
        for node in sorted({k.split(".")[0] for k in s if "." in k}):
            lag, kept = s.get(f"{node}.replay_lag_bytes"), s.get(f"{node}.slot_retained_bytes")
            if f"{node}.replay_lag_bytes" in s:
                lags.append(f"{node} {'unknown' if lag is None else f'{lag / 1024:.0f}kB'}")
            elif kept is not None:
                # away from the primary: its slot shows how much it has missed so far
                lags.append(f"{node} away, its slot holds {kept / 1024:.0f}kB")
        line += f" | primary {s.get('primary') or 'unknown'}" + (f" | lag {', '.join(lags)}" if lags else "")
    return Text(line, style="dim")


@app.command()
def learn(
    number: Optional[int] = typer.Argument(None, help="The lesson to run (default: list them)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Run without pausing or asking (for CI)."),
    runtime: Optional[str] = typer.Option(None, "--runtime", "-r", help="auto, local or docker (default: the lesson's)."),
) -> None:
    """Guided lessons on a live lab of their own: narration, real faults, questions answered by measurement."""
    from lab.lessons.run import run_lesson  # lazy: the runner (and psycopg, workloads) only when a lesson runs
    if number is None:
        return _list()
    ls = find_lesson(number)
    if not yes and not sys.stdin.isatty():
        raise InvalidInput("a lesson asks questions and needs a terminal", f"run `pglab learn {number} --yes` to watch it without questions")
    sc = ls.scenario()
    console.print(f"[bold]Lesson {escape(sc.name)}[/]\n{escape(sc.description)}", soft_wrap=True, markup=True)
    learner = ConsoleLearner(interactive=not yes)
    steps = {s.name: s for s in sc.steps}
    current: dict = {"step": "bringing up the lab", "t0": time.monotonic(), "run": None}

    def on_step(name, run) -> None:
        if current["run"] is None:
            console.print(f"  [dim]the lesson's lab is up: watch it in another terminal with "
                          f"`pglab top --name {run.lab.name}`[/]", markup=True)
        current["step"], current["run"] = name, run
        step = steps.get(name)
        if step is not None and step.action not in ("say", "ask"):
            console.print(f"  [dim]step:[/] {step.describe()}", highlight=False, markup=True)

    with Live(get_renderable=lambda: _status_line(current), console=err_console, refresh_per_second=4,
              transient=True) as live:
        learner.live = live
        res = run_lesson(ls, learner=learner, runtime=runtime, on_step=on_step)
    failed = [s for s in res.steps if s.outcome != "ok"] + [e for e in res.expectations if not e.passed]
    if res.error:
        console.print(f"[red]the lesson could not run:[/] {escape(str(res.error))}", markup=True)
    for s in res.steps:
        if s.outcome != "ok":
            console.print(f"[red]step failed:[/] {escape(s.description)}: {escape(str(s.detail))}", markup=True)
    for e in res.expectations:
        if not e.passed:
            console.print(f"[red]expected {escape(e.text)}[/], measured {escape(str(e.actual))}", markup=True)
    verdict = "[green]lesson done[/]" if res.passed else "[red]lesson did not go as planned[/]"
    console.print(f"\n{verdict} in {res.ended - res.started:.1f} s; its lab {res.lab} was removed.", markup=True)
    if failed or res.exit_code:
        raise typer.Exit(res.exit_code or 1)
