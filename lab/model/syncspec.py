"""synchronous_standby_names as a value: parse, check against the topology, render."""
from __future__ import annotations

import re
from dataclasses import dataclass

from lab.errors import InvalidInput

_SPEC_RE = re.compile(r"^\s*(?:(FIRST|ANY)\s+)?(\d+)\s*\((.*)\)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class SyncSpec:
    method: str  # "FIRST" or "ANY"; "" means asynchronous replication
    num: int
    names: tuple[str, ...]

    @property
    def is_async(self) -> bool:
        return not self.method

    def render(self) -> str:
        if self.is_async:
            return ""
        return f"{self.method} {self.num} ({', '.join(_quote(n) for n in self.names)})"

    def without(self, gone: set[str]) -> "SyncSpec":
        """The same rule over the names that are still standbys (used after a promotion)."""
        names = tuple(n for n in self.names if n not in gone)
        if self.is_async or not names:
            return ASYNC
        return SyncSpec(self.method, min(self.num, len(names)), names)


ASYNC = SyncSpec("", 0, ())


def _quote(name: str) -> str:
    # application names with '-' must be double-quoted in synchronous_standby_names
    return name if re.match(r"^[a-z_][a-z0-9_]*$", name) else f'"{name}"'


def slot_name(node: str) -> str:
    """The physical replication slot of a standby (slot names allow [a-z0-9_] only)."""
    return node.replace("-", "_")


def parse_sync(text: str | None, standbys: list[str]) -> SyncSpec:
    """Parse FIRST k (a, b) / ANY k (a, b) / 'ANY 1' (all standbys) / '' or 'none' (async).

    A bare list "a, b" means FIRST 1 (a, b), as PostgreSQL reads it.
    """
    if text is None or text.strip().lower() in ("", "none", "async", "off"):
        return ASYNC
    text = text.strip()
    bare = re.match(r"^(FIRST|ANY)\s+(\d+)$", text, re.IGNORECASE)
    if bare:
        text = f"{bare.group(1)} {bare.group(2)} ({', '.join(standbys)})"
    m = _SPEC_RE.match(text)
    if m:
        method = (m.group(1) or "FIRST").upper()
        num = int(m.group(2))
        names = tuple(n.strip().strip('"') for n in m.group(3).split(",") if n.strip())
    elif re.match(r"^[a-z0-9, \-\"]+$", text):
        method, num = "FIRST", 1
        names = tuple(n.strip().strip('"') for n in text.split(",") if n.strip())
    else:
        raise InvalidInput(
            f"cannot read synchronous_standby_names {text!r}",
            "write FIRST k (s1, s2), ANY k (s1, s2), 'ANY 1' for all standbys, or 'none'",
        )
    unknown = [n for n in names if n not in standbys]
    if unknown:
        raise InvalidInput(
            f"synchronous_standby_names names {', '.join(unknown)}, which is not a standby",
            f"the standbys are: {', '.join(standbys) or 'none'}",
        )
    if not names or num < 1 or num > len(names):
        raise InvalidInput(
            f"synchronous_standby_names {text!r} asks for {num} of {len(names)} standbys",
            "k must be between 1 and the number of names",
        )
    return SyncSpec(method, num, names)


#: the rules `pglab bench commit` compares by default
BENCH_SPECS = ("none", "FIRST 1 (s1)", "ANY 1 (s1, s2)", "FIRST 2 (s1, s2)")
