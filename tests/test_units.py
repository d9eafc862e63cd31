"""Pure logic: sync specs, topology files, LSNs, names (no servers)."""
from __future__ import annotations

import pytest

from lab.model import lsn
from lab.errors import InvalidInput
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
