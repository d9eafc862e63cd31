"""The ledger writer on real servers, and the set checker (pure)."""
from __future__ import annotations

import threading
import time

from lab import Lab
from lab.failover.checker import check
from lab.workload.ledger import (OK, OK_UNREPLICATED, LedgerWriter, Op, ensure_table, final_ids, load_ops,
                                 longest_outage)


def test_checker_sets():
    ops = [("a", "ok"), ("b", "ok"), ("c", "unknown"), ("d", "unknown"), ("e", "fail"), ("f", "ok_unreplicated")]
    r = check(ops, {"a", "c", "z"})
    assert r.lost == ("b",) and r.recovered == ("c",) and r.unexpected == ("z",)
    assert r.lost_unreplicated == ("f",) and r.failed_present == ()
    assert not r.valid and r.checker_error
    assert check(ops, {"a", "b", "f"}).valid
    assert check(ops, {"a", "b", "e"}).failed_present == ("e",)


def test_first_ok_after_can_ignore_answers_sent_before(tmp_path):
    """A server killed at t=10 had answered a write sent at 9.99; the client reads that answer at
    10.03. It counts as acknowledged after 10, but not as the server back (sent_after): the drill
    once took it for an RTO of 33 ms after a kill."""
    w = LedgerWriter("", tmp_path / "l.jsonl", duration=1)
    w._ops += [Op("a", 0, 1, OK, 9.99, 10.03, "s1"), Op("b", 0, 2, OK, 12.0, 12.01, "s1"),
               Op("c", 1, 1, "fail", 10.5, 10.6, "s1"), Op("d", 1, 2, OK, 10.2, 10.25, "s2")]
    assert w.first_ok_after(10.0, "s1").id == "a"
    assert w.first_ok_after(10.0, "s1", sent_after=True).id == "b"
    assert w.first_ok_after(10.0, sent_after=True).id == "d"
    assert w.first_ok_after(13.0, "s1", sent_after=True) is None


def test_longest_outage_sees_a_second_stop_that_the_rto_leaves_out():
    """A primary killed at 10 restarts in place (first write again at 11.0), then a manager drains
    it (no write acknowledged from 12.0 to 17.0): the RTO is 1 s, the longest outage 5 s."""
    def ok(t: float, oc: str = OK) -> Op:
        return Op(f"{t}", 0, 0, oc, t - 0.01, t, "p1")
    ops = [ok(9.9), ok(9.95), ok(11.0), ok(11.5), ok(12.0), Op("f", 1, 0, "fail", 12.5, 13.0, "p1"),
           ok(17.0, OK_UNREPLICATED), ok(17.2)]
    assert abs(longest_outage(ops, 10.0, 18.0) - 5.0) < 1e-9
    assert abs(longest_outage(ops, 10.0, 30.0) - 12.8) < 1e-9     # writers stopped long after the last write
    assert abs(longest_outage(ops[:5], 10.0, 12.2) - 1.05) < 1e-9  # only the gap around the fault
    assert longest_outage(ops[:2], 10.0, 20.0) is None             # nothing acknowledged after the fault: unknown
    assert abs(longest_outage(ops[2:5], 10.0, 12.0) - 1.0) < 1e-9  # none before it: counted from the fault
    # an answer read after the kill to a write sent before it does not end the outage
    late = Op("late", 2, 0, OK, 9.99, 10.4, "p1")
    assert abs(longest_outage([*ops[:5], late], 10.0, 12.2) - 1.05) < 1e-9


def test_ledger_count_bounded_all_acknowledged_and_present(make_lab, tmp_path):
    lab: Lab = make_lab()
    w = lab.ledger(clients=3, count=300, duration=30, path=str(tmp_path / "l.jsonl")).start()
    s = w.wait()
    ops = load_ops(tmp_path / "l.jsonl")
    assert len(ops) == s.attempted == 300
    assert {o.outcome for o in ops} == {OK} and len({o.id for o in ops}) == 300
    assert {o.node for o in ops} == {lab.primary}
    assert s.outcomes["ok"].count == 300 and s.outcomes["ok"].p50_ms > 0 and s.ok_tps > 0
    res = check([(o.id, o.outcome) for o in ops], final_ids(lab.dsn(role="primary"), w.run))
    assert res.valid and res.final == 300


def test_cancelled_sync_wait_is_ok_unreplicated(make_lab, tmp_path):
    """With its only synchronous standby down, a commit waits; cancelling the wait returns success
    with the WARNING 'canceling wait for synchronous replication': the writer says ok_unreplicated."""
    lab: Lab = make_lab(sync="FIRST 1 (s1)", standbys=1)
    ensure_table(lab.dsn(role="primary"))    # before: its own commit would wait too
    lab.fault("s1", "stop")
    w = lab.ledger(clients=1, count=2, duration=20, op_timeout=15, path=str(tmp_path / "l.jsonl")).start()
    stop = threading.Event()

    def canceller() -> None:
        deadline = time.monotonic() + 15
        while not stop.is_set() and time.monotonic() < deadline:
            with lab.connect("p1") as c:
                c.execute("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE wait_event = 'SyncRep'")
            time.sleep(0.2)
    t = threading.Thread(target=canceller)
    t.start()
    try:
        w.wait()
    finally:
        stop.set()
        t.join()
    outcomes = [o.outcome for o in w.ops()]
    assert outcomes == [OK_UNREPLICATED, OK_UNREPLICATED], outcomes
    lab.heal("s1")
