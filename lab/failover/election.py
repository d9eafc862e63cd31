"""Choosing the standby to promote: pure logic over a table of candidates (no servers here).

The rules, as leader-follower replication prescribes and as Patroni / pg_auto_failover / repmgr
apply them (ideas carried over, not code):

1. Only reachable standbys take part; a node that answers as a primary is not a candidate, and a
   priority of 0 means "never promote this node" (Patroni's nofailover tag).
2. The most advanced wins: highest timeline first (a node left on an older timeline missed a
   promotion), then the furthest WAL position, then the higher priority, then the name (stable).
   The position is max(receive, replay): WAL a standby has received but not replayed yet is
   replayed during promotion, so it is not lost (Patroni compares the same figure).
3. Data-loss guard: the winner must be within `max_lag_bytes` of the best position anyone knows:
   the other candidates', and the old primary's last sampled position (`LastSeen`: what the lab's
   status, monitor or lag recorder last read of pg_current_wal_lsn(), with its age). Otherwise the
   election is refused unless `allow_data_loss` (Patroni's maximum_lag_on_failover;
   pg_auto_failover's guard_data_loss refuses to elect until it knows every node's LSN).
   The old primary was at least at its last sampled position when it was sampled, so the estimate
   "last seen - winner" is a LOWER bound of the WAL the promotion throws away: whatever the
   primary wrote during the age of the sample comes on top. A position never sampled leaves the
   loss unknown (None), never 0.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum

from lab.errors import InvalidInput
from lab.model import lsn as lsn_mod


class Verdict(str, Enum):
    ELECTED = "elected"
    CANDIDATE = "candidate"        # eligible, but another was more advanced
    UNREACHABLE = "unreachable"
    NOT_STANDBY = "not a standby"
    OLD_TIMELINE = "old timeline"
    NO_FAILOVER = "priority 0"
    TOO_FAR_BEHIND = "too far behind"


@dataclass(frozen=True)
class Candidate:
    name: str
    reachable: bool
    in_recovery: bool | None = None
    timeline: int | None = None
    receive_lsn: str | None = None
    replay_lsn: str | None = None
    priority: int = 100
    error: str | None = None

    @property
    def position(self) -> int | None:
        """The WAL this standby would have after promotion: max(received, replayed)."""
        vals = [p for p in (lsn_mod.parse(self.receive_lsn), lsn_mod.parse(self.replay_lsn)) if p is not None]
        return max(vals) if vals else None


@dataclass(frozen=True)
class LastSeen:
    """The old primary's last sampled WAL position: the best a real operator knows once it failed."""
    node: str
    lsn: str
    timeline: int | None = None
    age_s: float | None = None     # how long before the election it was sampled (None: not known)
    source: str = "the caller"     # pglab status, the monitor, the lag recorder, or a caller of the API

    def where(self) -> str:
        age = f", {self.age_s:.1f} s before the election" if self.age_s is not None else ""
        return f"{self.node} was last seen at {self.lsn}{age} (by {self.source})"


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "unknown"
    return f"{n} B" if abs(n) < 1024 else (f"{n / 1024:.1f} kB" if abs(n) < 1 << 20 else f"{n / (1 << 20):.1f} MB")


@dataclass(frozen=True)
class Row:
    """One line of the table the decision was made from."""
    candidate: Candidate
    verdict: Verdict
    lag_bytes: int | None    # behind the best known position


@dataclass(frozen=True)
class Decision:
    winner: str | None
    rows: tuple[Row, ...]
    best_position: str | None        # the best WAL position anyone knew (standbys or old primary)
    reason: str
    refused: bool = False
    # best known position minus the chosen candidate's: a lower bound of the WAL lost. None when
    # nothing is known beyond the candidate itself (the old primary's position never sampled)
    data_loss_bytes: int | None = None
    allow_data_loss: bool = False
    max_lag_bytes: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)
    seen: LastSeen | None = None          # the old primary's last sampled position, if any
    seen_used: bool = False               # it was comparable (same or newer timeline) and counted
    chosen: str | None = None             # the candidate the guard judged (the winner, or the refused one)
    chosen_position: str | None = None

    @property
    def loss_line(self) -> str:
        """What the guard knew, in one sentence: "p1 was last seen at 0/5A3C000, 0.4 s before the
        election (by the monitor); s1 has 0/5A1F000: at least 118.0 kB of WAL would be lost"."""
        if self.chosen is None:
            return self.seen.where() if self.seen else "the old primary's position was never sampled"
        has = f"{self.chosen} has {self.chosen_position}"
        if self.seen is None:
            tail = ("the old primary's position was never sampled: the loss is unknown"
                    if not self.data_loss_bytes else
                    f"another standby is {fmt_bytes(self.data_loss_bytes)} ahead: at least that is lost")
            return f"{has}; {tail}"
        if not self.seen_used:
            return (f"{self.seen.where()} on timeline {self.seen.timeline}, older than the candidates': "
                    f"not comparable; {has}: the loss is unknown")
        lost = self.data_loss_bytes or 0
        more = f" (plus whatever {self.seen.node} wrote after it was last seen)"
        if lost == 0:
            return f"{self.seen.where()}; {has}: nothing seen is missing{more}"
        return f"{self.seen.where()}; {has}: at least {fmt_bytes(lost)} of WAL would be lost{more}"

    def row(self, name: str) -> Row:
        for r in self.rows:
            if r.candidate.name == name:
                return r
        raise InvalidInput(f"{name!r} was not a candidate of this election",
                           f"candidates were: {', '.join(r.candidate.name for r in self.rows)}")

    def to_dict(self) -> dict:
        return {
            "winner": self.winner, "refused": self.refused, "reason": self.reason,
            "best_position": self.best_position, "data_loss_bytes": self.data_loss_bytes,
            "allow_data_loss": self.allow_data_loss, "max_lag_bytes": self.max_lag_bytes,
            "notes": list(self.notes), "loss_line": self.loss_line,
            "seen": None if self.seen is None else {"node": self.seen.node, "lsn": self.seen.lsn,
                                                    "timeline": self.seen.timeline, "age_s": self.seen.age_s,
                                                    "source": self.seen.source, "used": self.seen_used},
            "chosen": self.chosen, "chosen_position": self.chosen_position,
            "table": [{"node": r.candidate.name, "verdict": r.verdict.value, "reachable": r.candidate.reachable,
                       "timeline": r.candidate.timeline, "receive_lsn": r.candidate.receive_lsn,
                       "replay_lsn": r.candidate.replay_lsn, "priority": r.candidate.priority,
                       "lag_bytes": r.lag_bytes, "error": r.candidate.error} for r in self.rows],
        }


DEFAULT_MAX_LAG_BYTES = 1024 * 1024   # Patroni's default maximum_lag_on_failover is 1 MB too


def elect(candidates: list[Candidate] | tuple[Candidate, ...], *, max_lag_bytes: int = DEFAULT_MAX_LAG_BYTES,
          allow_data_loss: bool = False, to: str | None = None, known_position: str | None = None,
          known_timeline: int | None = None, seen: LastSeen | None = None) -> Decision:
    """Choose a standby to promote, or refuse. `to` forces a candidate (still subject to the guard);
    `seen` is the old primary's last sampled position (`known_position` / `known_timeline` are the
    same without a name or an age)."""
    if seen is None and known_position:
        seen = LastSeen("the old primary", known_position, known_timeline)
    known_position = seen.lsn if seen else None
    known_timeline = seen.timeline if seen else None
    eligible: list[Candidate] = []
    verdicts: dict[str, Verdict] = {}
    for c in candidates:
        if not c.reachable:
            verdicts[c.name] = Verdict.UNREACHABLE
        elif c.in_recovery is False:
            verdicts[c.name] = Verdict.NOT_STANDBY
        elif c.priority <= 0 and c.name != to:
            verdicts[c.name] = Verdict.NO_FAILOVER
        elif c.position is None:
            verdicts[c.name] = Verdict.UNREACHABLE
        else:
            eligible.append(c)
    top_tl = max([c.timeline or 0 for c in eligible] + [known_timeline or 0], default=0)
    for c in list(eligible):
        if (c.timeline or 0) < top_tl:
            verdicts[c.name] = Verdict.OLD_TIMELINE
            eligible.remove(c)
    positions = [c.position for c in eligible if c.position is not None]
    seen_used = bool(known_position and (known_timeline is None or known_timeline >= top_tl))
    if seen_used:
        positions.append(lsn_mod.parse(known_position) or 0)
    best = max(positions) if positions else None

    def lag(c: Candidate) -> int | None:
        return None if best is None or c.position is None else max(0, best - c.position)

    def table(winner: str | None) -> tuple[Row, ...]:
        rows = []
        for c in candidates:
            v = verdicts.get(c.name, Verdict.CANDIDATE)
            if c.name == winner:
                v = Verdict.ELECTED
            rows.append(Row(c, v, lag(c) if c in eligible or c.name == winner else None))
        return tuple(rows)

    common = dict(best_position=lsn_mod.fmt(best), allow_data_loss=allow_data_loss, max_lag_bytes=max_lag_bytes,
                  seen=seen, seen_used=seen_used)
    if not eligible:
        return Decision(None, table(None), reason="no reachable standby on the latest timeline can be promoted",
                        refused=True, **common)
    if to is not None:
        chosen = next((c for c in eligible if c.name == to), None)
        if chosen is None:
            v = verdicts.get(to)
            why = v.value if v else "not a node of this election"
            return Decision(None, table(None), reason=f"{to} cannot be promoted: {why}", refused=True, **common)
    else:
        # sort key: timeline, position, priority, then the name so that ties are deterministic
        chosen = max(eligible, key=lambda c: (c.timeline or 0, c.position or 0, c.priority, _neg_name(c.name)))
    behind = lag(chosen) or 0
    # what is known to be lost; with no sighting of the old primary and no standby ahead, unknown
    loss = behind if (seen_used or behind) else None
    common.update(chosen=chosen.name, chosen_position=lsn_mod.fmt(chosen.position))
    if behind > max_lag_bytes and not allow_data_loss:
        verdicts[chosen.name] = Verdict.TOO_FAR_BEHIND
        d = Decision(None, table(None), refused=True, data_loss_bytes=loss, reason="", **common)
        return dataclasses.replace(d, reason=(
            f"{chosen.name} is {fmt_bytes(behind)} behind the best known position {lsn_mod.fmt(best)}, over the "
            f"bound of {fmt_bytes(max_lag_bytes)} ({d.loss_line}); promoting it would lose acknowledged writes "
            "(allow it with allow_data_loss / --allow-data-loss)"))
    notes = []
    if behind:
        notes.append(f"{chosen.name} is {behind} bytes behind the best known position: that WAL is lost")
    reason = (f"{chosen.name}: " + ("requested" if to else "most advanced") +
              f" (timeline {chosen.timeline}, position {lsn_mod.fmt(chosen.position)}, priority {chosen.priority})")
    return Decision(chosen.name, table(chosen.name), reason=reason, data_loss_bytes=loss, notes=tuple(notes),
                    **common)


def _neg_name(name: str) -> tuple[int, ...]:
    # max() picks the highest key; invert the name so that "s1" beats "s2" on a full tie
    return tuple(-ord(ch) for ch in name)
