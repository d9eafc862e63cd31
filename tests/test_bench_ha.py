"""`pglab bench ha`: the options, the plan (which cells a manager cannot do, and why), the table
(unknown shown as unknown, never blank or 0), the chart, and one real run through the command."""
from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from lab.api import list_labs
from lab.bench.ha import BenchResult, DrillRow, keep_ledger, make_cell
from lab.bench.haplan import FAULTS, BenchOptions, options, parse_list, setups, unsupported
from lab.bench.hareport import (BAR, HEAD, NA, UNKNOWN, bar_cells, floor_line, from_json, markdown, row, text_chart,
                                write_chart)
from lab.cli import app
from lab.cluster.bootstrap import down
from lab.errors import InvalidInput
from lab.runtime.leftovers import leftovers
from lab.scenario.benchstep import bench_options, figure_name
from lab.scenario.runner import run_scenario
from lab.scenario.spec import load_scenario

runner = CliRunner()


# ---- options ------------------------------------------------------------------------------------
def test_lists_are_checked_deduplicated_and_kept_in_order():
    assert parse_list("kill, pause-short,kill", FAULTS, "--faults") == ("kill", "pause-short")
    with pytest.raises(InvalidInput) as e:
        parse_list("kill,pause", FAULTS, "--faults")
    assert "--faults: unknown value 'pause'" in e.value.line() and "pause-long" in e.value.line()
    with pytest.raises(InvalidInput):
        parse_list(" , ", FAULTS, "--faults")
    with pytest.raises(InvalidInput):
        options(managers="pglab", profiles="fast", faults="kill", modes="sync", repeat=0, runtime="local")
    o = options(managers="repmgr,none", profiles="fast", faults="kill", modes="async,sync", repeat=2, runtime="docker")
    assert (o.managers, o.modes, o.repeat, o.runtime) == (("repmgr", "none"), ("async", "sync"), 2, "docker")


@pytest.mark.parametrize("args", [["--managers", "pglab,stolon"], ["--profiles", "slow"], ["--faults", "kill,pause"],
                                  ["--modes", "quorum"], ["--repeat", "0"], ["--runtime", "k8s"],
                                  ["--chart", "/tmp/rto.svg"], ["--markdown", "/no/such/dir/x.md"], ["--jobs", "9"]])
def test_bad_input_is_one_line_exit_2_and_starts_nothing(args):
    before = set(list_labs())
    r = runner.invoke(app, ["bench", "ha", "--managers", "pglab", *args])
    assert r.exit_code == 2, r.output
    assert r.output.strip().count("\n") == 0 and r.output.startswith("pglab: error:"), r.output
    assert not {n for n in set(list_labs()) - before if n.startswith("bh")}


# ---- the plan -----------------------------------------------------------------------------------
def test_setups_one_lab_per_manager_and_profile():
    s = setups(BenchOptions(managers=("none", "pglab", "patroni", "pg_auto_failover", "repmgr"),
                            profiles=("default", "fast")), root=True)
    assert [x.label for x in s] == ["none", "pglab", "patroni-default", "patroni-fast", "pg_auto_failover-default",
                                    "pg_auto_failover-fast", "repmgr-default", "repmgr-fast"]
    by = {x.label: x.up for x in s}
    assert by["pglab"] == {"runtime": "local", "netns": True, "ha": "pglab"}
    assert by["patroni-fast"]["ha_profile"] == "fast" and by["patroni-fast"]["netns"] is True
    assert by["pg_auto_failover-fast"]["netns"] is False and by["pg_auto_failover-fast"]["pg"] == 15
    assert by["repmgr-default"]["pg"] == 15


def test_cells_a_manager_cannot_do_say_why():
    s = {x.label: x for x in setups(BenchOptions(managers=("pglab", "patroni", "pg_auto_failover", "repmgr"),
                                                 profiles=("fast",)), root=False)}
    assert unsupported(s["pglab"], "kill", "async") is None
    assert unsupported(s["pglab"], "kill", "sync") is None
    assert unsupported(s["patroni-fast"], "kill", "async") is None
    assert unsupported(s["repmgr-fast"], "stop", "async") is None
    assert unsupported(s["pg_auto_failover-fast"], "kill", "async") is None      # its lab runs the async drill too
    assert "split-brain" in unsupported(s["pglab"], "isolate", "sync")
    assert "network namespaces" in unsupported(s["pg_auto_failover-fast"], "partition", "sync")
    assert "root" in unsupported(s["pglab"], "partition", "sync")          # local, not root
    assert "sync mode only" in unsupported(s["pglab"], "pause-short", "async")
    d = {x.label: x for x in setups(BenchOptions(managers=("repmgr", "pg_auto_failover", "pglab"), profiles=("fast",),
                                                 runtime="docker"), root=True)}
    assert unsupported(d["repmgr-fast"], "kill", "sync") is None           # the lab's 15 image holds repmgr
    assert unsupported(d["repmgr-fast"], "partition", "sync") is None
    # the 15 image holds pg_auto_failover too; on Docker a partition cuts the node's container off
    assert unsupported(d["pg_auto_failover-fast"], "kill", "sync") is None
    assert unsupported(d["pg_auto_failover-fast"], "partition", "sync") is None
    assert "split-brain" in unsupported(d["pg_auto_failover-fast"], "isolate", "sync")
    assert unsupported(d["pglab"], "partition", "sync") is None


# ---- the table ----------------------------------------------------------------------------------
def _row(rto, lost=0, **kw):
    base = dict(manager="patroni", profile="fast", fault="kill", mode="sync", attempt=1, bound_s=20.0,
                duration_s=30.0, old_primary="p1", new_primary="s1", rto_s=rto, detect_s=None if rto is None else rto / 2,
                promote_s=0.1, lost=lost, unexpected=0, unknown=3, leader_moved=True, false_failover=False,
                rejoin_by="manager", rejoin_s=5.0, rejoin_streaming=True, outage_s=None if rto is None else rto + 0.5,
                recovered=1, two_primaries_s=0.0, operator_steps=0)
    return DrillRow(**{**base, **kw})


def test_a_cell_sums_its_drills_and_unknown_stays_unknown():
    c = make_cell("patroni", "fast", "kill", "sync", (_row(4.0), _row(6.0), _row(5.0)))
    assert (c.n, c.errors, c.rto_median_s, c.rto_max_s, c.lost, c.leader_moved, c.rejoined_by_itself) == \
        (3, 0, 5.0, 6.0, 0, 3, 3)
    r = row(c)
    assert r[:7] == ["patroni-fast", "kill", "sync", "3", "5.00", "6.00", "6.50"]
    assert r[HEAD.index("old primary back")] == "by itself 3/3 in 5.0s"
    # one drill could not read its figures: the totals are unknown, not 0
    assert (c.recovered, c.two_primaries_max_s, c.operator_steps_max) == (3, 0.0, 0)
    s = make_cell("none", "-", "kill", "sync", (_row(1.0, manager="none", operator_steps=2, two_primaries_s=0.25,
                                                     rejoin_by="pglab"), _row(1.0, operator_steps=1)))
    assert (s.two_primaries_max_s, s.operator_steps_max) == (0.25, 2)
    u = make_cell("patroni", "fast", "kill", "sync", (_row(4.0), _row(None, lost=None)))
    assert u.lost is None and u.rto_median_s == 4.0 and u.outage_max_s is None
    assert row(u)[HEAD.index("lost")] == UNKNOWN == row(u)[HEAD.index("longest outage s")]
    e = make_cell("patroni", "fast", "kill", "sync",
                  (DrillRow("patroni", "fast", "kill", "sync", 1, None, 2.0, error="lab up: no etcd"),))
    er = row(e)
    assert er[HEAD.index("RTO median s")] == UNKNOWN and er[HEAD.index("errors")] == "1" and "no etcd" in er[-1]
    n = make_cell("patroni", "fast", "kill", "async", unsupported="the async drill is not built for patroni")
    nr = row(n)
    assert nr[HEAD.index("lost")] == NA and nr[-1] == "unsupported: the async drill is not built for patroni"
    for x in (r, row(u), er, nr):      # never blank
        assert len(x) == len(HEAD) and all(v.strip() for v in x)


def test_a_drill_with_a_problem_keeps_its_ledger(tmp_path):
    """--keep-logs: the ledger of a drill that found a problem is copied beside the lab's logs
    before the lab (and the ledger with it) goes; a ledger that cannot be read is said, not faked."""
    src = tmp_path / "l.jsonl"
    src.write_text('{"id": "r:0:1", "outcome": "ok"}\n')
    said: list[str] = []
    row = _row(1.0, problems=("161 acknowledged writes lost in sync mode",), ledger=str(src), fault="pause-long")
    kept = keep_ledger(row, tmp_path / "bhx", said.append)
    assert kept == tmp_path / "bhx" / "ledger-pause-long-sync-1.jsonl" and kept.read_text() == src.read_text()
    assert "161 acknowledged writes lost" in said[-1]
    assert keep_ledger(_row(1.0, problems=("x",), ledger=str(tmp_path / "gone")), tmp_path / "bhx", said.append) is None
    assert "could not be kept" in said[-1]


def _result(floors=(0.12, 0.15)) -> BenchResult:
    cells = (make_cell("patroni", "fast", "kill", "sync", (_row(4.0), _row(6.0))),
             make_cell("pglab", "-", "kill", "sync", (_row(0.6, manager="pglab", profile="-", rejoin_by="pglab"),)),
             make_cell("patroni", "fast", "pause-short", "sync",
                       (_row(0.4, fault="pause-short", leader_moved=False, new_primary="p1", rejoin_by=None),)),
             make_cell("pglab", "-", "pause-short", "sync", (_row(None, manager="pglab", profile="-"),)),
             make_cell("patroni", "fast", "isolate", "sync", unsupported="not a failover drill"))
    return BenchResult(BenchOptions(managers=("patroni", "pglab"), profiles=("fast",), repeat=2), tuple(floors),
                       None if floors else "could not start", cells, ("bhx",), True, 90.0, {"patroni-fast": 30.0})


def test_markdown_has_every_cell_and_the_floor():
    md = markdown(_result())
    lines = md.splitlines()
    assert lines[0].startswith("| manager | fault | mode |") and len([ln for ln in lines if ln.startswith("| ")]) == 6
    assert "| pglab | kill | sync | 1 | 0.60 | 0.60 | 1.10 |" in md and "by pglab 1/1" in md
    assert "unsupported: not a failover drill" in md
    assert ("| patroni-fast | pause-short | sync | 1 | 0.40 | 0.40 | 0.90 | n/a | n/a | 0 | 0 | 1 | 0.00 | 0 | 0/1 | "
            "not needed | 0 | 0 |") in md
    assert "median 0.14s over 2" in floor_line(_result()) and "unknown (could not start)" in floor_line(_result(()))


def test_a_saved_run_renders_as_it_did(tmp_path):
    """--from: the JSON a run printed gives back the same table, Markdown and floor, and a chart."""
    from lab.cli.render import to_jsonable
    res = _result()
    saved = tmp_path / "out.json"
    saved.write_text("floor: ...\n" + json.dumps(to_jsonable(res)))    # what `--json > out.json` holds
    again = from_json(json.loads(saved.read_text()[saved.read_text().index("{"):]))
    assert again == res
    md = tmp_path / "t.md"
    r = runner.invoke(app, ["bench", "ha", "--from", str(saved), "--markdown", str(md), "--chart", str(tmp_path / "c.png")])
    assert r.exit_code == 0, r.output
    assert md.read_text() == markdown(res) and floor_line(res) in r.output.replace("\n", "")
    assert all(ln in r.output for ln in text_chart(res))
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for bad, says in (("{}", "not the JSON of `pglab bench ha --json`"), ("nothing", "no JSON in it")):
        saved.write_text(bad)
        r = runner.invoke(app, ["bench", "ha", "--from", str(saved)])
        assert r.exit_code == 2 and r.output.count("\n") == 1 and says in r.output, r.output
    r = runner.invoke(app, ["bench", "ha", "--from", str(tmp_path / "missing.json")])
    assert r.exit_code == 2 and "--from" in r.output and r.output.count("\n") == 1, r.output


def test_the_terminal_chart_draws_each_cell_on_the_log_axis():
    """The bare command's chart: a longer RTO never gets a shorter bar, the axis' ends give 1 and
    BAR characters, and a cell with no RTO says unknown or n/a instead of a bar."""
    assert bar_cells(0.1, 0.1, 100) == 1 and bar_cells(100, 0.1, 100) == BAR and bar_cells(1e6, 0.1, 100) == BAR
    lengths = [bar_cells(x, 0.05, 90) for x in (0.1, 0.5, 2, 10, 60)]
    assert lengths == sorted(lengths) and lengths[0] < lengths[-1]
    lines = text_chart(_result())
    bars = {ln.split()[0]: ln.split()[1] for ln in lines[lines.index("sync kill") + 1:lines.index("sync pause-short")]}
    assert len(bars["patroni-fast"]) > len(bars["pglab"]) and set(bars["pglab"]) == {"#"}
    assert "5.00s (max 6.00s)" in "\n".join(lines)          # patroni-fast kill: median of 4 and 6
    after = lines[lines.index("sync pause-short") + 1:lines.index("sync isolate")]
    [short, unknown] = [ln.split() for ln in after]
    assert short[0] == "patroni-fast" and short[2:] == ["0.40s", "(max", "0.40s)"] and unknown == ["pglab", UNKNOWN]
    assert len(short[1]) < len(bars["pglab"]) < len(bars["patroni-fast"])     # 0.4 s pause, 0.6 s kill, 5 s kill
    assert lines[lines.index("sync isolate") + 1].split() == ["patroni-fast", NA]
    assert lines[-1].split()[0] == "floor" and text_chart(_result(()))[-1].split()[0] != "floor"
    assert "```" in markdown(_result()) and lines[1] in markdown(_result())


def test_chart_is_written_from_synthetic_rows(tmp_path):
    p = write_chart(_result(), tmp_path / "rto.png")
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
    q = write_chart(_result(()), tmp_path / "nofloor.png")      # no floor, still a chart
    assert q.stat().st_size > 5000


# ---- one real run -------------------------------------------------------------------------------
@pytest.mark.slow
def test_bench_ha_pglab_kill_for_real(tmp_path):
    md, png = tmp_path / "ha.md", tmp_path / "ha.png"
    r = runner.invoke(app, ["bench", "ha", "--managers", "pglab", "--profiles", "fast", "--faults", "kill", "--modes",
                            "sync", "--repeat", "1", "--json", "--markdown", str(md), "--chart", str(png)])
    labs: list[str] = []
    try:
        assert r.exit_code == 0, r.output
        out = json.loads(r.stdout[r.stdout.index("{"):])
        labs = out["labs"]
        assert len(labs) == 2                      # the floor's lab and pglab's
        assert out["floor_error"] is None and len(out["floors_s"]) == 1 and 0 < out["floors_s"][0] < 10
        [cell] = out["cells"]
        [drill] = cell["rows"]
        assert drill["error"] is None and drill["problems"] == []
        # RTO: positive and within the drill's bound (the monitor's 2 s timeout, plus promotion and reconnect)
        assert 0 < drill["rto_s"] < drill["bound_s"] + 15
        # the phases lie inside the RTO they are part of; the clients' gap around the fault contains
        # the RTO (it starts at their last write before it). The longest outage holds the time from
        # the election (the old primary was dead by then) to pg_promote() returning, when no server
        # could acknowledge anything
        assert drill["detect_s"] is not None and drill["detect_s"] + drill["promote_s"] <= drill["rto_s"]
        assert drill["rto_s"] <= drill["client_gap_s"]
        assert drill["promote_s"] <= drill["outage_s"] < drill["duration_s"]
        assert drill["lost"] == 0 and drill["unexpected"] == 0 and drill["leader_moved"] is True
        assert drill["old_primary"] != drill["new_primary"] and drill["rejoin_by"] == "pglab"
        # a killed primary never answers beside the new one; pglab's monitor promoted, the drill rejoined
        assert drill["two_primaries_s"] == 0.0 and drill["operator_steps"] == 1 and drill["recovered"] >= 0
        # the cell is its drills' figures, and the files print them
        assert cell["rto_median_s"] == statistics.median([drill["rto_s"]]) == cell["rto_max_s"]
        assert (cell["n"], cell["lost"], cell["false_failovers"], cell["errors"]) == (1, 0, 0, 0)
        text = md.read_text()
        assert cell["outage_max_s"] == drill["outage_s"]
        assert (f"| pglab | kill | sync | 1 | {drill['rto_s']:.2f} | {drill['rto_s']:.2f} | {drill['outage_s']:.2f} |"
                in text)
        assert png.read_bytes()[:4] == b"\x89PNG"
    finally:
        for n in labs:
            down(n)
    for n in labs:
        assert leftovers(n) == [], f"lab {n} left {leftovers(n)}"


@pytest.mark.slow
@pytest.mark.root
def test_bench_ha_runs_timer_bound_managers_side_by_side_in_async_mode(tmp_path):
    """--jobs 2: the Patroni, repmgr and pg_auto_failover labs run two at a time (the floor's lab
    first, alone). Async mode: each manager promotes a starved standby, and what is lost is
    counted, not hidden. --keep-logs: each manager's lab leaves its logs, whose agents tell of
    the same failover the drill measured."""
    from tests.test_patroni import _patroni_missing
    from tests.test_pgaf import _missing as _pgaf_missing
    from tests.test_repmgr import _repmgr_missing
    missing = _patroni_missing() or _repmgr_missing() or _pgaf_missing()
    if missing:
        pytest.skip(missing)
    r = runner.invoke(app, ["bench", "ha", "--managers", "patroni,repmgr,pg_auto_failover", "--profiles", "fast",
                            "--faults", "kill", "--modes", "async", "--repeat", "1", "--jobs", "2", "--json",
                            "--keep-logs", str(tmp_path)])
    labs: list[str] = []
    try:
        assert r.exit_code == 0, r.output
        out = json.loads(r.stdout[r.stdout.index("{"):])
        labs = out["labs"]
        cells = {c["manager"]: c for c in out["cells"]}
        errors = [r["error"] for c in out["cells"] for r in c["rows"] if r["error"]]
        assert errors == [] and len(labs) == 4 and out["options"]["jobs"] == 2, (errors, labs)
        assert set(cells) == {"patroni", "repmgr", "pg_auto_failover"}   # in the plan's order, whatever finished first
        assert [c["manager"] for c in out["cells"]] == ["patroni", "repmgr", "pg_auto_failover"]
        for m, cell in cells.items():
            [drill] = cell["rows"]
            assert drill["error"] is None and drill["problems"] == [], (m, drill)
            assert drill["mode"] == "async" and drill["leader_moved"] is True
            assert drill["lost"] > 0 and cell["lost"] == drill["lost"] and drill["unexpected"] == 0
        # the floor's lab is pglab's own; each manager's lab kept its logs, read back from files
        kept = {n: tmp_path / n for n in labs[1:]}
        assert all(d.is_dir() for d in kept.values()) and sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)
        # the words each agent logs on the node that took over (repmgrd writes to its own
        # log_file, which the lab's logs include as repmgr-<node>.log)
        agents = {"patroni": ("patroni-", "promoted self to leader"), "repmgr": ("repmgr-", "promot"),
                  "pg_auto_failover": ("pgaf-", "wait_primary")}
        for d in kept.values():
            events = json.loads((d / "events.json").read_text())
            fault = next(e for e in events if e["kind"].startswith("fault:"))
            for m, (prefix, word) in agents.items():
                logs = [p for p in d.iterdir() if p.name.startswith(prefix)]
                if logs:   # this lab's manager: its agent on the node that took over says so
                    assert any(word in p.read_text() for p in logs), (m, [p.name for p in logs])
                    break
            else:
                raise AssertionError(f"no manager agent's log in {d}: {sorted(p.name for p in d.iterdir())}")
            assert fault["node"] == "p1"
    finally:
        for n in labs:
            down(n)
    for n in labs:
        assert leftovers(n) == [], f"lab {n} left {leftovers(n)}"


# ---- the scenario step --------------------------------------------------------------------------
def _scenario(tmp_path, bench: dict, expect: list[str]) -> Path:
    f = tmp_path / "bench.yaml"
    f.write_text("# bench ha from a scenario.\n" + yaml.safe_dump({
        "topology": {"nodes": [{"name": "p1", "role": "primary"}, {"name": "s1"}]}, "runtime": "local",
        "steps": [{"bench": "ha", **bench}], "expect": expect}))
    return f


def test_scenario_step_checks_its_options_when_loaded(tmp_path):
    sc = load_scenario(_scenario(tmp_path, {"managers": ["pglab"], "faults": "kill,pause-short", "repeat": 2},
                                 ["bench.pglab.kill.sync.lost == 0"]))
    assert bench_options(sc.steps[0].options) == BenchOptions(("pglab",), ("default", "fast"),
                                                              ("kill", "pause-short"), ("sync", "async"), 2, "local")
    for bad in ({"managers": "stolon"}, {"repeat": "many"}, {"modes": ["sync", "quorum"]}):
        with pytest.raises(InvalidInput) as e:
            load_scenario(_scenario(tmp_path, bad, ["bench.floor_s > 0"]))
        assert "step 1" in e.value.line() or "bench" in e.value.line()
    with pytest.raises(InvalidInput):
        load_scenario(_write_raw(tmp_path, {"bench": "failover"}))
    assert figure_name("pg_auto_failover-fast", "kill-postgres", "sync", "lost") == \
        "bench.pg_auto_failover_fast.kill_postgres.sync.lost"


def _write_raw(tmp_path, step: dict) -> Path:
    f = tmp_path / "raw.yaml"
    f.write_text("# raw.\n" + yaml.safe_dump({"topology": {"nodes": [{"name": "p1", "role": "primary"}, {"name": "s1"}]},
                                             "steps": [step], "expect": ["bench.floor_s > 0"]}))
    return f


@pytest.mark.slow
def test_scenario_step_runs_the_bench(tmp_path):
    sc = load_scenario(_scenario(tmp_path, {"managers": "pglab", "faults": "kill", "repeat": 1},
                                 ["bench.pglab.kill.sync.lost == 0", "bench.pglab.kill.sync.rto_median_s < 17",
                                  "bench.pglab.kill.sync.n == 1", "bench.floor_s > 0"]))
    res = run_scenario(sc, runtime="local", timeout_multiplier=2.0)
    failed = [f"{e.text}: actual {e.actual}" for e in res.expectations if not e.passed]
    assert res.exit_code == 0, f"{res.error} {failed} {[s.detail for s in res.steps]}"
    labs = str(res.figures["bench.labs"]).split(",")
    assert len(labs) == 2
    for n in [res.lab, *labs]:
        assert leftovers(n) == [], f"lab {n} left {leftovers(n)}"
