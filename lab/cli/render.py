"""Rendering results: rich tables for people, JSON for scripts."""
from __future__ import annotations

import dataclasses
import json
from enum import Enum
from typing import Any

from rich.console import Console
from rich.table import Table

import sys

# Not a terminal (a pipe, a CI log): don't squeeze tables into 80 columns. Messages hold names,
# paths and settings with brackets ("[postgres]", "[[nodes]]"): print text literally (markup=False);
# styles go through rich Text.
console = Console(highlight=False, markup=False, width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, highlight=False, markup=False, width=None if sys.stderr.isatty() else 160)


def to_jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        if hasattr(obj, "to_dict"):
            return to_jsonable(obj.to_dict())
        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    return obj


def print_json(obj: Any) -> None:
    # plain print: rich would wrap long lines and break the JSON for scripts
    print(json.dumps(to_jsonable(obj), indent=2))


def human_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def human_secs(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s * 1000:.0f}ms" if s < 1 else f"{s:.2f}s"


def table(title: str | None, columns: list[str], rows: list[list[Any]], no_wrap: bool = False) -> Table:
    t = Table(title=title, title_justify="left", header_style="bold", pad_edge=False)
    for c in columns:
        t.add_column(c, overflow="fold", no_wrap=no_wrap)
    for r in rows:
        t.add_row(*["-" if v is None else str(v) for v in r])
    return t
