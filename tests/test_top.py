"""`pglab top` driven by Textual's pilot against a real lab: keys press real faults, the panels and
the event log must show what the servers report."""
from __future__ import annotations

import asyncio
import os
import time

import pytest

try:
    import textual  # noqa: F401
except ImportError:
    if os.environ.get("CI") == "true":
        raise           # in CI the ui extra is installed (.ci/run): the dashboard tests must run
    pytest.skip("pglab top needs the ui extra: pip install 'pglab[ui]'", allow_module_level=True)

from lab.cluster.status import LabStatus, NodeStatus, Role  # noqa: E402
from lab.ui import events  # noqa: E402
from lab.ui.app import NodePanel, TopApp, node_text  # noqa: E402


async def _until(pilot, cond, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        await pilot.pause(0.2)
    raise AssertionError(f"{what} did not happen within {timeout:.0f}s")


def test_kill_key_on_primary_with_monitor_shows_failover(make_lab):
    lab = make_lab(standbys=2)      # p1 primary, s1 synchronous, s2 asynchronous

    async def drive() -> TopApp:
        app = TopApp(lab)
        async with app.run_test(size=(180, 60)) as pilot:
            panels = {p.node: p for p in app.query(NodePanel)}
            await _until(pilot, lambda: panels["p1"].plain.startswith("PRIMARY"), 20, "p1 shown as primary")
            assert app.selected_node == "p1"            # the primary is selected at start
            await pilot.press("question_mark")
            assert type(app.screen).__name__ == "HelpScreen"
            assert f"pglab fault kill NODE --name {lab.name}" in str(app.screen.query_one("#help").render())
            await pilot.press("escape")
            assert type(app.screen).__name__ != "HelpScreen"
            # replay on a standby: paused and resumed by one key, as the server reports it
            await pilot.press("right")
            assert app.selected_node == "s1"
            await pilot.press("r")
            await _until(pilot, lambda: "REPLAY PAUSED" in panels["s1"].plain, 20, "s1's replay paused")
            await pilot.press("r")
            await _until(pilot, lambda: "REPLAY PAUSED" not in panels["s1"].plain, 20, "s1's replay resumed")
            await pilot.press("left")
            await pilot.press("m")
            await _until(pilot, lambda: app.mon.running, 10, "the monitor starting")
            await pilot.press("l")
            await _until(pilot, lambda: app.writer.running and app.writer.counts()[0] > 0, 20, "acknowledged writes")
            await pilot.press("k")
            assert app.last_command == f"pglab fault kill p1 --name {lab.name}"
            await _until(pilot, lambda: panels["s1"].plain.startswith("PRIMARY"), 40, "s1 shown as the new primary")
            await _until(pilot, lambda: any("FAILOVER detected: primary p1 -> s1" in x for x in app.event_lines), 10,
                         "the failover in the event log")
            assert not panels["p1"].plain.startswith("PRIMARY")
            # the manager's view: the monitor's decision, in the same log
            await _until(pilot, lambda: any("monitor: decision: promoted s1" in x for x in app.event_lines), 10,
                         "the monitor's decision in the event log")
            await pilot.press("q")
            await _until(pilot, lambda: not app.is_running, 30, "the app exiting")
        return app

    app = asyncio.run(drive())
    # on exit it names what is still broken: p1 was killed (and fenced) and not healed
    assert any(line.startswith("p1:") for line in app.return_value), app.return_value
    assert not app.mon.running and not app.writer.running


def _st(*nodes: NodeStatus) -> LabStatus:
    return LabStatus("x", "local", next((n.name for n in nodes if n.role == Role.PRIMARY), None), nodes, 0.0)


def test_event_diff_names_failover_timeline_and_sync_changes():
    before = _st(NodeStatus("p1", Role.PRIMARY, timeline=1),
                 NodeStatus("s1", Role.STANDBY, timeline=1, sync_state="sync", upstream="p1"))
    after = _st(NodeStatus("p1", Role.DOWN), NodeStatus("s1", Role.PRIMARY, timeline=2))
    lines = events.diff(before, after)
    assert "FAILOVER detected: primary p1 -> s1" in lines
    assert "s1: timeline 1 -> 2" in lines
    assert "p1: primary -> down" in lines
    resync = _st(NodeStatus("p1", Role.PRIMARY, timeline=1),
                 NodeStatus("s1", Role.STANDBY, timeline=1, sync_state="async", upstream="p1"))
    assert events.diff(before, resync) == ["s1: sync state sync -> async"]
    assert events.diff(None, after) == []
    # seen through a gap with no primary: still named as the failover it is, or as a return
    gap = _st(NodeStatus("p1", Role.DOWN), NodeStatus("s1", Role.STANDBY, timeline=1))
    assert events.diff(before, gap)[:2] == ["no primary answers any more (was p1)", "p1: primary -> down"]
    assert events.diff(gap, after, ["p1"])[0] == "FAILOVER detected: primary p1 -> s1"
    assert events.diff(gap, before, ["p1"])[0] == "primary p1 answers again"


def test_a_figure_that_was_not_read_is_unknown_not_zero():
    text = node_text(NodeStatus("s1", Role.STANDBY), [])
    assert "lag unknown / unknown" in text and "timeline unknown" in text
    assert " 0 B" not in text
    down = node_text(NodeStatus("p1", Role.DOWN, error="connection refused", slot="p1", slot_active=False), ["kill"])
    assert down.splitlines()[:2] == ["[bold red]DOWN[/]", "[red]faults: kill[/]"]
    assert "keeps unknown" in down and "connection refused" in down


def test_manager_panel_marks_disagreements_in_words():
    """Pure logic: the manager's panel names its leader, members and stack, and every place where
    it and PostgreSQL disagree."""
    from rich.text import Text

    from lab.ha.base import Component, ManagerView, Member
    from lab.ui.app import manager_text
    view = ManagerView("patroni", "p1", (Member("p1", "leader", "running", 1, 0),
                                          Member("s1", "sync_standby", "streaming", 1, None)),
                       (Component("etcd", "e1", "127.0.0.1:1", "leader"), Component("haproxy", "rw", "127.0.0.1:2", "up"),
                        Component("etcd", "leader key", "/x/leader", "p1")))
    plain = Text.from_markup(manager_text(view, {"s1": "PostgreSQL says primary", "lab": "the lab records s1"})).plain
    assert plain.splitlines()[0] == "patroni's view: leader p1"
    assert "p1 leader (running, tl 1, lag 0 B)" in plain
    assert "s1 sync_standby (streaming, tl 1): PostgreSQL says primary" in plain   # lag unknown: not shown as 0
    assert "stack: etcd e1 leader  haproxy rw up" in plain and "leader key" not in plain.split("stack:")[1].split("\n")[0]
    assert "disagreement (lab): the lab records s1" in plain
    assert "could not be read: timeout" in Text.from_markup(manager_text(None, {}, "timeout")).plain


@pytest.mark.parametrize("runtime", ["local"])
def test_manager_panel_follows_the_managers_leader_through_a_kill(make_lab, runtime):
    """With a failover manager (here pglab's background monitor), `top` shows the manager's view
    beside PostgreSQL's, and the kill key on the primary moves the manager's leader."""
    lab = make_lab(standbys=2, ha="pglab")

    async def drive() -> TopApp:
        app = TopApp(lab)
        async with app.run_test(size=(180, 60)) as pilot:
            await _until(pilot, lambda: app.manager_plain.startswith("pglab's view: leader p1"), 20,
                         "the manager panel naming p1")
            await pilot.press("m")      # a second monitor would race the manager: refused, in words
            assert not app.mon.running
            assert any("failover manager is pglab" in x for x in app.event_lines)
            await pilot.press("k")
            await _until(pilot, lambda: app.manager_plain.startswith("pglab's view: leader s1"), 40,
                         "the manager panel naming s1")
            await _until(pilot, lambda: any("pglab: leader is now s1 (was p1)" in x for x in app.event_lines), 10,
                         "the change of leader in the event log")
            await pilot.press("q")
            await _until(pilot, lambda: not app.is_running, 30, "the app exiting")
        return app

    asyncio.run(drive())


@pytest.mark.root
@pytest.mark.parametrize("runtime", ["local"])
def test_partition_and_isolate_keys_then_heal(make_lab, runtime, tmp_path):
    """The network keys on a standby (a namespace per node): partition cuts it from its peers,
    isolate from everyone; the panel shows the fault in force and the primary's view of the
    stream, and heal lifts each. What pglab reads is checked against the primary itself."""
    if os.geteuid() != 0:
        pytest.skip("a network namespace per node needs root")
    # a cut stream is noticed after wal_sender_timeout: seconds here, not the default minute
    topo = tmp_path / "quick.toml"
    topo.write_text('[settings]\nwal_sender_timeout = "3s"\nwal_receiver_timeout = "3s"\n'
                    '[[nodes]]\nname = "p1"\n[[nodes]]\nname = "s1"\n[[nodes]]\nname = "s2"\n')
    lab = make_lab(str(topo), netns=True)

    def streams_to(node: str) -> bool:
        with lab.connect("p1") as c:
            return bool(c.execute("SELECT 1 FROM pg_stat_replication WHERE application_name = %s "
                                  "AND state = 'streaming'", (node,)).fetchone())

    async def drive() -> TopApp:
        app = TopApp(lab)
        async with app.run_test(size=(180, 60)) as pilot:
            panels = {p.node: p for p in app.query(NodePanel)}
            await _until(pilot, lambda: panels["s2"].plain.startswith("STANDBY"), 20, "s2 shown as a standby")
            await pilot.press("right", "right")
            assert app.selected_node == "s2"
            for key, kind in (("x", "partition"), ("i", "isolate")):
                await pilot.press(key)
                assert app.last_command == f"pglab fault {kind} s2 --name {lab.name}"
                await _until(pilot, lambda k=kind: f"faults: {k}" in panels["s2"].plain, 20, f"the {kind} shown on s2")
                await _until(pilot, lambda: not streams_to("s2"), 40, f"p1 losing s2's stream ({kind})")
                await pilot.press("h")
                await _until(pilot, lambda: "faults:" not in panels["s2"].plain, 20, f"the {kind} healed on s2")
                await _until(pilot, lambda: streams_to("s2") and "(streaming)" in panels["s2"].plain, 40,
                             f"s2 streaming again after the {kind}")
            await pilot.press("q")
            await _until(pilot, lambda: not app.is_running, 30, "the app exiting")
        return app

    app = asyncio.run(drive())
    assert app.return_value == [], app.return_value     # nothing left broken
