"""Lesson steps: narration (`say`) and questions answered by a measured figure (`ask`).

    - say: "s1 is about to stop. Watch the ledger keep acknowledging writes."
    - ask: "How many acknowledged writes did the failover lose?"
      answer: lost_writes        # a figure measured earlier in the run
      tolerance: 0               # absolute; "10%" is relative to the measured value
      explain: "{lost_writes} writes were acknowledged by p1 but never reached s1."

`{figure}` in any text is replaced by the figure measured so far ("unknown" when it was not).
Who reads the narration and answers is the run's `learner` (the CLI; none in a scenario run, and
then narration is only recorded and a question is answered by no one).
"""
from __future__ import annotations

import re
from typing import Any, Protocol

from lab.errors import InvalidInput, LabError

_FIGURE = re.compile(r"\{([A-Za-z_][\w.]*)(?::([^{}]*))?\}")


class Learner(Protocol):
    def say(self, text: str, *, pause: bool = False) -> None: ...

    def ask(self, question: str) -> str | None:
        """The learner's answer, or None when nobody answers (--yes)."""

    def answer(self, question: str, given: str | None, measured: Any, right: bool | None, explain: str) -> None:
        """Show the measured answer, whether the learner's was right, and why."""


def render(text: str, figures: dict[str, Any]) -> str:
    """Replace {figure} and {figure:.1f} by measured values; never invent a value."""
    def sub(m: re.Match) -> str:
        v = figures.get(m.group(1))
        if v is None:
            return "unknown"
        try:
            return format(v, m.group(2)) if m.group(2) else str(v)
        except (ValueError, TypeError):
            return str(v)
    return _FIGURE.sub(sub, text)


def parse_tolerance(tol: Any) -> tuple[float, bool]:
    """(amount, relative?) from 0, 2.5 or '10%'."""
    if tol is None:
        return 0.0, False
    s = str(tol).strip()
    try:
        if s.endswith("%"):
            return float(s[:-1]) / 100, True
        return float(s), False
    except ValueError:
        raise InvalidInput(f"tolerance {tol!r} is not a number", "e.g. tolerance: 0, 5 or '10%'") from None


def judge(given: str | None, measured: Any, tolerance: Any = 0) -> bool | None:
    """Is the learner's answer the measured one? None when nobody answered. Numbers are compared
    within the tolerance; anything else as text, ignoring case."""
    if given is None or given.strip() == "":
        return None
    amount, relative = parse_tolerance(tolerance)
    if isinstance(measured, bool) or not isinstance(measured, (int, float)):
        return given.strip().lower() == str(measured).strip().lower()
    try:
        g = float(given.strip().rstrip("%").replace(",", ""))
    except ValueError:
        return False
    allowed = abs(measured) * amount if relative else amount
    return abs(g - float(measured)) <= allowed + 1e-9


def say(run, step) -> str:
    text = render(str(step.arg), run.figures)
    if run.learner is not None:
        run.learner.say(text, pause=bool(step.options.get("pause", False)))
    return text


def ask(run, step) -> str:
    figure = str(step.options["answer"])
    measured = run.figures.get(figure)
    if measured is None:
        raise LabError(f"the answer to {step.arg!r} is the figure {figure!r}, which this run did not measure",
                       "a step before the question must measure it")
    question = render(str(step.arg), run.figures)
    given = run.learner.ask(question) if run.learner is not None else None
    verdict = judge(given, measured, step.options.get("tolerance", 0))
    with run.lock:
        run.figures["questions"] = run.figures.get("questions", 0) + 1
        if verdict is not None:
            run.figures["answered"] = run.figures.get("answered", 0) + 1
        if verdict:
            run.figures["answered_right"] = run.figures.get("answered_right", 0) + 1
    explain = render(str(step.options.get("explain", "")), run.figures)
    if run.learner is not None:
        run.learner.answer(question, given, measured, verdict, explain)
    said = "no answer" if verdict is None else ("right" if verdict else f"wrong ({given})")
    return f"measured {figure} = {measured}; {said}"
