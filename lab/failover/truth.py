"""What a failover really lost, read after the fact from the failed primary's own data directory.

A production monitor only knows the primary's last sampled position (the election's estimate, a
lower bound). The lab can know the truth: once the old primary is down, its WAL on disk says how
far it had got. `pg_controldata` gives its timeline; `pg_waldump` from the new primary's position
at the election (the fork, give or take one record) to the first invalid record gives the end of
its valid WAL and the commits in between: WAL and commits that the promotion threw away.

Both programs run through the Runtime as the server user, on every runtime (a Docker node's
container outlives its killed postmaster). A node whose server still runs (an unfenced split
brain) has no final end of WAL: the truth is then unknown, never 0.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from lab.cluster.context import Ctx
from lab.errors import LabError
from lab.failover.election import Decision, fmt_bytes
from lab.model import lsn as lsn_mod

_LSN = r"([0-9A-F]{1,8}/[0-9A-F]{1,8})"
_END_RE = re.compile(r"(?:invalid record length|invalid magic number|record with incorrect prev-link|"
                     r"invalid record offset|contrecord is requested|missing contrecord|"
                     r"incorrect resource manager data checksum|invalid contrecord length)[^\n]*? at " + _LSN)
_ERR_AT_RE = re.compile(r"error in WAL record at " + _LSN + r": [^\n]*? at " + _LSN)
_NONE_AFTER_RE = re.compile(r"could not find a valid record after " + _LSN)


@dataclass(frozen=True)
class LossTruth:
    node: str                     # the old primary
    from_lsn: str | None          # the new primary's position when it was elected
    end_lsn: str | None           # end of the old primary's valid WAL on disk
    timeline: int | None
    bytes: int | None             # end - from: WAL the promotion threw away (None: not read)
    commits: int | None           # COMMIT records in it
    error: str | None = None      # why it could not be read


def read(ctx: Ctx, node: str, from_lsn: str | None) -> LossTruth:
    """The old primary's WAL beyond `from_lsn`, read from its data directory. Its server must be
    down (the caller checks); nothing here writes to the node."""
    if not from_lsn:
        return LossTruth(node, None, None, None, None, None, "the new primary's position is unknown")
    if ctx.rt.postmaster_running(node):
        return LossTruth(node, from_lsn, None, None, None, None,
                         f"{node}'s server still runs: its end of WAL is not final")
    data = ctx.rt.paths(node).data
    try:
        cd = ctx.rt.run(node, ["pg_controldata", "-D", data], check=False, timeout=30).out
        tli_s = next((ln.split(":", 1)[1].strip() for ln in cd.splitlines()
                      if ln.startswith("Latest checkpoint's TimeLineID:")), None)
        if not tli_s:
            return LossTruth(node, from_lsn, None, None, None, None, f"pg_controldata: {cd.strip()[-200:]}")
        tli = int(tli_s)
        out = ctx.rt.run(node, ["pg_waldump", "-p", f"{data}/pg_wal", "-t", str(tli), "-s", from_lsn,
                                "-r", "Transaction"], check=False, timeout=120).out
    except LabError as e:
        return LossTruth(node, from_lsn, None, None, None, None, e.line())
    end = parse_end(out, from_lsn)
    if end is None:
        return LossTruth(node, from_lsn, None, tli, None, None, "pg_waldump: " + (out.strip()[-300:] or "no output"))
    commits = sum(1 for ln in out.splitlines() if "desc: COMMIT" in ln)
    start = lsn_mod.parse(from_lsn) or 0
    return LossTruth(node, from_lsn, lsn_mod.fmt(end), tli, max(0, end - start), commits)


def parse_end(out: str, from_lsn: str) -> int | None:
    """Where valid WAL ends, from pg_waldump's output: the LSN of the first invalid record it
    reports; no valid record after the start means nothing beyond it (the end is the start)."""
    m = _NONE_AFTER_RE.search(out)
    if m:
        return lsn_mod.parse(from_lsn)
    m = _ERR_AT_RE.search(out)
    if m:
        return lsn_mod.parse(m.group(2))
    ends = _END_RE.findall(out)
    return lsn_mod.parse(ends[-1]) if ends else None


def compare_line(decision: Decision | None, truth: LossTruth | None) -> str:
    """The estimate beside the truth: "estimated >= 116.0 kB (p1 last seen 0.4 s before the
    election); really 126.5 kB, 212 commits"."""
    if decision is None:
        return "no election"
    est = decision.data_loss_bytes
    if est is None:
        e = "estimated: unknown" + ("" if decision.seen else " (the old primary's position was never sampled)")
    else:
        age = decision.seen.age_s if decision.seen and decision.seen_used else None
        e = f"estimated >= {fmt_bytes(est)}" + (f" ({decision.seen.node} last seen {age:.1f} s before the election)"
                                                if age is not None else "")
    if truth is None:
        return f"{e}; really: not read"
    if truth.bytes is None:
        return f"{e}; really: unknown ({truth.error})"
    return (f"{e}; really {fmt_bytes(truth.bytes)}, {truth.commits} commits "
            f"({truth.node}'s WAL ends at {truth.end_lsn}, the new primary had {truth.from_lsn})")
