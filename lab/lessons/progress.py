"""Saved progress: which lessons a learner finished, when, and how many answers were right.

One small JSON file: $PGLAB_PROGRESS, else $XDG_STATE_HOME/pglab/lessons.json (~/.local/state/…),
so it outlives the labs (which live under /tmp) and a reboot."""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path


def progress_path() -> Path:
    env = os.environ.get("PGLAB_PROGRESS")
    if env:
        return Path(env)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "pglab" / "lessons.json"


@dataclass(frozen=True)
class Progress:
    runs: int = 0
    passed: bool = False          # the last run's steps and expectations all held
    last: float = 0.0             # unix time of the last run
    seconds: float = 0.0          # how long the last run took
    questions: int = 0
    answered_right: int = 0       # in the last run
    answered: int = 0             # questions the learner answered in the last run (0 with --yes)


def load() -> dict[int, Progress]:
    p = progress_path()
    try:
        raw = json.loads(p.read_text())
    except (OSError, ValueError):
        return {}
    return {int(k): Progress(**v) for k, v in raw.items()}


def record(number: int, *, passed: bool, seconds: float, questions: int, answered_right: int,
           answered: int) -> Progress:
    allp = load()
    prev = allp.get(number, Progress())
    allp[number] = Progress(prev.runs + 1, passed, time.time(), round(seconds, 1), questions, answered_right,
                            answered)
    p = progress_path()
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps({str(k): asdict(v) for k, v in sorted(allp.items())}, indent=1))
    os.replace(tmp, p)
    return allp[number]
