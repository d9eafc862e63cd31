"""The anomaly checkers and the routing choice, on hand-written histories (no database)."""
from __future__ import annotations

from lab.reads.anomalies import Read, Write, consistent_prefix, monotonic, read_after_write
from lab.reads.routing import sticky_choice


def R(user, seen=(), t=0.0, value=None, node=None):
    return Read(user, frozenset(seen), t, value, node)


def test_read_after_write_counts_only_own_acknowledged_writes():
    writes = [Write("alice", 1, 1.0), Write("bob", 2, 1.0), Write("alice", 3, 5.0)]
    reads = [
        R("alice", {1}, 2.0),          # has her write: fine
        R("alice", set(), 2.0, node="s2"),   # misses 1: anomaly
        R("bob", set(), 0.5),          # read began before his write was acked: not an anomaly
        R("alice", {1}, 4.0),          # write 3 not acked yet: fine
        R("alice", {3}, 6.0),          # misses 1: anomaly
        R("carol", set(), 9.0),        # wrote nothing
    ]
    found = read_after_write(writes, reads)
    assert [(a.user, a.node) for a in found] == [("alice", "s2"), ("alice", None)]
    assert "1" in found[1].detail


def test_monotonic_counts_steps_back_per_user():
    reads = [R("u", t=1, value=5, node="s1"), R("u", t=2, value=7), R("u", t=3, value=6, node="s2"),
             R("u", t=4, value=7), R("v", t=2.5, value=1), R("u", t=5, value=3)]
    found = monotonic(reads)
    assert len(found) == 2 and all(a.user == "u" for a in found)
    assert "saw 6 after 7" in found[0].detail and found[0].node == "s2"
    assert monotonic([R("u", t=i, value=i) for i in range(10)]) == []
    # equal values are not a step back
    assert monotonic([R("u", t=1, value=3), R("u", t=2, value=3)]) == []


def test_consistent_prefix_needs_the_cause_transitively():
    causes = {"a1": "q1", "c1": "a1"}
    assert consistent_prefix([R("o", {"q1", "a1"})], causes) == []
    assert consistent_prefix([R("o", {"q1"})], causes) == []
    assert len(consistent_prefix([R("o", {"a1"})], causes)) == 1
    # the comment on the answer is there and the answer too, but not the question
    found = consistent_prefix([R("o", {"a1", "c1"})], causes)
    assert len(found) == 2 and all("q1" in a.detail for a in found)


def test_sticky_choice_is_stable_and_rotates():
    f = ["s2", "s1", "s3"]
    first = sticky_choice("alice", f)
    assert first == sticky_choice("alice", list(reversed(f)))   # order of the input does not matter
    assert sorted(first) == ["s1", "s2", "s3"]
    i = ["s1", "s2", "s3"].index(first[0])
    assert first == (["s1", "s2", "s3"] * 2)[i:i + 3]            # the rest in ring order
    users = [f"u{i}" for i in range(60)]
    assert {sticky_choice(u, f)[0] for u in users} == {"s1", "s2", "s3"}   # spreads the users
    assert sticky_choice("x", []) == []
