"""The chaos soak's schedule: which fault, on which node, when, for how long. Pure and seeded.

One fault at a time (Jepsen's nemesis start/stop): a fault starts `at` seconds into the run, is held
`hold` seconds, then healed; the next one starts a random gap after the lab has recovered. The
target is a node name, or "primary": whichever node is primary when the fault starts (the one
fault a failover manager exists for). The same seed, duration, faults and nodes give the same
schedule on every machine (random.Random(seed), nothing else).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from lab.errors import InvalidInput

FAULTS = ("kill", "stop", "pause", "partition", "isolate", "throttle")
PRIMARY = "primary"
WARMUP = 2.0              # seconds of writes before the first fault
MAX_DURATION = 6 * 3600.0


@dataclass(frozen=True)
class FaultEvent:
    at: float       # planned start, seconds from the start of the run
    target: str     # a node name, or "primary"
    kind: str       # one of FAULTS
    hold: float     # seconds the fault is held before it is healed

    def describe(self) -> str:
        return f"{self.at:7.1f}s  {self.kind:<9} {self.target:<8} held {self.hold:.1f}s"


def parse_faults(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    items = [f.strip() for f in (text.split(",") if isinstance(text, str) else text) if f.strip()]
    bad = [f for f in items if f not in FAULTS]
    if bad or not items:
        raise InvalidInput(f"unknown fault(s) {', '.join(bad) or '(none given)'}", f"use some of: {','.join(FAULTS)}")
    return tuple(dict.fromkeys(items))


def make_schedule(seed: int, duration: float, faults: tuple[str, ...], nodes: tuple[str, ...], *,
                  hold: tuple[float, float] = (1.0, 5.0), gap: tuple[float, float] = (1.0, 3.0),
                  primary_share: float = 0.4) -> tuple[FaultEvent, ...]:
    """Faults planned back to back over `duration` seconds. `primary_share` of them target the
    primary (whichever node it is then), the others a node drawn from `nodes` (primary included:
    the node named may be primary by then)."""
    if not 0 < duration <= MAX_DURATION:
        raise InvalidInput(f"--duration {duration} is out of range", f"use 0 < duration <= {MAX_DURATION:.0f} s")
    if not nodes:
        raise InvalidInput("a chaos schedule needs nodes")
    if not (0 < hold[0] <= hold[1] and 0 <= gap[0] <= gap[1]):
        raise InvalidInput(f"bad hold {hold} or gap {gap}", "use 0 < min <= max")
    faults = parse_faults(faults)
    rng = random.Random(seed)
    nodes = tuple(sorted(nodes))
    out: list[FaultEvent] = []
    t = WARMUP
    while True:
        kind = rng.choice(faults)
        target = PRIMARY if rng.random() < primary_share else rng.choice(nodes)
        h = round(rng.uniform(*hold), 2)
        if t + h > duration:
            break
        out.append(FaultEvent(round(t, 2), target, kind, h))
        t += h + round(rng.uniform(*gap), 2)
    return tuple(out)
