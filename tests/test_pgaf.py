"""pg_auto_failover as the lab's failover manager: the [ha] section and node shape (pure), bad input
(one line, exit 2, nothing left), and one real lab (a monitor + three keepers, PostgreSQL 15):
status, a sync-mode kill drill, and the monitor as the single point of failure; another for the
async drill (a starved standby promoted, or refused when too far behind). On Docker (the lab's 15
image holds pg_auto_failover): the monitor in a container of its own, a keeper in each node's,
a sync kill drill timed against the monitor's event log, and nothing left after `down`."""
from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from urllib.parse import urlsplit

import psycopg
import pytest
from typer.testing import CliRunner

from lab.api import Lab
from lab.cli import app
from lab.errors import InvalidInput, LabError, RuntimeUnavailable
from lab.failover.drill import same_timeline, timeline
from lab.ha import fit, pgaf_monitor
from lab.ha.pgaf_conf import MAJOR, PROFILES, pg_autoctl, shape
from lab.model import lsn
from lab.model.haspec import ha_from_dict
from lab.model.topology import default_topology
from lab.runtime import servers
from lab.runtime.leftovers import leftovers
from tests.conftest import IN_CI, assert_clean, refuses_an_image_without, require_runtime

runner = CliRunner()


# ---- pure ----------------------------------------------------------------------------------------
def test_the_ha_section_keeps_its_profile_and_refuses_patroni_keys():
    spec = ha_from_dict({"manager": "pg_auto_failover", "profile": "fast"})
    assert (spec.manager, spec.profile) == ("pg_auto_failover", "fast")
    assert ha_from_dict(spec.to_dict()) == spec
    with pytest.raises(InvalidInput, match="applies to manager"):
        ha_from_dict({"manager": "pg_auto_failover", "ttl": 20}, "t.toml")
    # every profile names the same settings; fast never goes below what keepers can report
    assert set(PROFILES["fast"]) == set(PROFILES["default"])
    fast = PROFILES["fast"]
    assert fast["network_partition_timeout"] * 1000 < fast["primary_demote_timeout"]
    assert PROFILES["default"]["network_partition_timeout"] * 1000 < PROFILES["default"]["primary_demote_timeout"]


def test_the_synchronous_standby_is_in_the_quorum_and_the_others_never_promoted():
    assert shape(default_topology(2)) == {"p1": (True, 50), "s1": (True, 50), "s2": (False, 0)}


def test_a_lab_that_names_no_version_gets_postgresql_15_and_one_that_does_keeps_it():
    topo = default_topology(2).with_changes(ha=ha_from_dict({"manager": "pg_auto_failover"}))
    assert fit(topo).pg_version == 15
    assert fit(topo.with_changes(pg_version=18)).pg_version == 18    # refused later, in one line
    assert fit(default_topology(2)).pg_version is None                # other managers: untouched


# ---- bad input -------------------------------------------------------------------------------------
def _other_major() -> int | None:
    return next((s.major for s in servers.installed() if s.major != 15), None)


@pytest.mark.parametrize("args, words", [
    (["--runtime", "docker", "--pg", "18"], "needs PostgreSQL 15"),
    (["--ha-profile", "slow"], "unknown [ha] profile"),
    (["--netns"], "runs on 127.0.0.1 only"),
])
def test_up_with_bad_input_says_one_line_and_leaves_nothing(args, words):
    name = f"bad-{uuid.uuid4().hex[:6]}"
    res = runner.invoke(app, ["up", "--name", name, "--ha", "pg_auto_failover", *args])
    assert res.exit_code == 2, res.output
    assert words in res.output and "Traceback" not in res.output
    assert leftovers(name) == []


def test_another_postgresql_version_is_refused_before_anything_is_made():
    major = _other_major()
    if major is None:
        pytest.skip("only PostgreSQL 15 is installed here")
    name = f"bad-{uuid.uuid4().hex[:6]}"
    res = runner.invoke(app, ["up", "--name", name, "--runtime", "local", "--ha", "pg_auto_failover", "--pg", str(major)])
    assert res.exit_code == 2, res.output
    assert "needs PostgreSQL 15" in res.output and "--pg 15" in res.output
    assert leftovers(name) == []


def test_a_missing_pg_autoctl_is_named_with_its_package(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))     # a PATH without pg_autoctl
    name = f"bad-{uuid.uuid4().hex[:6]}"
    res = runner.invoke(app, ["up", "--name", name, "--runtime", "local", "--ha", "pg_auto_failover", "--pg", "15"])
    assert res.exit_code == 2, res.output
    assert "needs pg_autoctl" in res.output and "pg-auto-failover-cli" in res.output
    assert leftovers(name) == []


# ---- one real lab ----------------------------------------------------------------------------------
def _missing() -> str | None:
    try:
        pg_autoctl()
        s = servers.find(15)
    except Exception as e:  # noqa: BLE001 - the reason to skip
        return str(e)
    if not os.path.exists(f"/usr/share/postgresql/{s.major}/extension/pgautofailover.control"):
        return "postgresql-15-auto-failover is not installed"
    if os.geteuid() != 0:
        return "pg_autoctl runs as the postgres user: needs root"
    return None


def _in_recovery(lab: Lab, node: str) -> bool | None:
    try:
        with psycopg.connect(lab.dsn(node), autocommit=True) as c:
            return c.execute("SELECT pg_is_in_recovery()").fetchone()[0]
    except psycopg.Error:
        return None


@pytest.mark.slow
@pytest.mark.root
@pytest.mark.skipif(_missing() is not None and not IN_CI, reason=str(_missing()))
def test_pg_auto_failover_lab_status_drill_and_the_monitor_as_single_point_of_failure(tmp_path):
    name = f"af-{uuid.uuid4().hex[:6]}"
    lab = Lab.up(name=name, runtime="local", ha="pg_auto_failover", ha_profile="fast", pg=15)
    try:
        # the monitor's view beside PostgreSQL's: p1 primary, s1 in the write quorum, s2 not
        st, view = lab.status(), lab.ha_view()
        assert st.primary == "p1" and view.leader == "p1"
        assert {m.name: m.role for m in view.members} == {"p1": "leader", "s1": "quorum_standby", "s2": "replica"}
        assert st.node("s1").sync_state == "quorum" and st.node("s2").sync_state == "async"
        assert lab.disagreements(st, view) == {}
        for m in view.members:     # the monitor's timelines are PostgreSQL's own
            assert m.timeline == st.node(m.name).timeline
        # the monitor's settings are the profile's, read back from the monitor itself
        h, p = lab.ctx.state.ha["monitor"]
        with psycopg.connect(pgaf_monitor.dsn(h, p, str(lab.ctx.state.pgpass_path)), autocommit=True) as c:
            period = c.execute("SHOW pgautofailover.health_check_period").fetchone()[0]
            demote = c.execute("SHOW pgautofailover.primary_demote_timeout").fetchone()[0]
        assert (period, demote) == ("1s", "5s")
        res = runner.invoke(app, ["status", "--name", name])
        assert res.exit_code == 0, res.output
        assert "pg_auto_failover's view: leader p1" in res.output and "monitor" in res.output
        # `pg_autoctl show uri`: the lab's nodes, read-write (what the lab's multi-host DSN lists)
        uri = urlsplit(lab.manager.uri())
        hosts = {tuple(x.rsplit(":", 1)) for x in uri.netloc.split(",")}
        assert hosts == {(a.host, str(a.port)) for a in lab.ctx.state.nodes.values()}
        assert "target_session_attrs=read-write" in uri.query
        # nothing listens beyond 127.0.0.1 (pg_autoctl's default would be '*'), as the kernel says
        for port in [a.port for a in lab.ctx.state.nodes.values()] + [p]:
            out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
            addrs = {line.split()[3].rsplit(":", 1)[0] for line in out.splitlines()}
            assert addrs == {"127.0.0.1"}, out

        # partition is the runtime's: the local one refuses it in one line, saying where it works
        res = runner.invoke(app, ["fault", "partition", "s2", "--name", name])
        assert res.exit_code == 2, res.output
        assert "partition on a pg_auto_failover lab: a partition on the local runtime needs per-node network " \
               "namespaces" in " ".join(res.output.split()) and "--runtime docker" in res.output
        assert Lab.open(name).ctx.state.faults.get("s2", []) == []     # nothing recorded as in force

        # a switchover through the CLI: `pg_autoctl perform promotion --name s1`
        res = runner.invoke(app, ["switchover", "--to", "s1", "--name", name])
        assert res.exit_code == 0, res.output
        assert "p1 streams from s1" in res.output
        lab = Lab.open(name)    # the CLI changed the lab's record of its primary
        st = lab.status()
        assert st.node("s1").role.value == "primary" and st.node("p1").role.value == "standby"
        assert st.node("p1").sync_state == "quorum" and st.node("s1").timeline == 2
        # the servers' own logs (pg_autoctl turns on their logging collector) are kept beside the
        # agents': the promotion is there in PostgreSQL's words, with the timeline status read
        kept = lab.save_logs(tmp_path / "logs")
        s1_server = "".join(p.read_text() for p in kept if p.name.startswith("postgres-s1-"))
        assert "selected new timeline ID: 2" in s1_server
        assert any(p.name.startswith("postgres-monitor-") for p in kept)

        # the failover drill in sync mode, the primary node killed: nothing acknowledged is lost,
        # p1 is promoted (s2 has candidate priority 0) and s1 comes back as a standby by itself
        rep = lab.drill_failover(mode="sync", fault="kill")
        r = rep.results[0]
        assert r.passed, r.problems
        assert (r.old_primary, r.new_primary) == ("s1", "p1") and r.check.lost == () and r.check.ok > 100
        assert r.rejoin is not None and r.rejoin.streaming
        st = lab.status()
        assert st.node("p1").role.value == "primary" and st.node("s1").role.value == "standby"
        assert st.node("p1").timeline == 3 and lab.ha_view().leader == "p1"
        # the new primary names its quorum standby a moment after the monitor says it settled
        lab.wait_for(lambda lb: lb.disagreements() == {}, timeout=30, what="the monitor and PostgreSQL to agree")

        # the single point of failure: the monitor dead, the primary killed, nobody is promoted
        lab.fault("monitor", "kill")
        view = lab.ha_view()
        assert view.error and "cannot fail over" in view.error
        assert [c.state for c in view.components if c.kind == "monitor"] == ["down"]
        lab.fault("p1", "kill")
        deadline = time.monotonic() + 2 * (PROFILES["fast"]["node_considered_unhealthy_timeout"]
                                           + PROFILES["fast"]["primary_demote_timeout"]) / 1000 + 5
        while time.monotonic() < deadline:
            assert _in_recovery(lab, "s1") is True and _in_recovery(lab, "s2") is True
            time.sleep(0.5)
        # the monitor back: it fails over by itself, to s1 (s2 has candidate priority 0)
        lab.heal("monitor")
        rec = lab.manager.wait_for_takeover("p1", time.time(), 120)
        assert rec.new_primary == "s1" and _in_recovery(lab, "s1") is False
    finally:
        removed = lab.down()
    assert any("pgaf-monitor" in r for r in removed)
    assert_clean(name)


@pytest.mark.slow
@pytest.mark.root
@pytest.mark.skipif(_missing() is not None and not IN_CI, reason=str(_missing()))
def test_a_candidate_behind_the_async_standby_is_fast_forwarded_and_the_drill_reads_its_timeline(tmp_path):
    """The monitor fast-forwards a candidate that is behind another standby (WAL fetched from it
    first) before promoting it: the path behind the 161 writes lost in the whole-matrix run
    (docs/ha-managers.md). Made here on purpose: s1's WAL receiver frozen while p1 writes 80 MB
    that do not wait for it, then p1 frozen. Whatever pg_auto_failover makes of it, the timeline
    pglab reads on the new primary must be what PostgreSQL's own log says: a new one after
    "selected new timeline ID", else the old one, and the drill's rule flags exactly that case."""
    name = f"af-{uuid.uuid4().hex[:6]}"
    lab = Lab.up(name=name, runtime="local", ha="pg_auto_failover", ha_profile="fast", pg=15)
    receiver = None
    try:
        assert timeline(lab.ctx, "p1") == 1
        receiver = lab.connect("s1").execute("SELECT pid FROM pg_stat_wal_receiver").fetchone()[0]
        os.kill(receiver, signal.SIGSTOP)
        with lab.connect("p1") as c:       # WAL that does not wait for s1, more than its socket holds
            c.execute("SET synchronous_commit = local")
            c.execute("CREATE TABLE bulk AS SELECT g, repeat('x', 2000) AS pad FROM generate_series(1, 40000) g")
        got = {n: lsn.parse(lab.connect(n).execute("SELECT pg_last_wal_receive_lsn()::text").fetchone()[0])
               for n in ("s1", "s2")}
        assert got["s2"] - got["s1"] > 50_000_000, got
        t0 = time.time()
        lab.fault("p1", "pause")
        os.kill(receiver, signal.SIGCONT)
        receiver = None
        rec = lab.manager.wait_for_takeover("p1", t0, 120)
        assert rec.new_primary == "s1"     # s2 has candidate priority 0
        tli = lab.wait_for(lambda lb: timeline(lb.ctx, "s1"), timeout=30, what="s1 to answer as a primary")
        kept = lab.save_logs(tmp_path / "logs")
        server_log = "".join(p.read_text() for p in sorted(kept) if p.name.startswith("postgres-s1-"))
        keeper_log = next(p for p in kept if p.name == "pgaf-s1.log").read_text()
        assert "Fetching WAL from upstream node 3" in keeper_log and "Fast-forward is done" in keeper_log
        promoted = "selected new timeline ID: 2" in server_log
        assert tli == (2 if promoted else 1), (tli, server_log[-2000:])
        said = same_timeline("p1", 1, "s1", tli)
        assert (said is None) == promoted, said
    finally:
        if receiver is not None:
            os.kill(receiver, signal.SIGCONT)
        try:
            lab.heal("p1")
        except LabError:
            pass        # down removes it whatever state it is in
        removed = lab.down()
    assert removed
    assert_clean(name)


@pytest.mark.slow
@pytest.mark.root
@pytest.mark.skipif(_missing() is not None and not IN_CI, reason=str(_missing()))
def test_pg_auto_failover_async_drill_promotes_a_starved_standby_or_refuses_one_too_far_behind():
    """Async: every standby out of the replication quorum, both starved just before the kill. The
    monitor's health checks only connect to the servers, so the starved standbys stay `secondary`
    and it promotes one: the writes it never received are lost, exactly those a copy of the old
    primary's files has. With promote_wal_log_threshold below the lag, it promotes nobody; the
    drill then brings the old primary back and nothing is lost. Sync afterwards: the quorum is
    back and nothing is lost."""
    name = f"afa-{uuid.uuid4().hex[:6]}"
    lab = Lab.up(name=name, runtime="local", ha="pg_auto_failover", ha_profile="fast", pg=15)
    try:
        mdsn = lab.manager._monitor_dsn()
        t_start = time.time()
        rep = lab.drill_failover(mode="async", fault="kill")
        r = rep.results[0]
        assert r.passed, r.problems
        # s2 has candidate priority 0: s1 is the only one the monitor may promote
        assert (r.old_primary, r.new_primary) == ("p1", "s1") and len(r.check.lost) > 0
        assert r.lost_seen_on_old == len(r.check.lost)
        assert r.rejoin is not None and r.rejoin.streaming
        hba = lab.ctx.rt.read_file("p1", f"{lab.ctx.rt.paths('p1').data}/pg_hba.conf")
        assert "reject" not in hba   # the drill's lines are gone from the rejoined node
        # the monitor's own record: nobody sent to catchingup while starved, s1 chosen after the kill
        evs = pgaf_monitor.events(mdsn, t_start)
        t_fault = r.times.phases.t_fault
        assert not [e for e in evs if e.t < t_fault and e.goal == "catchingup"]
        assert any(e.node == "s1" and e.goal == "prepare_promotion" and e.t > t_fault for e in evs)
        lab.wait_for(lambda lb: lb.disagreements() == {}, timeout=30, what="the monitor and PostgreSQL to agree")

        # the monitor's threshold below any lag: it promotes nobody; the drill ends that by starting
        # the old primary's keeper again, and it leads again with every acknowledged write
        before = pgaf_monitor.current_settings(mdsn)["promote_wal_log_threshold"]
        pgaf_monitor.apply_settings(mdsn, {"promote_wal_log_threshold": 1})
        try:
            t_start = time.time()
            rep = lab.drill_failover(mode="async", fault="kill")
        finally:
            pgaf_monitor.apply_settings(mdsn, {"promote_wal_log_threshold": int(before)})
        r = rep.results[0]
        assert r.passed, r.problems
        assert (r.old_primary, r.new_primary) == ("s1", "s1") and r.check.lost == () and r.check.ok > 100
        assert "promoted nobody" in r.loss_line and "promote_wal_log_threshold (1 B)" in r.loss_line
        assert r.times.rto_s is not None and r.times.rto_s > 3.0     # unavailable: the monitor's bound, then the refusal
        evs = pgaf_monitor.events(mdsn, t_start)
        t_fault = r.times.phases.t_fault
        # the LSN the reason names is the one the standby reported to the monitor
        best = r.loss_line.split("the most advanced standby, ")[1].split(",")[0]
        reported = r.loss_line.split(", reported ")[1].split(",")[0]
        assert any(e.node == best and e.goal == "report_lsn" and f"with LSN {reported}:" in e.description for e in evs)
        assert not [e for e in evs if e.t > t_fault and e.node != "s1" and e.goal == "prepare_promotion"]
        st = lab.status()
        assert st.primary == "s1" and {st.node(n).role.value for n in ("p1", "s2")} == {"standby"}
        lab.wait_for(lambda lb: lb.disagreements() == {}, timeout=30, what="the monitor and PostgreSQL to agree")

        # sync again: the lab's quorum back (p1, s1 in it), p1 promoted, nothing lost
        rep = lab.drill_failover(mode="sync", fault="kill")
        r = rep.results[0]
        assert r.passed, r.problems
        assert (r.old_primary, r.new_primary) == ("s1", "p1") and r.check.lost == ()
        assert {m.name: m.tags["quorum"] for m in lab.ha_view().members} == {"p1": True, "s1": True, "s2": False}
    finally:
        removed = lab.down()
    assert any("pgaf-monitor" in x for x in removed)
    assert_clean(name)


# ---- on Docker ------------------------------------------------------------------------------------
@pytest.fixture
def pgaf15() -> str:
    require_runtime("docker")
    from lab.runtime import images  # lazy: the Docker SDK only where a daemon answers
    try:
        return images.manager_image("pg_auto_failover", MAJOR)
    except RuntimeUnavailable as e:
        if IN_CI:
            pytest.fail(f"{e}; in CI .ci/run builds {images.image_name(MAJOR)} with `pglab image build --pg 15 --if-missing`")
        pytest.skip(str(e))


@pytest.mark.docker
def test_pg_auto_failover_on_docker_refuses_a_topology_image_without_it(pgaf15, tmp_path):
    refuses_an_image_without("pg_auto_failover", tmp_path)


@pytest.mark.slow
@pytest.mark.docker
def test_pg_auto_failover_on_docker_up_kill_drill_timed_by_the_monitor_and_down(pgaf15):
    from lab.runtime import docker as drt  # lazy: as above
    name = f"afd-{uuid.uuid4().hex[:6]}"
    lab = Lab.up(name=name, runtime="docker", pg=15, ha="pg_auto_failover", ha_profile="fast")
    try:
        assert lab.ctx.state.runtime == "docker"
        # a container per data node and one for the monitor, all from the 15 image
        cs = {c.name: c for c in drt.client().containers.list(filters={"label": f"pglab.lab={name}"})}
        assert set(cs) == {f"pglab-{name}-{n}" for n in ("p1", "s1", "s2", "monitor")}
        assert {c.image.tags[0] for c in cs.values()} == {pgaf15}
        # the monitor's view beside PostgreSQL's: p1 primary, s1 in the write quorum, s2 not
        st, view = lab.status(), lab.ha_view()
        assert st.primary == "p1" and view.leader == "p1" and view.error is None
        assert {m.name: (m.role, m.state) for m in view.members} == {
            "p1": ("leader", "primary"), "s1": ("quorum_standby", "secondary"), "s2": ("replica", "secondary")}
        assert lab.disagreements(st, view) == {}
        # the monitor's own node table, read here: the nodes by their names on the lab network, each
        # server on its own container's port
        h, p = lab.ctx.state.ha["monitor"]
        mdsn = pgaf_monitor.dsn(h, p, str(lab.ctx.state.pgpass_path))
        rows = {r.name: r for r in pgaf_monitor.nodes(mdsn)}
        assert {n: (r.host, r.port) for n, r in rows.items()} == {
            n: (f"pglab-{name}-{n}", 5432) for n in ("p1", "s1", "s2")}
        # a keeper (pg_autoctl run) in each container, the monitor's too, as the image's server user
        for n in ("p1", "s1", "s2", "monitor"):
            procs = cs[f"pglab-{name}-{n}"].top(ps_args="-o pid,uid,args")["Processes"]
            assert any(int(r[1]) == lab.ctx.rt.uid and r[-1].startswith("pg_autoctl") for r in procs), procs
        # each container's server has its own socket directory, at the same path in every one
        sockets = lab.ctx.state.ha["sockets"]
        for n in ("p1", "s1", "s2", "monitor"):
            assert lab.ctx.rt.run(n, ["test", "-S", f"{sockets}/.s.PGSQL.5432"], check=False).rc == 0

        # the sync drill, the primary node killed (keeper and server): nothing acknowledged is
        # lost, s1 promoted (s2 has candidate priority 0), p1 back as a standby by itself
        t_start = time.time()
        rep = lab.drill_failover(mode="sync", fault="kill")
        r = rep.results[0]
        assert r.passed, r.problems
        assert (r.old_primary, r.new_primary) == ("p1", "s1") and r.check.lost == () and r.check.ok > 100
        assert r.rejoin is not None and r.rejoin.streaming
        # the RTO against an independent clock, the monitor's event log: the first write on s1 came
        # after the monitor chose s1 (prepare_promotion) and within 2 s of s1 reporting itself primary
        ph, evs = r.times.phases, pgaf_monitor.events(mdsn, t_start)
        t_fault = ph.t_fault
        chosen = next(e.t for e in evs if e.node == "s1" and e.goal == "prepare_promotion" and e.t > t_fault)
        leads = next(e.t for e in evs if e.node == "s1" and e.reported == e.goal and e.t > chosen
                     and e.reported in ("wait_primary", "primary"))
        assert r.times.rto_s is not None and abs(r.times.rto_s - (ph.t_first_write - t_fault)) < 0.01
        assert t_fault < chosen < ph.t_first_write < leads + 2.0
        # and within what the profile allows: unhealthy after 3 s, then the promotion
        assert 3.0 < r.times.rto_s < 60
        st = lab.status()
        assert st.node("s1").role.value == "primary" and st.node("p1").role.value == "standby"
        lab.wait_for(lambda lb: lb.disagreements() == {}, timeout=30, what="the monitor and PostgreSQL to agree")

        # the monitor's container: its keeper and server killed, pg_auto_failover cannot fail over
        lab.fault("monitor", "kill")
        view = lab.ha_view()
        assert view.error and "cannot fail over" in view.error
        lab.heal("monitor")
        lab.wait_for(lambda lb: lb.ha_view().leader == "s1", timeout=60, what="the monitor to answer again")
    finally:
        removed = lab.down()
    assert any(x.startswith("pgaf-monitor") for x in removed) and f"container pglab-{name}-monitor" in removed
    assert leftovers(name) == []
    assert drt.labelled(name) == []
