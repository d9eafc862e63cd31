"""Where the lessons are and what each is: `scenarios/lessons/NN-slug.yaml`, numbered by file name."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from lab.errors import InvalidInput
from lab.scenario.spec import Scenario, load_scenario

_FILE = re.compile(r"^(\d+)-([\w-]+)\.ya?ml$")


def lessons_dir() -> Path:
    """$PGLAB_LESSONS, else scenarios/lessons beside the `lab` package (a source checkout)."""
    env = os.environ.get("PGLAB_LESSONS")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "scenarios" / "lessons"


@dataclass(frozen=True)
class Lesson:
    number: int
    slug: str
    path: Path

    @property
    def title(self) -> str:
        return self.scenario().name

    def scenario(self) -> Scenario:
        return load_scenario(self.path)


def all_lessons(directory: Path | None = None) -> list[Lesson]:
    d = directory or lessons_dir()
    if not d.is_dir():
        raise InvalidInput(f"no lessons directory at {d}", "set PGLAB_LESSONS to the scenarios/lessons directory")
    out = []
    for p in d.iterdir():
        m = _FILE.match(p.name)
        if m:
            out.append(Lesson(int(m.group(1)), m.group(2), p))
    return sorted(out, key=lambda x: x.number)


def lesson(number: int, directory: Path | None = None) -> Lesson:
    found = {x.number: x for x in all_lessons(directory)}
    if number not in found:
        raise InvalidInput(f"there is no lesson {number}",
                           f"lessons are {min(found)}-{max(found)}; `pglab learn` lists them" if found else "")
    return found[number]
