"""The chaos soak (`pglab chaos`): the seeded schedule (pure), then a 60-second soak on each
runtime with every fault kind, checked by its invariants (partition, isolate and throttle need
per-node network namespaces on the local runtime, so as root)."""
from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from lab.cli import app
from lab.errors import InvalidInput
from lab.failover.chaos_schedule import FAULTS, PRIMARY, WARMUP, make_schedule, parse_faults

NODES = ("p1", "s1", "s2")


def test_the_same_seed_gives_the_same_schedule():
    a = make_schedule(42, 600, FAULTS, NODES)
    assert a == make_schedule(42, 600, FAULTS, NODES)
    assert a == make_schedule(42, 600, FAULTS, tuple(reversed(NODES)))    # node order does not matter
    assert a != make_schedule(43, 600, FAULTS, NODES)


def test_a_schedule_stays_within_its_bounds_and_uses_every_fault():
    s = make_schedule(7, 600, FAULTS, NODES, hold=(1.0, 5.0), gap=(1.0, 3.0))
    assert s[0].at == WARMUP
    assert all(1.0 <= e.hold <= 5.0 and e.at + e.hold <= 600 for e in s)
    assert all(b.at >= a.at + a.hold + 1.0 - 1e-9 for a, b in zip(s, s[1:])), "one fault at a time, healed first"
    assert {e.kind for e in s} == set(FAULTS)
    assert {e.target for e in s} == {PRIMARY, *NODES}
    assert 0.25 < sum(e.target == PRIMARY for e in s) / len(s) < 0.6


def test_only_the_faults_asked_for():
    s = make_schedule(1, 300, ("kill", "pause"), NODES)
    assert {e.kind for e in s} == {"kill", "pause"}
    assert parse_faults("kill, stop,kill") == ("kill", "stop")
    with pytest.raises(InvalidInput):
        parse_faults("kill,explode")
    with pytest.raises(InvalidInput):
        make_schedule(1, 0, FAULTS, NODES)


def test_dry_run_prints_the_schedule_and_starts_nothing(shared_lab):
    r = CliRunner().invoke(app, ["chaos", "--name", shared_lab.name, "--seed", "5", "--duration", "30", "--dry-run"])
    assert r.exit_code == 0, r.output
    first = make_schedule(5, 30, FAULTS, tuple(shared_lab.nodes))[0]
    assert r.output.splitlines()[0].strip() == first.describe().strip()


def test_a_60_second_soak_keeps_its_invariants(make_lab, runtime):
    if runtime == "local" and os.geteuid() != 0:
        pytest.skip("partition, isolate and throttle on the local runtime need network namespaces (root)")
    lab = make_lab(netns=(runtime == "local"))
    r = lab.chaos(seed=11, duration=60, timeout=3, down=True)
    injected = [o for o in r.outcomes if o.started]
    assert len(injected) >= 4 and not [o.skipped for o in r.outcomes if o.skipped], r.outcomes
    assert r.invariants and r.passed, (r.invariants, r.problems, r.leaks)
    assert r.lost == 0 and r.max_writable <= 1 and r.leaks == ()
    assert r.false_failovers == 0, r.failovers
    assert r.ok > 100 and r.samples > 50
