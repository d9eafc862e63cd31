"""Checkers for the anomalies of reading from lagging followers. Pure logic over a history.

A history is what a workload recorded: writes (who wrote which key, when they were
acknowledged) and reads (who read, what they saw, when the read started). The checkers
do not talk to a database, so they are unit-tested on hand-written histories and then
used unchanged on histories recorded against real clusters.

- read-after-write: a user's read misses a key that the same user's write had already
  been acknowledged for before the read started ("my comment vanished").
- monotonic reads:  a user's later read shows an older state than an earlier one
  ("time went backwards"); states are compared by a number that only grows (a counter).
- consistent prefix: a read shows an effect but not its cause ("the answer before the
  question"); causes are given as a map effect -> cause.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Hashable, Iterable, Mapping


@dataclass(frozen=True)
class Write:
    user: str
    key: Hashable
    acked_at: float          # when the write's commit was acknowledged to the user


@dataclass(frozen=True)
class Read:
    user: str
    seen: frozenset          # the keys the read returned (read-after-write, prefix)
    started_at: float
    value: int | None = None  # a monotonically growing state number (monotonic reads)
    node: str | None = None   # who answered (for the report)


@dataclass(frozen=True)
class Anomaly:
    kind: str                # 'read-after-write' | 'monotonic' | 'consistent-prefix'
    user: str
    detail: str
    node: str | None = None


def read_after_write(writes: Iterable[Write], reads: Iterable[Read]) -> list[Anomaly]:
    """Every read must contain every key its own user wrote (acknowledged) before the read began."""
    by_user: dict[str, list[Write]] = defaultdict(list)
    for w in writes:
        by_user[w.user].append(w)
    out = []
    for r in reads:
        missing = [w.key for w in by_user.get(r.user, ()) if w.acked_at <= r.started_at and w.key not in r.seen]
        if missing:
            out.append(Anomaly("read-after-write", r.user, f"missing own write(s) {sorted(map(str, missing))}", r.node))
    return out


def monotonic(reads: Iterable[Read]) -> list[Anomaly]:
    """Per user, in the order the reads started: a value below the highest already seen is a step back."""
    best: dict[str, tuple[int, str | None]] = {}
    out = []
    for r in sorted((r for r in reads if r.value is not None), key=lambda r: r.started_at):
        prev = best.get(r.user)
        if prev is not None and r.value < prev[0]:
            out.append(Anomaly("monotonic", r.user,
                               f"saw {r.value} after {prev[0]} (from {prev[1]}): time went backwards", r.node))
        else:
            best[r.user] = (r.value, r.node)
    return out


def consistent_prefix(reads: Iterable[Read], causes: Mapping[Hashable, Hashable]) -> list[Anomaly]:
    """A read that contains an effect must contain its cause (transitively)."""
    out = []
    for r in reads:
        for effect in r.seen:
            cause = causes.get(effect)
            while cause is not None:
                if cause not in r.seen:
                    out.append(Anomaly("consistent-prefix", r.user, f"saw {effect!s} without {cause!s}", r.node))
                    break
                cause = causes.get(cause)
    return out
