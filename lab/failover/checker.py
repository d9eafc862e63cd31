"""Jepsen's set checker over the ledger: which acknowledged writes survived a failover.

Every write has one outcome: ok (COMMIT acknowledged), fail (certainly not committed: the server
refused it before a COMMIT), unknown (the connection was lost around the COMMIT; it may or may not
have committed, so it is never counted as a failure), ok_unreplicated (COMMIT returned, but with the
WARNING that the wait for synchronous replication was cancelled: committed locally only).

Against the ids finally present on the (new) primary:
  lost        = ok − final                   acknowledged, then gone: the cost of the failover
  unexpected  = final − attempted            never written by us: a checker/lab error
  recovered   = final ∩ unknown              indeterminate writes that did commit
  failed_present = final ∩ fail              "definitely not committed", yet there: an error too
  lost_unreplicated = ok_unreplicated − final   counted apart: the client was warned
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

OUTCOMES = ("ok", "fail", "unknown", "ok_unreplicated")


@dataclass(frozen=True)
class SetCheck:
    attempted: int
    ok: int
    fail: int
    unknown: int
    ok_unreplicated: int
    final: int
    lost: tuple[str, ...]
    lost_unreplicated: tuple[str, ...]
    unexpected: tuple[str, ...]
    recovered: tuple[str, ...]
    failed_present: tuple[str, ...]

    @property
    def valid(self) -> bool:
        """No acknowledged write lost and nothing the checker cannot explain."""
        return not self.lost and not self.unexpected and not self.failed_present

    @property
    def checker_error(self) -> bool:
        return bool(self.unexpected or self.failed_present)

    def to_dict(self) -> dict:
        return {"attempted": self.attempted, "ok": self.ok, "fail": self.fail, "unknown": self.unknown,
                "ok_unreplicated": self.ok_unreplicated, "final": self.final, "lost": len(self.lost),
                "lost_unreplicated": len(self.lost_unreplicated), "unexpected": len(self.unexpected),
                "recovered": len(self.recovered), "failed_present": len(self.failed_present),
                "valid": self.valid, "lost_ids": list(self.lost[:50]), "unexpected_ids": list(self.unexpected[:50])}


def check(ops: Iterable[tuple[str, str]], final: Iterable[str]) -> SetCheck:
    """ops: (id, outcome) for every attempted write; final: the ids read back after healing."""
    by: dict[str, set[str]] = {o: set() for o in OUTCOMES}
    attempted: set[str] = set()
    for op_id, outcome in ops:
        attempted.add(op_id)
        by.setdefault(outcome, set()).add(op_id)
    fin = set(final)
    return SetCheck(
        attempted=len(attempted), ok=len(by["ok"]), fail=len(by["fail"]), unknown=len(by["unknown"]),
        ok_unreplicated=len(by["ok_unreplicated"]), final=len(fin & attempted),
        lost=tuple(sorted(by["ok"] - fin)), lost_unreplicated=tuple(sorted(by["ok_unreplicated"] - fin)),
        unexpected=tuple(sorted(fin - attempted)), recovered=tuple(sorted(fin & by["unknown"])),
        failed_present=tuple(sorted(fin & by["fail"])))
