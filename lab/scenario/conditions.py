"""The small languages of scenario files: `wait` conditions and `expect` lines (pure logic).

wait:   "primary is s2"            the servers agree s2 is the (only) primary
        "s1 is down"               role of a node: primary, standby, down, unreachable
        "standby s1 lag_bytes < 1MB"   a figure of a standby's status, with units
        "standbys caught up"       every standby has replayed everything
expect: "lost_writes == 0", "rto_s <= 4", 'primary == "s1"', "stale_reads > 0"
"""
from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from typing import Any

from lab.errors import InvalidInput

OPS = {"==": operator.eq, "!=": operator.ne, "<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}
_UNITS = {"b": 1, "kb": 1024, "mb": 1024 ** 2, "gb": 1024 ** 3, "ms": 0.001, "s": 1.0}
# short names a person writes for NodeStatus fields
FIELD_ALIASES = {"lag_bytes": "replay_lag_bytes", "lag_s": "replay_lag_s", "lag": "replay_lag_bytes",
                 "sync": "sync_state", "state": "stream_state"}
STATUS_FIELDS = ("replay_lag_bytes", "replay_lag_s", "write_lag_bytes", "write_lag_s", "flush_lag_bytes",
                 "flush_lag_s", "sync_state", "stream_state", "timeline", "slot_retained_bytes", "upstream",
                 "unrecoverable", "replay_paused")
ROLES = ("primary", "standby", "down", "unreachable")


def parse_value(text: str) -> Any:
    t = text.strip()
    if len(t) >= 2 and t[0] == t[-1] and t[0] in "\"'":
        return t[1:-1]
    if t in ("true", "false"):
        return t == "true"
    m = re.fullmatch(r"(-?\d+(?:\.\d+)?)\s*([a-zA-Z]*)", t)
    if m:
        num = float(m.group(1))
        unit = m.group(2).lower()
        if unit:
            if unit not in _UNITS:
                raise InvalidInput(f"unknown unit {m.group(2)!r} in {text!r}", "use B, kB, MB, GB, ms or s")
            num *= _UNITS[unit]
        return int(num) if num == int(num) and unit not in ("ms", "s") else num
    return t  # a bare word: a node name or a state


def _split_comparison(text: str) -> tuple[str, str, str]:
    m = re.fullmatch(r"\s*(.+?)\s*(==|!=|<=|>=|<|>)\s*(.+?)\s*", text)
    if not m:
        raise InvalidInput(f"cannot read {text!r}", f"write NAME OP VALUE with OP one of {' '.join(OPS)}")
    return m.group(1), m.group(2), m.group(3)


@dataclass(frozen=True)
class Expectation:
    text: str
    figure: str
    op: str
    value: Any
    ref: bool = False      # the value is an unquoted name: maybe another figure

    def check(self, figures: dict[str, Any]) -> tuple[bool, Any]:
        if self.figure not in figures:
            return False, None
        actual = figures[self.figure]
        want = self.value
        # an unquoted name on the right that is a figure compares two figures:
        # "async.ok_tps > sync.ok_tps"
        if isinstance(want, str) and self.ref and want in figures:
            want = figures[want]
        try:
            return bool(OPS[self.op](actual, want)), actual
        except TypeError:
            return False, actual


def parse_expectation(text: str) -> Expectation:
    figure, op, value = _split_comparison(text)
    if not re.fullmatch(r"[a-z_][a-z0-9_.]*", figure):
        raise InvalidInput(f"cannot read expectation {text!r}", "the left side is a figure name, e.g. lost_writes")
    v = value.strip()
    ref = bool(re.fullmatch(r"[a-z_][a-z0-9_.]*", v)) and v not in ("true", "false")
    return Expectation(text, figure, op, parse_value(value), ref)


@dataclass(frozen=True)
class Condition:
    text: str
    kind: str            # "primary", "role", "field", "caught_up"
    node: str | None = None
    field: str | None = None
    op: str | None = None
    value: Any = None

    def holds(self, status: Any) -> bool:
        """status: a lab.cluster.status.LabStatus."""
        if self.kind == "primary":
            return status.primaries == [self.node]
        if self.kind == "caught_up":
            return all(n.replay_lag_bytes == 0 for n in status.nodes if n.role.value == "standby")
        n = status.node(self.node)
        if self.kind == "role":
            return n.role.value == self.value
        actual = getattr(n, self.field)
        try:
            return actual is not None and bool(OPS[self.op](actual, self.value))
        except TypeError:
            return False


def parse_condition(text: str, nodes: list[str]) -> Condition:
    t = " ".join(str(text).split())
    def known(node: str) -> str:
        if node not in nodes:
            raise InvalidInput(f"wait condition {text!r} names {node!r}, which is not a node",
                               f"nodes are: {', '.join(nodes)}")
        return node
    if t in ("standbys caught up", "caught up"):
        return Condition(t, "caught_up")
    m = re.fullmatch(r"primary is ([a-z][a-z0-9-]*)", t)
    if m:
        return Condition(t, "primary", known(m.group(1)))
    m = re.fullmatch(r"([a-z][a-z0-9-]*) is ([a-z]+)", t)
    if m:
        if m.group(2) not in ROLES:
            raise InvalidInput(f"wait condition {text!r}: unknown role {m.group(2)!r}", f"use one of {', '.join(ROLES)}")
        return Condition(t, "role", known(m.group(1)), value=m.group(2))
    m = re.fullmatch(r"(?:standby )?([a-z][a-z0-9-]*) (.+)", t)
    if m:
        node = known(m.group(1))
        field, op, value = _split_comparison(m.group(2))
        field = FIELD_ALIASES.get(field, field)
        if field not in STATUS_FIELDS:
            raise InvalidInput(f"wait condition {text!r}: unknown figure {field!r}",
                               f"use one of {', '.join(sorted(set(FIELD_ALIASES) | set(STATUS_FIELDS)))}")
        return Condition(t, "field", node, field, op, parse_value(value))
    raise InvalidInput(f"cannot read wait condition {text!r}",
                       "write e.g. 'primary is s2', 's1 is down', 'standby s1 lag_bytes < 1MB', 'standbys caught up'")
