"""An independent look for two primaries at once, while a drill runs.

The drill's own figures come from its ledger clients (which write through the manager's route)
and from the manager. This prober asks every node directly, every PROBE_EVERY seconds and all at
once, whether it is out of recovery (`pg_is_in_recovery()`), over connections of its own. Two
nodes that both answer "primary" in the same round are two primaries that a client reaching each
could have written to. A node that does not answer (killed, frozen, cut off from this machine) is
not counted: what the prober cannot see it does not report.

The window is measured on the prober's rounds: from the first round that saw two primaries to the
first round after it that did not, so it may exceed the truth by up to one round (PROBE_EVERY) and
a window shorter than a round may be missed.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import psycopg

from lab.cluster import sql
from lab.cluster.context import Ctx

PROBE_EVERY = 0.25      # seconds between rounds; each node's answer is bounded by the connect timeout
CONNECT_TIMEOUT = 1


@dataclass(frozen=True)
class Round:
    t: float                        # wall clock when the round started
    primaries: frozenset[str]       # the nodes that answered "not in recovery"
    answered: int                   # how many nodes answered at all


def longest_two_primaries(rounds: list[Round]) -> float | None:
    """The longest stretch in which at least two nodes answered as primaries: from the first round
    that saw it to the first later round that did not (or the last round, if the probing ended
    first). 0.0 when no round saw two; None when no round completed (nothing was seen)."""
    if not rounds:
        return None
    longest, start = 0.0, None
    for r in rounds:
        if len(r.primaries) >= 2 and start is None:
            start = r.t
        elif len(r.primaries) < 2 and start is not None:
            longest, start = max(longest, r.t - start), None
    if start is not None:
        longest = max(longest, rounds[-1].t - start)
    return longest


class PrimariesProbe:
    """Rounds of `pg_is_in_recovery()` on every node of the lab until stop() (bounded: the caller
    stops it; each round's answers are bounded by the connect timeout)."""

    def __init__(self, ctx: Ctx, every: float = PROBE_EVERY):
        self.ctx, self.every = ctx, every
        self.nodes = list(ctx.state.nodes)
        self.rounds: list[Round] = []
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(self.nodes)), thread_name_prefix="primaries-probe")
        self._thread = threading.Thread(target=self._run, name="primaries-probe", daemon=True)

    def _ask(self, node: str) -> bool | None:
        """True: a primary; False: a standby; None: no answer."""
        try:
            # connect_timeout bounds a frozen server too (libpq's whole start-up, not just TCP)
            with sql.connect(self.ctx.state, node, connect_timeout=CONNECT_TIMEOUT) as c:
                return not c.execute("SELECT pg_is_in_recovery()").fetchone()[0]
        except psycopg.Error:
            return None

    def _run(self) -> None:
        while not self._stop.is_set():
            t = time.time()
            answers = dict(zip(self.nodes, self._pool.map(self._ask, self.nodes)))
            self.rounds.append(Round(t, frozenset(n for n, a in answers.items() if a),
                                     sum(1 for a in answers.values() if a is not None)))
            self._stop.wait(max(0.0, self.every - (time.time() - t)))

    def start(self) -> "PrimariesProbe":
        self._thread.start()
        return self

    def stop(self) -> float | None:
        """Stop probing; the longest window with two primaries (longest_two_primaries)."""
        self._stop.set()
        self._thread.join(CONNECT_TIMEOUT + 5)
        self._pool.shutdown(wait=False)
        return longest_two_primaries(list(self.rounds))
