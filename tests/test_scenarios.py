"""Every drill in scenarios/ runs on a real lab and its expectations hold; the runner's exit codes."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from lab.cli import app
from lab.runtime.leftovers import leftovers
from lab.scenario.runner import run_scenario
from lab.scenario.spec import load_scenario

runner = CliRunner()
SCENARIOS = sorted(Path(__file__).resolve().parent.parent.joinpath("scenarios").glob("*.yaml"))


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario_passes(path: Path, runtime: str):
    sc = load_scenario(path)
    if sc.runtime not in (None, "auto") and sc.runtime != runtime:
        pytest.skip(f"the scenario names its runtime ({sc.runtime})")
    if sc.topology.ha.manager == "patroni" and os.geteuid() != 0:
        pytest.skip("Patroni runs as the postgres user: needs root")
    if sc.topology.netns and runtime == "local" and os.geteuid() != 0:
        pytest.skip("partitions on the local runtime need network namespaces (root)")
    res = run_scenario(sc, runtime=runtime, timeout_multiplier=2.0)
    failed = [f"{s.name}: {s.detail}" for s in res.steps if s.outcome != "ok"]
    failed += [f"{e.text}: actual {e.actual}" for e in res.expectations if not e.passed]
    assert res.exit_code == 0, f"{res.error} {failed}"
    assert leftovers(res.lab) == []


def test_every_scenario_says_what_it_shows():
    for p in SCENARIOS:
        text = p.read_text()
        assert text.startswith("# "), f"{p.name} must start with a comment saying what it demonstrates"
        assert load_scenario(p).expect, f"{p.name} has no expectations"


def _write(tmp_path, steps, expect):
    f = tmp_path / "mini.yaml"
    f.write_text("# A small scenario.\n" + yaml.safe_dump({
        "topology": {"nodes": [{"name": "p1", "role": "primary"}, {"name": "s1"}]},
        "runtime": "local", "steps": steps, "expect": expect}))
    return f


def test_cli_exit_codes_reports_and_junit(tmp_path):
    ok = _write(tmp_path, [{"sql": "SELECT 1", "expect": 1}], ['primary == "p1"'])
    r = runner.invoke(app, ["scenario", "run", str(ok), "--report", str(tmp_path / "rep"),
                            "--junit-xml", str(tmp_path / "j.xml")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "rep" / "report.json").read_text())["passed"] is True
    assert "| `primary == \"p1\"` | pass |" in (tmp_path / "rep" / "report.md").read_text()
    import xml.etree.ElementTree as ET
    cases = [c.get("name") for c in ET.parse(tmp_path / "j.xml").iter("testcase")]
    assert cases == ["steps", 'primary == "p1"']

    bad = _write(tmp_path, [{"sql": "SELECT 1"}], ['primary == "s1"'])
    r = runner.invoke(app, ["scenario", "run", str(bad), "--junit-xml", str(tmp_path / "j2.xml")])
    assert r.exit_code == 1
    assert "expected == 's1', actual p1" in r.output
    assert "<failure" in (tmp_path / "j2.xml").read_text()

    step_fails = _write(tmp_path, [{"wait": "s1 is down", "timeout": 0.5}], [])
    r = runner.invoke(app, ["scenario", "run", str(step_fails)])
    assert r.exit_code == 1 and "did not hold" in r.output

    invalid = tmp_path / "invalid.yaml"
    invalid.write_text("topology: {nodes: [{name: p1}]}\nsteps:\n  - teleport: p1\n")
    r = runner.invoke(app, ["scenario", "run", str(invalid)])
    assert r.exit_code == 2 and "unknown action 'teleport'" in r.output


def test_show_and_list_start_nothing():
    r = runner.invoke(app, ["scenario", "show", str(SCENARIOS[0])])
    assert r.exit_code == 0 and "steps" in r.output
    r = runner.invoke(app, ["scenario", "list", str(SCENARIOS[0].parent)])
    assert r.exit_code == 0 and SCENARIOS[0].name in r.output


def test_a_failing_sql_step_is_a_failed_step_not_a_crash(tmp_path):
    """A server's error (here a division by zero; a cut-off node gives a connection error) fails
    the step and the run goes on to its report and clean-up."""
    f = _write(tmp_path, [{"sql": "SELECT 1/0"}], ['primary == "p1"'])
    res = run_scenario(load_scenario(f), runtime="local")
    assert res.exit_code == 1
    step = res.steps[0]
    assert step.outcome == "failed" and step.detail.startswith("DivisionByZero: division by zero"), step
    assert leftovers(res.lab) == []
