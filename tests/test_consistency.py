"""Reading from lagging followers, on real clusters: each anomaly appears without its remedy
(count > 0) and disappears with it (count == 0). Lag is a fixed recovery_min_apply_delay, so
the counts do not depend on the machine's speed."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from lab.reads import consistency as cons
from lab.cli import app
from lab.reads.routing import Policy, Router

from .conftest import assert_clean, unique

runner = CliRunner()


@pytest.fixture(scope="module")
def labs():
    base = unique("cs")
    with cons.drill_labs("150ms", name=base) as (a, b):
        yield a, b
    assert_clean(f"{base}a")
    assert_clean(f"{base}b")


def test_read_after_write_and_its_three_remedies(labs):
    a, _ = labs
    d = cons.read_after_write(a, users=2, rounds=3)
    none = d.runs[0]
    assert none.remedy.startswith("none") and none.anomalies == none.reads > 0
    for r in d.runs[1:]:
        assert r.anomalies == 0, r
    # what each remedy costs: the token waits for replay, remote_apply makes the write wait
    token = d.run("b) causal token (wait for replay)")
    assert token.waited_ms > 50 and token.fell_back == 0
    assert d.run("b') causal token, 20ms timeout -> leader").fell_back == token.reads
    assert d.run("c) synchronous_commit = remote_apply").write_ms > 50
    # the lab is back to asynchronous replication after the remote_apply run
    assert a.status().node("s2").sync_state == "async"


def test_monotonic_reads_sticky_and_reroute(labs):
    a, _ = labs
    d = cons.monotonic_reads(a, users=4, steps=24)
    rnd, sticky, blind, floor = d.runs
    assert rnd.anomalies > 0
    assert sticky.anomalies == 0
    # s1 is killed half-way: its users are rerouted (and it is reported) …
    assert blind.reroutes > 0 and floor.reroutes > 0
    # … blindly to the lagging s2 they go back in time; never to an older state than they saw: not
    assert blind.anomalies > 0
    assert floor.anomalies == 0
    assert a.status().node("s1").stream_state == "streaming"


def test_consistent_prefix_across_partitions(labs):
    a, b = labs
    d = cons.consistent_prefix(a, b, conversations=4)
    assert d.runs[0].anomalies > 0
    assert d.runs[1].anomalies == 0


def test_lag_controls_apply_delay_and_pause(labs):
    a, _ = labs
    with a.connect() as c:
        c.execute("DROP TABLE IF EXISTS lc; CREATE TABLE lc (v int)")
    a.wait_caught_up()
    cons.pause_replay(a, "s1")
    try:
        with Router.from_lab(a, ["s1"], token_timeout=0.3) as r:
            w = r.write("u", "INSERT INTO lc VALUES (1)")
            rd = r.read("u", "SELECT count(*) FROM lc", policy=Policy.TOKEN, token=w.token)
            # paused: the token never arrives on s1, the read falls back to the leader and is right
            assert rd.node == "leader" and rd.fell_back and rd.rows == [(1,)]
            assert rd.waited_s >= 0.3
    finally:
        cons.resume_replay(a, "s1")
    cons.set_apply_delay(a, "s1", "400ms")
    try:
        with Router.from_lab(a, ["s1"]) as r:
            w = r.write("u", "INSERT INTO lc VALUES (2)")
            rd = r.read("u", "SELECT count(*) FROM lc", policy=Policy.TOKEN, token=w.token)
            assert rd.node == "s1" and rd.rows == [(2,)] and rd.waited_s > 0.2
    finally:
        cons.set_apply_delay(a, "s1", None)


def test_cli_rejects_unknown_drill():
    r = runner.invoke(app, ["lab", "consistency", "sideways"])
    assert r.exit_code == 2 and "unknown drill" in r.output


def test_cli_prefix_json():
    r = runner.invoke(app, ["lab", "consistency", "prefix", "--json", "--delay", "100ms"])
    assert r.exit_code == 0, r.output
    (d,) = json.loads(r.output)
    assert d["drill"] == "consistent-prefix"
    assert d["runs"][0]["anomalies"] > 0 and d["runs"][1]["anomalies"] == 0
