"""Running one lesson: its scenario on a fresh lab of its own (torn down after), with a learner
reading the narration and answering; the progress is saved."""
from __future__ import annotations

import uuid
from typing import Callable

from lab.lessons import progress
from lab.lessons.catalog import Lesson
from lab.scenario.runner import RunResult, run_scenario


def run_lesson(lesson: Lesson, *, learner=None, runtime: str | None = None,
               on_step: Callable | None = None, timeout_multiplier: float = 1.0) -> RunResult:
    sc = lesson.scenario()
    res = run_scenario(sc, runtime=runtime, learner=learner, on_step=on_step, timeout_multiplier=timeout_multiplier,
                       name=f"learn{lesson.number}-{uuid.uuid4().hex[:4]}")
    progress.record(lesson.number, passed=res.passed, seconds=res.ended - res.started,
                    questions=int(res.figures.get("questions", 0)),
                    answered_right=int(res.figures.get("answered_right", 0)),
                    answered=int(res.figures.get("answered", 0)))
    return res
