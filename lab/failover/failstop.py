"""The monitor's fast path: tell a primary that is certainly dead (fail-stop) from one that is only
slow or unreachable (fail-slow), from what a production monitor can see.

Evidence, sampled every probe (default 50 ms):
  port      a TCP connect to the primary's server port, to the address the runtime says reaches
            it directly: refused / open / no answer (timeout) / unreachable (no route, no address)
  standbys  only while the port is refused: each standby's `pg_stat_wal_receiver`, streaming /
            gone (no walreceiver, or one that is not streaming) / unknown (no answer in time)

A crashed or stopped primary refuses at once, and every standby's stream ends within a few
milliseconds. When both hold in every sample for `window` seconds (default 0.3 s, above the
80-160 ms a `pg_ctl restart` refuses connections here), the primary is declared dead. Anything else
(no answer, a standby still streaming or not answering, a standby missing) is ambiguous, and the
monitor's timeout decides as before (the slow path). No process table, no data directory.

Pure logic: `FailStop.observe` takes observations and returns a verdict; the monitor does the I/O.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Mapping

DEFAULT_WINDOW = 0.3
DEFAULT_PROBE = 0.05
MIN_SAMPLES = 3          # a window is never confirmed by fewer samples than this


class Port(str, Enum):
    REFUSED = "refused"
    OPEN = "open"
    NO_ANSWER = "no answer"
    UNREACHABLE = "unreachable"


class Stream(str, Enum):
    STREAMING = "streaming"
    GONE = "gone"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Observation:
    t: float
    port: Port
    standbys: Mapping[str, Stream] = field(default_factory=dict)   # probed only while the port is refused


@dataclass(frozen=True)
class Verdict:
    dead: bool
    evidence: bool          # this sample is fail-stop evidence
    since: float | None     # first sample of the current run of evidence
    samples: int            # samples in that run
    reason: str


def evidence(obs: Observation, standbys: tuple[str, ...]) -> tuple[bool, str]:
    """Whether one sample is fail-stop evidence, and why (not)."""
    if obs.port is not Port.REFUSED:
        return False, f"port {obs.port.value}"
    if not standbys:
        return False, "port refused, but there is no standby to confirm"
    missing = [s for s in standbys if s not in obs.standbys]
    if missing:
        return False, f"port refused; not asked: {', '.join(missing)}"
    streaming = [s for s in standbys if obs.standbys[s] is Stream.STREAMING]
    unknown = [s for s in standbys if obs.standbys[s] is Stream.UNKNOWN]
    if streaming:
        return False, f"port refused, but {', '.join(streaming)} still stream{'s' if len(streaming) == 1 else ''}"
    if unknown:
        return False, f"port refused, but {', '.join(unknown)} did not answer"
    return True, f"port refused and {', '.join(standbys)} report{'s' if len(standbys) == 1 else ''} no stream"


class FailStop:
    """Confirmation over a window: every sample in it must be evidence."""

    def __init__(self, standbys: tuple[str, ...], window: float = DEFAULT_WINDOW, min_samples: int = MIN_SAMPLES):
        self.standbys = tuple(standbys)
        self.window = window
        self.min_samples = min_samples
        self.since: float | None = None
        self.samples = 0

    def reset(self, standbys: tuple[str, ...] | None = None) -> None:
        if standbys is not None:
            self.standbys = tuple(standbys)
        self.since, self.samples = None, 0

    def observe(self, obs: Observation) -> Verdict:
        ok, why = evidence(obs, self.standbys)
        if not ok:
            self.reset()
            return Verdict(False, False, None, 0, why)
        if self.since is None:
            self.since = obs.t
        self.samples += 1
        held = obs.t - self.since
        dead = held >= self.window and self.samples >= self.min_samples
        return Verdict(dead, True, self.since, self.samples,
                       f"{why}, for {held:.2f}s ({self.samples} samples; window {self.window:.2f}s)")


def decide(observations: list[Observation], standbys: tuple[str, ...], window: float = DEFAULT_WINDOW) -> Verdict | None:
    """The first verdict that declares the primary dead over a series of samples, or None."""
    fs = FailStop(standbys, window)
    for o in observations:
        v = fs.observe(o)
        if v.dead:
            return v
    return None
