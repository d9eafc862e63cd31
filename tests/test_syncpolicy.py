"""The lab's synchronous policy has one store: whichever of a drill's mode and `pglab sync set`
came last is what the next primary gets after a failover."""
from __future__ import annotations

from lab.cluster import sql
from lab.failover import drill


def test_sync_set_after_a_drill_mode_survives_failover(make_lab):
    lab = make_lab(runtime="local")
    drill.set_mode(lab.ctx, "async")            # what `pglab drill failover --mode async` does first
    lab.set_sync("ANY 1 (s1, s2)")              # then the user chooses quorum commit
    assert lab.topology.sync.render() == "ANY 1 (s1, s2)"
    lab.fault("p1", "kill")
    f = lab.failover()
    new = f.promotion.new_primary
    names = sql.scalar(lab.ctx.state, new, "SHOW synchronous_standby_names")
    # the quorum rule over the standby that is left, not the drill's earlier "async"
    assert names.startswith("ANY 1"), names
    assert [n for n in lab.standbys if n != "p1"] [0] in names


def test_drill_mode_after_sync_set_wins(make_lab):
    lab = make_lab(runtime="local")
    lab.set_sync("ANY 1 (s1, s2)")
    drill.set_mode(lab.ctx, "async")
    assert lab.topology.sync.is_async
    assert sql.scalar(lab.ctx.state, lab.primary, "SHOW synchronous_standby_names") == ""


def test_sync_mode_after_async_mode_names_the_standbys(make_lab):
    """A drill in sync mode after one in async mode (which left no names in the policy)."""
    lab = make_lab(runtime="local")
    drill.set_mode(lab.ctx, "async")
    spec = drill.set_mode(lab.ctx, "sync")
    assert spec.method == "FIRST" and spec.num == 1 and set(spec.names) == {"s1", "s2"}, spec
    assert sql.scalar(lab.ctx.state, lab.primary, "SHOW synchronous_standby_names").startswith("FIRST 1")
