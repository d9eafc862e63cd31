"""Split brain on real clusters: without fencing both leaders acknowledge writes; with it, none
reach the old leader after the promotion; with sync replication its commits never succeed."""
from __future__ import annotations

import os

import pytest

from lab.failover.splitbrain import drill


@pytest.fixture
def lab_for_isolation(make_lab, runtime):
    if runtime == "local" and os.geteuid() != 0:
        pytest.skip("isolating a node on the local runtime needs network namespaces (root)")
    return lambda **kw: make_lab(netns=True, **kw)


def test_unfenced_split_brain_diverges(lab_for_isolation):
    lab = lab_for_isolation(standbys=2, sync="none")
    r = drill(lab.ctx, fence="none", writes=2)
    assert r.acked_on_old_after_promotion == 2
    assert {"old-after-0", "old-after-1"} <= set(r.only_on_old) and r.only_on_new
    assert r.primaries_after_heal == 2


def test_fenced_split_brain_has_one_leader(lab_for_isolation):
    lab = lab_for_isolation(standbys=2)          # FIRST 1 (s1)
    r = drill(lab.ctx, fence="kill", writes=1)
    assert r.synchronous
    # synchronous replication alone: the isolated leader's commit waited and was only local
    assert [a.outcome for a in r.attempts if a.id == "old-before-0"] == ["ok_unreplicated"]
    assert r.acked_on_old_after_promotion == 0 and r.fenced_at is not None
    assert r.primaries_after_heal == 1
