"""Patroni's two drills on one real lab (3 etcd members, 3 agents, HAProxy; per-node network
namespaces; asynchronous, so that an isolated leader acknowledges writes until it demotes itself):
`pglab drill split-brain` and `pglab drill quorum-loss`, each with failsafe_mode off and on. Every
time a drill prints is checked against this test's own probe of pg_is_in_recovery() on every node.
Bad input: one line, exit 2, nothing changed."""
from __future__ import annotations

import json
import threading
import time
import uuid

import psycopg
import pytest
from typer.testing import CliRunner

from lab.api import Lab, down
from lab.cli import app
from lab.cluster import sql
from lab.model.haspec import ha_from_dict
from lab.model.topology import default_topology
from lab.runtime.leftovers import leftovers
from tests.test_patroni import _patroni_missing

runner = CliRunner()
pytestmark = [pytest.mark.slow, pytest.mark.root,
              pytest.mark.skipif(_patroni_missing() is not None, reason=str(_patroni_missing()))]


class Watch:
    """This test's own look: every node's pg_is_in_recovery() every 0.1 s over its own connections
    (True: accepts writes; False: in recovery; None: does not answer)."""

    def __init__(self, lab: Lab):
        self.lab, self.samples = lab, []
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _writable(self, node: str) -> bool | None:
        try:
            return sql.scalar(self.lab.ctx.state, node, "SELECT NOT pg_is_in_recovery()")
        except psycopg.Error:
            return None

    def _run(self) -> None:
        while not self.stop_event.is_set():
            t = time.time()
            self.samples.append((t, {n: self._writable(n) for n in self.lab.ctx.state.nodes}))
            self.stop_event.wait(0.1)

    def __enter__(self) -> "Watch":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        self.thread.join(20)

    def first(self, pred, after: float) -> float | None:
        return next((t for t, s in self.samples if t >= after and pred(s)), None)

    def last(self, pred, before: float) -> float | None:
        return next((t for t, s in reversed(self.samples) if t <= before and pred(s)), None)


@pytest.fixture(scope="module")
def plab():
    name = f"pd-{uuid.uuid4().hex[:6]}"
    topo = default_topology(2).with_changes(ha=ha_from_dict({"manager": "patroni", "profile": "fast",
                                                             "synchronous_mode": False}))
    lab = Lab.up(topo, name=name, runtime="local", netns=True)
    try:
        yield name
    finally:
        lab.down()
        assert leftovers(name) == []


def _patroni_log(lab: Lab, node: str) -> str:
    return lab.ctx.rt.read_file(node, f"{lab.ctx.rt.paths(node).home}/patroni.log") or ""


def _check_split_brain(lab: Lab, w: Watch, r: dict, failsafe: bool) -> None:
    old, new, t_iso = r["old_primary"], r["new_primary"], r["isolated_at"]
    assert new != old and r["manager"] == "patroni" and r["failsafe"] is failsafe
    # the old leader: acknowledged writes until Patroni demoted it (its server stopped answering or
    # went into recovery), never after
    old_down = w.first(lambda s: s[old] is not True, t_iso)
    old_up = w.last(lambda s: s[old] is True, old_down)
    assert old_down is not None and old_up is not None
    assert old_up - 1.0 <= r["old_last_ack"] <= old_down + 0.3, (old_up - t_iso, r["old_stopped_s"], old_down - t_iso)
    # whether failsafe is on or off: it keeps only a leader that reaches every member's REST API
    assert 0 < r["old_stopped_s"] < 20
    # the new leader: accepted writes once it left recovery (as seen here and in its own log)
    new_up = w.first(lambda s: s[new] is True, t_iso)
    assert new_up is not None
    assert new_up - 0.5 <= r["new_first_ack"] <= new_up + 1.0, (new_up - t_iso, r["new_accepted_s"])
    assert abs(r["promoted_at"] - new_up) < 1.0
    assert r["routed_first_new_ack"] is not None and r["routed_first_new_ack"] >= r["new_first_ack"]
    # no moment with two leaders here, and the drill measured that (0, not unknown)
    assert w.first(lambda s: s[old] is True and s[new] is True, t_iso) is None
    assert r["split_brain_window_s"] == 0.0 and r["window_still_open"] is False
    assert r["acked_on_old_after_promotion"] == 0
    # asynchronous: what the isolated leader acknowledged before demoting never reached the new one
    assert r["old_acks_missing_on_new"] is not None
    acked_after_iso = {a["id"] for a in r["attempts"] if a["node"] == old and a["outcome"] == "ok"
                       and a["t_ack"] > t_iso + 0.5}
    assert acked_after_iso and acked_after_iso <= set(r["old_acks_missing_on_new"])
    assert r["primaries_after_heal"] == 1
    assert sum(1 for n in lab.ctx.state.nodes if w._writable(n)) == 1
    # failsafe on: the isolated leader asked the members (POST /failsafe) before demoting itself
    asked = any("/failsafe" in line for line in _patroni_log(lab, old).splitlines()
                if line[:19] >= time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t_iso)))
    assert asked is failsafe
    assert lab.manager._config().get("failsafe_mode", False) is False     # restored


def test_split_brain_failsafe_off(plab):
    lab = Lab.open(plab)
    with Watch(lab) as w:
        r = lab.drill_split_brain(writes=2, failsafe=False)
    d = {**json.loads(json.dumps(r, default=lambda o: o.__dict__)), "old_stopped_s": r.old_stopped_s,
         "new_accepted_s": r.new_accepted_s, "split_brain_window_s": r.split_brain_window_s,
         "window_still_open": r.window_still_open}
    _check_split_brain(lab, w, d, False)


def test_split_brain_failsafe_on_through_the_cli(plab):
    lab = Lab.open(plab)
    with Watch(lab) as w:
        res = runner.invoke(app, ["drill", "split-brain", "--name", plab, "--failsafe", "on", "--writes", "2", "--json"])
    assert res.exit_code == 0, res.output
    _check_split_brain(Lab.open(plab), w, json.loads(res.output), True)


def _check_quorum_loss(lab: Lab, w: Watch, r: dict, failsafe: bool, hold: float) -> None:
    t_kill, t_heal = r["t_kill"], r["t_heal"]
    assert len(r["killed"]) == 2 and r["members"] == 3 and r["failsafe"] is failsafe
    assert r["check"]["lost"] == 0 and r["check"]["unexpected"] == 0 and r["check"]["ok"] > 100
    none_writable = w.first(lambda s: not any(v is True for v in s.values()), t_kill)
    if failsafe:
        # every member answers POST /failsafe: the leader stays, writes go on
        assert none_writable is None and r["writes_stopped"] is False and r["demoted_after_s"] is None
        assert r["longest_write_gap_s"] < min(5.0, hold / 4)
    else:
        # the leader cannot renew its key: demoted after retry_timeout, back once etcd has a quorum
        assert none_writable is not None and r["writes_stopped"]
        assert abs(r["demoted_at"] - none_writable) < 1.0
        assert 2 < r["demoted_after_s"] < hold
        back = w.first(lambda s: any(v is True for v in s.values()), none_writable)
        assert back is not None and back > t_heal and abs(r["primary_back_at"] - back) < 1.0
        assert r["longest_write_gap_s"] > hold / 2
        assert r["last_ack_before_gap"] <= none_writable + 0.3
        assert back - 0.5 <= r["first_ack_after_gap"] <= back + 3.0
        assert r["writes_back_after_heal_s"] is not None and r["writes_back_after_heal_s"] > 0
    assert lab.manager.leader() is not None
    assert lab.manager._config().get("failsafe_mode", False) is False     # restored


def test_quorum_loss_failsafe_off_through_the_cli(plab):
    lab, hold = Lab.open(plab), 30.0
    with Watch(lab) as w:
        res = runner.invoke(app, ["drill", "quorum-loss", "--name", plab, "--failsafe", "off", "--hold", str(hold), "--json"])
    assert res.exit_code == 0, res.output
    _check_quorum_loss(Lab.open(plab), w, json.loads(res.output), False, hold)


def test_quorum_loss_failsafe_on(plab):
    lab, hold = Lab.open(plab), 30.0
    with Watch(lab) as w:
        r = lab.drill_quorum_loss(failsafe=True, hold=hold)
    d = {**json.loads(json.dumps(r, default=lambda o: o.__dict__)), "check": r.check.to_dict(),
         "longest_write_gap_s": r.longest_write_gap_s, "demoted_after_s": r.demoted_after_s,
         "writes_stopped": r.writes_stopped, "writes_back_after_heal_s": r.writes_back_after_heal_s}
    _check_quorum_loss(lab, w, d, True, hold)


@pytest.mark.parametrize("args, words", [
    (["drill", "split-brain", "--fence", "kill"], "--fence kill does not apply to a Patroni lab"),
    (["drill", "split-brain", "--failsafe", "maybe"], "--failsafe 'maybe' is not on or off"),
    (["drill", "quorum-loss", "--hold", "1"], "--hold 1 is out of range"),
    (["drill", "quorum-loss", "--failsafe", "yes"], "--failsafe 'yes' is not on or off"),
])
def test_bad_input_on_a_patroni_lab_is_one_line(plab, args, words):
    lab = Lab.open(plab)
    leader, view = lab.manager.leader(), lab.ha_view()
    res = runner.invoke(app, [*args, "--name", plab])
    assert res.exit_code == 2, res.output
    assert words in res.output and res.output.strip().count("\n") == 0, res.output
    # nothing happened: the same leader, every etcd member up, no fault in force
    after = Lab.open(plab)
    assert after.manager.leader() == leader and not any(after.ctx.state.faults.values())
    assert [c.state for c in after.ha_view().components if c.kind == "etcd"] == \
           [c.state for c in view.components if c.kind == "etcd"]


@pytest.mark.parametrize("args, words", [
    (["drill", "split-brain", "--failsafe", "on"], "--failsafe does not apply to a none lab"),
    (["drill", "quorum-loss"], "a none lab has no consensus store"),
    (["drill", "quorum-loss", "--failsafe", "off"], "a none lab has no consensus store"),
])
def test_patroni_options_on_a_lab_without_patroni_are_one_line(args, words):
    name = f"np-{uuid.uuid4().hex[:6]}"
    Lab.up(name=name, runtime="local", standbys=1)
    try:
        res = runner.invoke(app, [*args, "--name", name])
        assert res.exit_code == 2, res.output
        assert words in res.output and res.output.strip().count("\n") == 0, res.output
        assert not any(Lab.open(name).ctx.state.faults.values())
    finally:
        down(name)
    assert leftovers(name) == []


@pytest.mark.docker
def test_both_drills_on_docker():
    """The same drills on the Docker runtime (the HA image): the drills ask the manager and the
    runtime only, so they run unchanged; failsafe off, as the most telling case of each."""
    import docker
    from lab.runtime import docker as drt, images as lab_images
    from tests.conftest import require_runtime
    require_runtime("docker")
    try:
        drt.client().images.get(lab_images.image_name(18, ha=True))
    except docker.errors.ImageNotFound:
        pytest.skip("no HA image (build it with `pglab image build --pg 18 --ha`)")
    name = f"pdd-{uuid.uuid4().hex[:6]}"
    topo = default_topology(2).with_changes(ha=ha_from_dict({"manager": "patroni", "profile": "fast",
                                                             "synchronous_mode": False}))
    lab = Lab.up(topo, name=name, runtime="docker", pg=18)
    try:
        with Watch(lab) as w:
            res = runner.invoke(app, ["drill", "split-brain", "--name", name, "--failsafe", "off", "--writes", "1", "--json"])
        assert res.exit_code == 0, res.output
        _check_split_brain(Lab.open(name), w, json.loads(res.output), False)
        lab = Lab.open(name)
        with Watch(lab) as w:
            res = runner.invoke(app, ["drill", "quorum-loss", "--name", name, "--failsafe", "off", "--hold", "25", "--json"])
        assert res.exit_code == 0, res.output
        _check_quorum_loss(Lab.open(name), w, json.loads(res.output), False, 25.0)
    finally:
        down(name)
    assert leftovers(name) == []
