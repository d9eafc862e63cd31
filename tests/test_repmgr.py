"""repmgr as the failover manager (PostgreSQL 15): its [ha] profile and repmgr.conf (pure), bad input
(one line, exit 2, nothing left), and real labs with repmgrd on every node, drilled end to end: on
the local runtime, and on Docker (the lab's 15 image holds repmgr; CI builds it in .ci/run)."""
from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from lab.api import Lab
from lab.cli import app
from lab.errors import InvalidInput, RuntimeUnavailable
from lab.ha import repmgr_conf
from lab.model.haspec import REPMGR_PROFILES, ha_from_dict
from lab.model.topology import default_topology
from lab.runtime import images as lab_images
from lab.runtime.leftovers import leftovers

from .conftest import IN_CI, refuses_an_image_without, require_runtime

runner = CliRunner()


# ---- the [ha] section and repmgr.conf ------------------------------------------------------------

def _promoted_at(lab, node: str) -> float:
    """When repmgr's own event log says `node` was promoted (epoch seconds): an independent clock."""
    with psycopg.connect(lab.dsn(node, dbname="repmgr"), autocommit=True) as c:
        return c.execute("SELECT extract(epoch FROM max(event_timestamp))::float8 FROM repmgr.events "
                         "WHERE event = 'standby_promote' AND successful").fetchone()[0]

def test_repmgr_profiles_round_trip_and_refuse_patroni_keys():
    spec = ha_from_dict({"manager": "repmgr", "profile": "fast"})
    assert ha_from_dict(spec.to_dict()) == spec and spec.to_dict() == {"manager": "repmgr", "profile": "fast"}
    assert REPMGR_PROFILES["default"] == {"monitor_interval_secs": 2, "reconnect_attempts": 6, "reconnect_interval": 10}
    assert REPMGR_PROFILES["fast"] == {"monitor_interval_secs": 1, "reconnect_attempts": 2, "reconnect_interval": 1}
    with pytest.raises(InvalidInput, match="applies to manager = \"patroni\" only"):
        ha_from_dict({"manager": "repmgr", "ttl": 20}, "t.toml")


def test_repmgr_conf_has_connect_timeout_priorities_and_no_password():
    topo = default_topology(2).with_changes(ha=ha_from_dict({"manager": "repmgr", "profile": "fast"}))
    text = {n: repmgr_conf.render(topology=topo, node=n, host="127.0.0.1", port=5432, home=f"/h/{n}",
                                  data_dir=f"/h/{n}/data", bindir="/b", server_log=f"/h/{n}/server.log")
            for n in ("p1", "s1", "s2")}
    conf = dict(line.split("=", 1) for line in text["s2"].splitlines() if "=" in line and not line.startswith("#"))
    assert "connect_timeout=2" in conf["conninfo"] and "passfile=/h/s2/.pgpass_repmgr" in conf["conninfo"]
    assert "password" not in text["s2"].replace("passfile", "")
    assert (conf["node_id"], conf["failover"], conf["monitor_interval_secs"], conf["reconnect_attempts"],
            conf["reconnect_interval"]) == ("3", "'automatic'", "1", "2", "1")
    # s1 (synchronous) wins a tie in LSN over s2 (asynchronous), which stays a candidate
    prio = {n: int(dict(ln.split("=", 1) for ln in t.splitlines() if ln.startswith("priority="))["priority"])
            for n, t in text.items()}
    assert prio == {"p1": 100, "s1": 100, "s2": 50}
    script = repmgr_conf.promote_script(topology=topo, node="s1", home="/h/s1", bindir="/b", port=5432)
    assert "repmgr standby promote -f /h/s1/repmgr.conf" in script and "for slot in p1 s2;" in script


# ---- bad input on the command line ----------------------------------------------------------------
@pytest.mark.parametrize("args, words", [
    (["--ha", "repmgr", "--pg", "18"], "--ha repmgr needs PostgreSQL 15"),
    (["--ha", "repmgr", "--pg", "18", "--runtime", "docker"], "--ha repmgr needs PostgreSQL 15"),
])
def test_up_with_repmgr_on_what_it_cannot_run_says_one_line_and_leaves_nothing(args, words):
    name = f"bad-{uuid.uuid4().hex[:6]}"
    res = runner.invoke(app, ["up", "--name", name, *args])
    assert res.exit_code == 2, res.output
    assert words in res.output and len(res.output.strip().splitlines()) == 1
    assert "Traceback" not in res.output
    assert leftovers(name) == []


# ---- the image a Docker lab runs -------------------------------------------------------------------
def test_an_image_without_repmgr_is_refused_in_one_line_and_rebuilt_by_if_missing():
    old = {"pglab.image": "1", "pglab.pg": "15", "pglab.suite": "bookworm"}     # a 15 image built before the managers
    new = {**old, lab_images.MANAGERS_LABEL: "repmgr,pg_auto_failover"}
    with pytest.raises(RuntimeUnavailable) as e:
        lab_images.check_manager_labels("pglab-postgres:15", old, "repmgr", 15)
    assert e.value.message == ("--ha repmgr on Docker needs an image with repmgr; pglab-postgres:15 has none "
                            "(no repmgr in its label pglab.managers)")
    assert e.value.hint == "rebuild it with `pglab image build --pg 15` (a few minutes, once)"
    with pytest.raises(RuntimeUnavailable) as e:      # another image named in the topology
        lab_images.check_manager_labels("postgres:15", {}, "repmgr", 15)
    assert "use the lab's image pglab-postgres:15" in e.value.hint
    lab_images.check_manager_labels("pglab-postgres:15", new, "repmgr", 15)
    # `pglab image build --pg 15 --if-missing` builds again an image that lacks them; not the others
    assert lab_images.lacking_managers(old, 15) == ["pg_auto_failover", "repmgr"]
    assert lab_images.lacking_managers(new, 15) == []
    assert lab_images.lacking_managers({}, 18) == [] and lab_images.lacking_managers({}, 15, ha=True) == []


# ---- one real repmgr lab --------------------------------------------------------------------------
def _repmgr_missing() -> str | None:
    if not os.access(f"/usr/lib/postgresql/{repmgr_conf.PG_MAJOR}/bin/repmgrd", os.X_OK):
        return f"repmgr is not installed ({repmgr_conf.INSTALL_HINT})"
    if os.geteuid() != 0 or not shutil.which("runuser"):
        return "repmgrd runs as the postgres user: needs root"
    return None


@pytest.mark.slow
@pytest.mark.root
@pytest.mark.skipif(_repmgr_missing() is not None, reason=str(_repmgr_missing()))
def test_repmgr_lab_up_status_kill_drill_switchover_and_down():
    name = f"rm-{uuid.uuid4().hex[:6]}"
    lab = Lab.up(name=name, runtime="local", pg=15, ha="repmgr", ha_profile="fast")
    try:
        # repmgr's metadata beside PostgreSQL's own view: p1 leads, both standbys registered under it
        st, view = lab.status(), lab.ha_view()
        assert st.primary == "p1" and view.leader == "p1" and view.error is None
        assert {m.name: (m.role, m.state) for m in view.members} == {
            "p1": ("leader", "registered"), "s1": ("standby", "upstream p1"), "s2": ("standby", "upstream p1")}
        assert lab.disagreements(st, view) == {}
        comps = {c.name: c for c in view.components}
        assert all(comps[f"repmgrd-{n}"].state == "up" for n in ("p1", "s1", "s2"))
        assert comps["synchronous_standby_names"].detail == "FIRST 1 (s1)"
        assert st.node("s1").sync_state == "sync"
        # the generated password is in the passfiles only: not in repmgr.conf, not on a command line
        pw = lab.ctx.state.ha["password"]
        home = Path(lab.ctx.rt.paths("s1").home)
        assert pw not in (home / "repmgr.conf").read_text() and pw in (home / ".pgpass_repmgr").read_text()
        pid = lab.ctx.rt.services().pid("repmgrd-s1")
        assert pid and pw not in Path(f"/proc/{pid}/cmdline").read_text()
        # repmgr's role is not a superuser
        with psycopg.connect(lab.dsn("p1"), autocommit=True) as c:
            assert c.execute("SELECT rolsuper, rolreplication FROM pg_roles WHERE rolname = 'repmgr'").fetchone() == (False, False)
        res = runner.invoke(app, ["status", "--name", name])
        assert res.exit_code == 0 and "repmgr's view: leader p1" in res.output
        assert "set by pglab (repmgr does not)" in res.output
        # a failover by hand while the primary runs: repmgr refuses, pglab says so in one line
        res = runner.invoke(app, ["failover", "--name", name, "--to", "s1"])
        assert res.exit_code == 2 and "already has an active primary server" in res.output.splitlines()[0]
        assert lab.ha_view().leader == "p1"
        # a standby killed and healed: its server and its repmgrd come back
        lab.fault("s2", "kill")
        assert lab.ctx.rt.services().pid("repmgrd-s2") is None
        assert "start repmgrd" in lab.heal("s2")
        lab.wait_for(lambda lb: lb.status().node("s2").sync_state == "async", timeout=30, what="s2 to stream again")

        # the failover drill in sync mode, the whole primary node killed: repmgrd promotes a standby
        # and nothing acknowledged is lost; the old primary comes back as a standby
        rep = lab.drill_failover(mode="sync", fault="kill")
        r = rep.results[0]
        assert r.passed, r.problems
        assert r.new_primary in ("s1", "s2") and r.check.lost == () and r.check.ok > 100
        assert r.rejoin is not None and r.rejoin.streaming
        new = r.new_primary
        # an independent clock: repmgr's own event log records the promotion once its check saw it
        # (every promote_check_interval = 1 s): after the fault, and after the server's own log says
        # it accepts writes (the time pglab reports), within one check
        ph = r.times.phases
        t_ev = _promoted_at(lab, new)
        assert ph.t_fault < ph.t_promoted <= t_ev < ph.t_promoted + 2.0
        assert ph.t_fault < ph.t_declared <= ph.t_promoted < ph.t_first_write
        view = lab.ha_view()
        assert view.leader == new and lab.disagreements(lab.status(), view) == {}
        assert {m.name: m.state for m in view.members}["p1"] == f"upstream {new}"
        assert any(e.kind == "standby_promote" and e.node == new for e in lab.manager.events())
        # pglab, not repmgr, set synchronous_standby_names on the new primary
        assert any(n.sync_state == "sync" for n in lab.status().nodes if n.name != new)

        # a failover repmgrd makes while no pglab command runs: the third node follows the new primary
        # through pglab's slot (made by the promote script), or repmgr refuses ("cannot attach to
        # follow target": seen in about 1 of 3 runs, where PostgreSQL itself could follow, and pglab's
        # re-pointing then streams); synchronous_standby_names stays empty until pglab sees the
        # takeover (here: `rejoin` of the old primary)
        log_of = {n: Path(lab.ctx.rt.paths(n).home) / "repmgr.log" for n in lab.ctx.state.nodes}
        mark = {n: len(p.read_text()) for n, p in log_of.items()}
        lab.fault(new, "kill")
        newer = lab.wait_for(lambda lb: next((n for n in lb.ctx.state.nodes if n != new and lb.manager._writable(n)), None),
                             timeout=60, what="repmgrd to promote another standby")
        third = next(n for n in lab.ctx.state.nodes if n not in (new, newer))

        def streams(node: str) -> bool:
            with psycopg.connect(lab.dsn(newer), autocommit=True) as c:
                return c.execute("SELECT count(*) FROM pg_stat_replication WHERE application_name = %s "
                                 "AND state = 'streaming'", (node,)).fetchone()[0] == 1
        lab.wait_for(lambda _: streams(third) or "cannot attach to follow target" in log_of[third].read_text()[mark[third]:],
                     timeout=30, what=f"{third} to follow {newer}, or repmgr to say it cannot")
        with psycopg.connect(lab.dsn(newer), autocommit=True) as c:
            assert c.execute("SHOW synchronous_standby_names").fetchone()[0] == ""
        rj = lab.rejoin(new)
        assert rj.streaming and lab.ctx.state.primary == newer and streams(third)
        with psycopg.connect(lab.dsn(newer), autocommit=True) as c:
            assert c.execute("SHOW synchronous_standby_names").fetchone()[0].startswith("FIRST 1")
        assert lab.disagreements() == {}

        # a switchover scripted without ssh: back to the rejoined node, the old primary rejoins
        # through `repmgr node rejoin`
        ch = lab.switchover(new)
        assert ch.new_primary == new and ch.old_primary == newer and ch.demoted
        assert f"{newer} rejoined (repmgr node rejoin --force-rewind)" in [step for step, _ in ch.steps], ch.steps
        assert lab.ha_view().leader == new and lab.status().primary == new
        with psycopg.connect(lab.dsn(role="primary"), autocommit=True) as c:
            assert c.execute("SELECT inet_server_port()").fetchone()[0] == lab.ctx.state.nodes[new].port
        assert lab.disagreements() == {}

        # async: no synchronous standby, and both standbys starved just before the kill. repmgrd
        # has no lag guard: it promotes one anyway, and exactly the writes that a copy of the old
        # primary's files has and the new one lacks are lost
        rep = lab.drill_failover(mode="async", fault="kill")
        r = rep.results[0]
        assert r.passed, r.problems
        assert r.new_primary != r.old_primary and len(r.check.lost) > 0
        assert r.lost_seen_on_old == len(r.check.lost)
        assert r.rejoin is not None and r.rejoin.streaming
        hba = lab.ctx.rt.read_file(r.old_primary, f"{lab.ctx.rt.paths(r.old_primary).data}/pg_hba.conf")
        assert "reject" not in hba   # the drill's lines are gone from the rejoined node
    finally:
        removed = lab.down()
    assert sum("repmgrd-" in x for x in removed) == 3
    assert leftovers(name) == []


@pytest.mark.slow
@pytest.mark.root
@pytest.mark.skipif(_repmgr_missing() is not None, reason=str(_repmgr_missing()))
def test_repmgr_does_not_fence_an_isolated_primary():
    """The caveat, shown: p1 cut off from the other nodes (its clients here still reach it);
    repmgrd promotes a standby, and nothing stops p1 from acknowledging writes as a primary too."""
    name = f"rmsb-{uuid.uuid4().hex[:5]}"
    lab = Lab.up(name=name, runtime="local", pg=15, ha="repmgr", ha_profile="fast", netns=True)
    try:
        lab.fault("p1", "isolate")
        new = lab.wait_for(lambda lb: next((n for n in ("s1", "s2") if lb.manager._writable(n)), None), timeout=60,
                           what="repmgrd to promote a standby")
        with psycopg.connect(lab.dsn("p1"), autocommit=True) as c:
            assert c.execute("SELECT pg_is_in_recovery()").fetchone()[0] is False
            c.execute("SET synchronous_commit = local")
            c.execute("CREATE TABLE split (id int)")    # acknowledged by the old primary, after the promotion
        assert set(lab.status().primaries) == {"p1", new}    # two primaries: a split brain
    finally:
        lab.down()
    assert leftovers(name) == []


# ---- on Docker ------------------------------------------------------------------------------------
@pytest.fixture
def repmgr15() -> str:
    require_runtime("docker")
    name = lab_images.image_name(repmgr_conf.PG_MAJOR)
    try:
        lab_images.manager_image("repmgr", repmgr_conf.PG_MAJOR)
    except RuntimeUnavailable as e:
        if IN_CI:
            pytest.fail(f"{e}; in CI .ci/run builds {name} with `pglab image build --pg 15 --if-missing`")
        pytest.skip(str(e))
    return name


@pytest.mark.docker
def test_repmgr_on_docker_refuses_a_topology_image_without_repmgr(repmgr15, tmp_path):
    refuses_an_image_without("repmgr", tmp_path)


@pytest.mark.slow
@pytest.mark.docker
def test_repmgr_on_docker_up_pause_sync_kill_drill_and_down(repmgr15):
    from lab.runtime import docker as drt
    name = f"rmd-{uuid.uuid4().hex[:6]}"
    lab = Lab.up(name=name, runtime="docker", pg=15, ha="repmgr", ha_profile="fast")
    try:
        assert lab.ctx.state.runtime == "docker"
        cs = {c.name: c for c in drt.client().containers.list(filters={"label": f"pglab.lab={name}"})}
        assert set(cs) == {f"pglab-{name}-{n}" for n in ("p1", "s1", "s2")}
        assert {c.image.tags[0] for c in cs.values()} == {repmgr15}
        st, view = lab.status(), lab.ha_view()
        assert st.primary == "p1" and view.leader == "p1" and view.error is None
        assert {m.name: (m.role, m.state) for m in view.members} == {
            "p1": ("leader", "registered"), "s1": ("standby", "upstream p1"), "s2": ("standby", "upstream p1")}
        assert lab.disagreements(st, view) == {}
        assert st.node("s1").sync_state == "sync"
        # repmgrd runs in each node's own container, as the image's server user, with the image's repmgr
        for n in ("p1", "s1", "s2"):
            rows = cs[f"pglab-{name}-{n}"].top(ps_args="-o pid,uid,args")["Processes"]
            assert any(int(r[1]) == lab.ctx.rt.uid and r[-1].startswith("/usr/lib/postgresql/15/bin/repmgrd ")
                       for r in rows), rows
        # peers as the runtime names them (the containers on the lab network), connect_timeout kept,
        # the password in the passfile only
        rt, pw = lab.ctx.rt, lab.ctx.state.ha["password"]
        conf = rt.read_file("s1", f"{rt.paths('s1').home}/repmgr.conf")
        a = lab.ctx.state.nodes["s1"]
        assert f"host={a.peer_host} port={a.peer_port}" in conf and a.peer_host == f"pglab-{name}-s1"
        assert "connect_timeout=2" in conf and "pg_bindir='/usr/lib/postgresql/15/bin'" in conf and pw not in conf
        assert pw in rt.read_file("s1", f"{rt.paths('s1').home}/.pgpass_repmgr")

        # a paused standby (docker pause, its repmgrd frozen with it) comes back with repmgrd running
        svc = rt.services()
        pid = svc.pid("repmgrd-s2")
        lab.fault("s2", "pause")
        assert drt.client().containers.get(f"pglab-{name}-s2").status == "paused"
        lab.heal("s2")
        assert svc.pid("repmgrd-s2") == pid
        lab.wait_for(lambda lb: lb.status().node("s2").sync_state == "async", timeout=30, what="s2 to stream again")

        # the failover drill in sync mode, the whole primary node killed (its repmgrd with it): a
        # standby promoted by repmgrd, nothing acknowledged lost, the old primary back as a standby
        rep = lab.drill_failover(mode="sync", fault="kill")
        r = rep.results[0]
        assert r.passed, r.problems
        assert r.old_primary == "p1" and r.new_primary in ("s1", "s2")
        assert r.check.lost == () and r.check.ok > 100
        assert r.rejoin is not None and r.rejoin.streaming
        new = r.new_primary
        # an independent clock: repmgr's own event log (written in the new primary's container)
        ph = r.times.phases
        t_ev = _promoted_at(lab, new)
        assert ph.t_fault < ph.t_promoted <= t_ev < ph.t_promoted + 2.0
        view = lab.ha_view()
        assert view.leader == new and lab.disagreements(lab.status(), view) == {}
        assert {m.name: m.state for m in view.members}["p1"] == f"upstream {new}"
        assert all(c.state == "up" for c in view.components if c.kind == "repmgrd")
        assert any(n.sync_state == "sync" for n in lab.status().nodes if n.name != new)
        res = runner.invoke(app, ["status", "--name", name])
        assert res.exit_code == 0 and f"repmgr's view: leader {new}" in res.output
    finally:
        removed = lab.down()
    assert sum(x.startswith("repmgrd-") for x in removed) == 3
    assert leftovers(name) == []
