"""Follower failure and catch-up on real clusters: slot catch-up, the no-slot dead end, sync failures."""
from __future__ import annotations

from typer.testing import CliRunner

from lab.cli import app

runner = CliRunner()


def test_catchup_from_its_slot_without_reclone(make_lab):
    lab = make_lab()
    r = lab.drill_catchup("s2", fault="stop", outage=2.0)
    assert r.missed_bytes > 0 and r.retained_max_bytes and r.retained_max_bytes > 0
    assert r.catchup_s is not None and r.catchup_s < 30            # generous: it is about time
    assert r.same_system and r.same_timeline and r.slot_advanced and not r.recloned
    assert r.max_slot_wal_keep_size == "-1" and r.wal_status in ("reserved", "extended")


def test_no_slot_standby_becomes_unrecoverable_and_reclone_fixes_it(make_lab):
    lab = make_lab()
    r = lab.drill_noslot("s2", reclone=False)
    assert r.unrecoverable and "has already been removed" in r.log_line
    n = lab.status().node("s2")
    assert n.unrecoverable and n.stream_state is None
    res = runner.invoke(app, ["node", "reclone", "s2", "--name", lab.name])
    assert res.exit_code == 0, res.output
    lab.wait_for(lambda lb: lb.status().node("s2").stream_state == "streaming", timeout=30, what="s2 streaming")
    n = lab.status().node("s2")
    assert not n.unrecoverable and n.slot == "s2"


def test_rejoin_of_a_standby_whose_wal_is_gone_reclones_at_once(make_lab):
    """pg_rewind has nothing to do for a standby left behind on the same timeline; once started it
    asks for WAL the primary has removed, forever. rejoin reads that in the node's new log lines
    and re-clones then, instead of waiting out its whole timeout."""
    lab = make_lab()
    assert lab.drill_noslot("s2", reclone=False).unrecoverable
    r = lab.rejoin("s2")
    assert r.method == "reclone" and "the primary has removed WAL it needs" in r.reason, r
    assert r.streaming and lab.status().node("s2").stream_state == "streaming"


def test_sync_standby_down_blocks_commits_then_they_resume(make_lab):
    lab = make_lab()
    r = lab.drill_sync_failure(remedy="none", outage=2.0, clients=2)
    assert r.tps_before > 0
    assert r.tps_during * r.outage_s <= 2                        # at most the commits in flight at the fault
    assert r.max_waiting >= 1 and r.longest_wait_s >= 1.0
    assert r.cancel_outcome == "ok_unreplicated" and "synchronous replication" in r.cancel_warning
    assert r.resume_s is not None and r.resume_s < 30
    assert lab.status().node("s1").sync_state == "sync"         # the lab's rule is back


def test_remedies_quorum_and_switch_to_async(make_lab):
    lab = make_lab()
    anyr = lab.drill_sync_failure(remedy="any", outage=1.5)
    assert anyr.tps_during > 0.2 * anyr.tps_before and dict(anyr.sync_during).get("s2") == "quorum"
    asy = lab.drill_sync_failure(remedy="async", outage=2.0, switch_after=0.5)
    assert asy.tps_during > 0 and asy.unprotected_s and asy.unprotected_s > 0 and asy.acked_unprotected > 0


def test_sync_set_changes_the_rule_live_and_in_the_saved_topology(make_lab):
    lab = make_lab()
    res = runner.invoke(app, ["sync", "set", "ANY 1 (s1, s2)", "--name", lab.name])
    assert res.exit_code == 0, res.output
    from lab import Lab
    again = Lab.open(lab.name)
    assert again.topology.sync.render() == "ANY 1 (s1, s2)"
    assert {n.sync_state for n in again.status().nodes if n.name in ("s1", "s2")} == {"quorum"}
    res = runner.invoke(app, ["sync", "set", "FIRST 1 (s9)", "--name", lab.name])
    assert res.exit_code == 2 and "not a standby" in res.output
