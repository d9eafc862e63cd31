"""Election rules from a table of candidates (pure logic, no servers)."""
from __future__ import annotations

from lab.failover.election import Candidate, LastSeen, Verdict, elect


def c(name, rcv, rpl=None, tl=1, prio=100, reachable=True, recovery=True):
    return Candidate(name, reachable, recovery, tl, rcv, rpl or rcv, prio)


def test_most_advanced_receive_lsn_wins_even_if_replay_is_behind():
    d = elect([c("s1", "0/3000100", "0/3000000"), c("s2", "0/3000050")])
    assert d.winner == "s1" and not d.refused
    assert d.row("s1").verdict is Verdict.ELECTED and d.row("s2").verdict is Verdict.CANDIDATE
    assert d.row("s2").lag_bytes == 0xB0
    # the old primary's position was never sampled: the loss is unknown, not 0
    assert d.data_loss_bytes is None and "unknown" in d.loss_line


def test_timeline_beats_position():
    d = elect([c("s1", "0/9000000", tl=1), c("s2", "0/3000000", tl=2)])
    assert d.winner == "s2" and d.row("s1").verdict is Verdict.OLD_TIMELINE


def test_tie_broken_by_priority_then_name():
    assert elect([c("s1", "0/3000000", prio=50), c("s2", "0/3000000", prio=100)]).winner == "s2"
    assert elect([c("s2", "0/3000000"), c("s1", "0/3000000")]).winner == "s1"


def test_unreachable_primary_and_priority_zero_are_not_candidates():
    d = elect([c("s1", None, reachable=False), c("p1", "0/1", recovery=False), c("s2", "0/3000000", prio=0),
               c("s3", "0/2000000")])
    assert d.winner == "s3"
    assert d.row("s1").verdict is Verdict.UNREACHABLE
    assert d.row("p1").verdict is Verdict.NOT_STANDBY
    assert d.row("s2").verdict is Verdict.NO_FAILOVER


def test_no_candidate_refuses():
    d = elect([c("s1", None, reachable=False)])
    assert d.refused and d.winner is None


def test_guard_refuses_a_winner_behind_the_old_primary_unless_allowed():
    cands = [c("s1", "0/3000000")]
    d = elect(cands, known_position="0/5000000", max_lag_bytes=1024)
    assert d.refused and d.winner is None and d.data_loss_bytes == 0x2000000
    assert d.row("s1").verdict is Verdict.TOO_FAR_BEHIND and "allow_data_loss" in d.reason
    d = elect(cands, known_position="0/5000000", max_lag_bytes=1024, allow_data_loss=True)
    assert d.winner == "s1" and d.data_loss_bytes == 0x2000000 and d.notes


def test_guard_allows_small_lag():
    d = elect([c("s1", "0/3000000")], known_position="0/3000400", max_lag_bytes=4096)
    assert d.winner == "s1" and d.data_loss_bytes == 0x400


def test_forced_candidate_is_still_guarded():
    cands = [c("s1", "0/9000000"), c("s2", "0/3000000")]
    assert elect(cands, to="s2", max_lag_bytes=1024).refused
    assert elect(cands, to="s2", max_lag_bytes=1024, allow_data_loss=True).winner == "s2"
    assert elect(cands, to="s9").refused


def test_decision_serialises_its_table():
    d = elect([c("s1", "0/3000000"), c("s2", None, reachable=False)]).to_dict()
    assert d["winner"] == "s1" and [r["verdict"] for r in d["table"]] == ["elected", "unreachable"]


def test_the_old_primarys_last_sighting_is_the_guards_reference_and_is_reported():
    seen = LastSeen("p1", "0/5A3C000", 1, 0.4, "the monitor")
    d = elect([c("s1", "0/5A1F000"), c("s2", "0/5A00000")], seen=seen, max_lag_bytes=1 << 20)
    assert d.winner == "s1" and d.data_loss_bytes == 0x5A3C000 - 0x5A1F000 and d.seen_used
    assert d.loss_line == ("p1 was last seen at 0/5A3C000, 0.4 s before the election (by the monitor); "
                           "s1 has 0/5A1F000: at least 116.0 kB of WAL would be lost "
                           "(plus whatever p1 wrote after it was last seen)")
    d = elect([c("s1", "0/5A1F000")], seen=seen, max_lag_bytes=64 * 1024)
    assert d.refused and d.winner is None and d.chosen == "s1" and d.data_loss_bytes == 0x1D000
    assert "116.0 kB behind" in d.reason and "p1 was last seen at 0/5A3C000" in d.reason
    assert d.to_dict()["seen"]["age_s"] == 0.4


def test_a_sighting_on_an_older_timeline_is_not_compared():
    d = elect([c("s1", "0/3000000", tl=2)], seen=LastSeen("p1", "0/9000000", 1, 3.0), max_lag_bytes=1024)
    assert d.winner == "s1" and not d.seen_used and d.data_loss_bytes is None
    assert "not comparable" in d.loss_line


def test_a_sighting_behind_the_winner_means_nothing_seen_is_missing():
    d = elect([c("s1", "0/3000000")], seen=LastSeen("p1", "0/2000000", 1, 9.0), max_lag_bytes=0)
    assert d.winner == "s1" and d.data_loss_bytes == 0 and "nothing seen is missing" in d.loss_line


def test_end_of_wal_is_read_from_pg_waldump_output():
    from lab.failover.truth import parse_end
    out = ("rmgr: Transaction len (rec/tot):     34/    34, tx:        740, lsn: 0/0403AB58, prev 0/0403AB18, "
           "desc: COMMIT 2026-11-28 07:24:01.1 UTC\n"
           "pg_waldump: error: error in WAL record at 0/403AB58: invalid record length at 0/403AB90: "
           "wanted 24, got 0\n")
    assert parse_end(out, "0/4022000") == 0x403AB90
    # nothing valid after the winner's position: nothing beyond it was lost
    assert parse_end("pg_waldump: error: could not find a valid record after 0/4022000\n", "0/4022000") == 0x4022000
    assert parse_end("pg_waldump: error: could not open file \"x\": No such file\n", "0/4022000") is None


def test_server_log_time_stamps_are_read_in_utc_only():
    from lab.failover.phases import parse_log_time
    t = parse_log_time("2026-11-28 07:24:12.123 UTC [4711] LOG:  received promote request")
    assert t is not None and abs(t - 1795850652.123) < 1e-3
    assert parse_log_time("2026-11-28 08:24:12.123 CET [4711] LOG:  x") is None   # no guessing of zones
