"""Scenario files: validation errors name file, line and field; conditions and expectations parse."""
from __future__ import annotations

import pytest

from lab.errors import InvalidInput
from lab.scenario.conditions import parse_condition, parse_expectation, parse_value
from lab.scenario.spec import load_scenario

NODES = ["p1", "s1", "s2"]
TOPO = "topology:\n  nodes:\n    - {name: p1, role: primary}\n    - {name: s1}\n    - {name: s2}\n"


def write(tmp_path, body: str):
    f = tmp_path / "sc.yaml"
    f.write_text("# A test scenario.\n" + TOPO + body)
    return f


def test_valid_scenario(tmp_path):
    sc = load_scenario(write(tmp_path, "steps:\n  - fault: kill\n    node: p1\n  - wait: primary is s1\n    timeout: 5\n"
                                       "  - parallel:\n      - {sleep: 1}\n      - {mark: x}\n"
                                       "expect:\n  - lost_writes == 0\n  - primary == \"s1\"\n"))
    assert sc.description == "A test scenario."
    assert [s.action for s in sc.steps] == ["fault", "wait", "parallel"]
    assert sc.steps[1].timeout == 5 and sc.steps[0].line == 8
    assert [c.action for c in sc.steps[2].children] == ["sleep", "mark"]
    assert sc.expect[1].value == "s1"


@pytest.mark.parametrize("body, message", [
    ("steps:\n  - explode: p1\n", r"sc.yaml:8: step 1: unknown action 'explode'.*fault"),
    ("steps:\n  - fault: kill\n", r"sc.yaml:8: step 1: fault needs 'node'"),
    ("steps:\n  - fault: melt\n    node: p1\n", r"unknown fault 'melt'.*stop, kill, kill-postgres, pause"),
    ("steps:\n  - fault: kill\n    node: p9\n", r"node 'p9' is not in the topology"),
    ("steps:\n  - sleep: 1\n    colour: red\n", r"sc.yaml:8: step 1: unknown field 'colour' for sleep.*allowed"),
    ("steps:\n  - wait: primary is s9\n", r"names 's9', which is not a node"),
    ("steps:\n  - wait: standby s1 lagg < 1MB\n", r"unknown figure 'lagg'"),
    ("steps:\n  - wait: the moon is full\n", r"names .the., which is not a node"),
    ("steps:\n  - wait: s1 ~ 3\n", r"cannot read"),
    ("steps:\n  - sleep: 1\nexpect:\n  - lost_writes equals 0\n", r"expect: cannot read"),
    ("steps: []\n", r"`steps` must be a non-empty list"),
    ("steps:\n  - sleep: 1\nextra: 1\n", r"unknown section 'extra'"),
    ("steps:\n  - sleep: 1\n    fault: kill\n", r"2 actions"),
    ("steps:\n  - workload: dance\n", r"workload 'dance' is not known.*ledger"),
    ("steps:\n  - sleep: [1\n", r"sc.yaml:\d+: malformed YAML"),
    ("steps:\n  - sleep: soon\n", r"sleep takes seconds"),
    ("steps:\n  - monitor: maybe\n", r"monitor: start or monitor: stop"),
])
def test_invalid_scenarios(tmp_path, body, message):
    with pytest.raises(InvalidInput, match=message):
        load_scenario(write(tmp_path, body))


def test_bad_topology_in_scenario(tmp_path):
    f = tmp_path / "sc.yaml"
    f.write_text("topology:\n  nodes:\n    - {name: p1, role: boss}\nsteps:\n  - sleep: 1\n")
    with pytest.raises(InvalidInput, match=r"sc.yaml:2 \(topology\): node p1: role 'boss'"):
        load_scenario(f)


def test_values_and_units():
    assert parse_value("1MB") == 1048576
    assert parse_value("250ms") == 0.25
    assert parse_value('"s1"') == "s1"
    assert parse_value("3") == 3 and parse_value("2.5") == 2.5
    with pytest.raises(InvalidInput, match="unknown unit"):
        parse_value("3 parsecs")


def test_expectation_checks():
    e = parse_expectation("rto_s <= 4")
    assert e.check({"rto_s": 3.2}) == (True, 3.2)
    assert e.check({"rto_s": 5}) == (False, 5)
    assert e.check({}) == (False, None)
    assert parse_expectation('primary == "s1"').check({"primary": "s1"})[0]


def test_conditions():
    c = parse_condition("standby s1 lag_bytes < 1MB", NODES)
    assert (c.kind, c.node, c.field, c.op, c.value) == ("field", "s1", "replay_lag_bytes", "<", 1048576)
    assert parse_condition("primary is s2", NODES).kind == "primary"
    assert parse_condition("s1 is down", NODES).value == "down"
    with pytest.raises(InvalidInput, match="unknown role"):
        parse_condition("s1 is sleepy", NODES)
