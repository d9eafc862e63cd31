"""The phases of recovery after the primary failed, defined once for drills, scenarios and soaks.

    detect     fault injected -> failure declared by the monitor
    elect      failure declared -> winner chosen (every standby probed, the guard passed)
    promote    winner chosen -> pg_promote() returned on it (fencing the old primary included)
    reconnect  pg_promote() returned -> first write acknowledged by the new primary (client side)
    rto        fault injected -> first write acknowledged by the new primary (the sum of the four)

and beside them, not a phase:

    silence    last good health check -> failure declared (what the monitor waited out; it
               starts before the fault by up to one check interval)

A phase whose start or end was not observed (no fault time known, no write acknowledged) is
None: unknown, never 0. All times are this machine's wall clock (time.time()).

The servers keep their own record: with log_line_prefix '%m' (milliseconds) the new primary logs
"received promote request" and "database system is ready to accept connections";
`server_marks` reads those times from its log, for an independent check of the phases.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

from lab.cluster.context import Ctx

PHASES = ("detect_s", "elect_s", "promote_s", "reconnect_s", "rto_s")


@dataclass(frozen=True)
class Phases:
    t_fault: float | None          # the fault was injected
    t_last_ok: float | None        # the monitor's last good health check before it
    t_declared: float | None       # the monitor declared the primary failed
    t_elected: float | None        # the election chose the winner
    t_promoted: float | None       # pg_promote() returned on the winner
    t_first_write: float | None    # the first write acknowledged by the new primary

    @staticmethod
    def _span(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else b - a

    @property
    def detect_s(self) -> float | None:
        return self._span(self.t_fault, self.t_declared)

    @property
    def elect_s(self) -> float | None:
        return self._span(self.t_declared, self.t_elected)

    @property
    def promote_s(self) -> float | None:
        return self._span(self.t_elected, self.t_promoted)

    @property
    def reconnect_s(self) -> float | None:
        return self._span(self.t_promoted, self.t_first_write)

    @property
    def rto_s(self) -> float | None:
        return self._span(self.t_fault, self.t_first_write)

    @property
    def silence_s(self) -> float | None:
        return self._span(self.t_last_ok, self.t_declared)

    def durations(self) -> dict[str, float | None]:
        """Every phase and the silence, in seconds (None: not observed)."""
        return {k: getattr(self, k) for k in (*PHASES, "silence_s")}

    @classmethod
    def of(cls, record, t_fault: float | None, t_first_write: float | None) -> "Phases":
        """From a monitor's FailoverRecord (lab.failover.monitor), the fault time and the first
        acknowledged write on the new primary."""
        return cls(t_fault, record.t_last_ok, record.t_declared, record.t_elected, record.t_promoted, t_first_write)


# ---- the servers' own record -----------------------------------------------------------------
_TS = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) (\S+) ")
PROMOTE_REQUEST = "received promote request"
READY = "database system is ready to accept connections"


def parse_log_time(line: str) -> float | None:
    """The time stamp '%m' puts at the start of a log line ('2026-11-28 07:24:12.123 UTC'), as
    unix time. Only UTC/GMT stamps are read (the lab's images and this machine log in UTC); any
    other zone gives None rather than a guess."""
    m = _TS.match(line)
    if not m or m.group(2) not in ("UTC", "GMT"):
        return None
    return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=timezone.utc).timestamp()


@dataclass(frozen=True)
class ServerMarks:
    promote_request: float | None     # "received promote request" on the new primary
    ready: float | None               # the next "database system is ready to accept connections"


def server_marks(ctx: Ctx, node: str, since: float) -> ServerMarks:
    """The new primary's own log: when it received the promote request (after `since`), and when
    it then said it accepts connections (read through the Runtime, on every runtime)."""
    text = ctx.rt.read_file(node, ctx.rt.paths(node).log) or ""
    req = ready = None
    for line in text.splitlines():
        t = parse_log_time(line)
        if t is None or t < since - 1.0:
            continue
        if req is None and PROMOTE_REQUEST in line and t >= since - 0.002:
            req = t
        elif req is not None and ready is None and READY in line:
            ready = t
    return ServerMarks(req, ready)
