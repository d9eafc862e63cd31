"""The independent prober for two primaries at once (lab.failover.primaries), and the bench's
count of what the operator had to do."""
from __future__ import annotations

import time

from lab.bench.ha import operator_steps
from lab.failover.primaries import PROBE_EVERY, PrimariesProbe, Round, longest_two_primaries


def _rounds(*seen: tuple[float, str]) -> list[Round]:
    return [Round(t, frozenset(p for p in ps.split(",") if p), 3) for t, ps in seen]


def test_the_window_runs_from_the_first_round_with_two_to_the_first_without():
    rs = _rounds((0.0, "p1"), (0.25, "p1,s1"), (0.5, "p1,s1"), (0.75, "s1"), (1.0, "s1,p1"), (1.25, "s1"))
    assert longest_two_primaries(rs) == 0.5          # 0.25 -> 0.75, longer than 1.0 -> 1.25
    assert longest_two_primaries(rs[:3]) == 0.25     # the probing ended inside the window: up to its last round
    assert longest_two_primaries(_rounds((0.0, "p1"), (0.25, ""), (0.5, "s1"))) == 0.0   # never two: none seen
    assert longest_two_primaries([]) is None         # no round at all: unknown, not 0


def test_operator_steps_are_what_the_manager_did_not_do():
    assert operator_steps("none", True, "pglab") == 2          # the promotion and the rejoin, by hand
    assert operator_steps("pglab", True, "pglab") == 1         # pglab's monitor promotes; rejoin by hand
    assert operator_steps("patroni", True, "manager") == 0
    assert operator_steps("none", False, None) == 0            # nothing failed over, nothing to do


def test_the_probe_sees_two_primaries_as_long_as_the_test_made_them(make_lab):
    """s1 promoted while p1 still runs (no fencing: `promote` is the manual step), p1 killed some
    time later: the prober's window matches the test's own clock, to within its round."""
    lab = make_lab(standbys=1, sync="none")
    probe = PrimariesProbe(lab.ctx).start()
    time.sleep(1.0)
    lab.promote("s1")
    t_both = time.time()
    assert not lab.node("p1").connect().execute("SELECT pg_is_in_recovery()").fetchone()[0]
    time.sleep(2.0)
    t_kill = time.time()
    lab.fault("p1", "kill")
    time.sleep(1.0)
    window = probe.stop()
    truth = t_kill - t_both
    assert truth - 2 * PROBE_EVERY <= window <= truth + 2 * PROBE_EVERY + 0.5, (window, truth)
    assert all(r.answered >= 1 for r in probe.rounds) and probe.rounds[-1].primaries == {"s1"}
