"""Failover managers: the [ha] section (pure), bad input (one line, exit 2, nothing left), and one
real Patroni lab (3 etcd members, 3 Patroni agents, HAProxy) drilled end to end."""
from __future__ import annotations

import os
import shutil
import uuid

import psycopg
import pytest
from typer.testing import CliRunner

from lab.api import Lab
from lab.cli import app
from lab.errors import InvalidInput
from lab.ha.patroni_conf import nosync, render
from lab.model.haspec import PROFILES, ha_from_dict, with_profile
from lab.model.topology import default_topology, topology_from_dict
from lab.runtime.leftovers import leftovers

runner = CliRunner()


# ---- the [ha] section ---------------------------------------------------------------------------
def test_profiles_and_overrides():
    fast = ha_from_dict({"manager": "patroni", "profile": "fast"})
    assert (fast.ttl, fast.loop_wait, fast.retry_timeout) == (20, 2, 5)
    dflt = ha_from_dict({"manager": "patroni"})
    assert (dflt.ttl, dflt.loop_wait, dflt.retry_timeout) == (30, 10, 10)
    mine = ha_from_dict({"manager": "patroni", "profile": "fast", "ttl": 25})
    assert (mine.ttl, mine.loop_wait) == (25, 2)
    assert with_profile(mine, "default").ttl == 25 and with_profile(mine, "default").loop_wait == 10
    # the saved form reads back as the same value
    assert ha_from_dict(mine.to_dict()) == mine
    assert set(PROFILES) == {"default", "fast"}


@pytest.mark.parametrize("bad, words", [
    ({"manager": "corosync"}, "unknown failover manager"),
    ({"manager": "patroni", "profile": "slow"}, "unknown [ha] profile"),
    ({"manager": "patroni", "ttl": 10}, "below Patroni's minimums"),
    ({"manager": "patroni", "ttl": 20, "loop_wait": 10, "retry_timeout": 10}, "exceeds ttl"),
    ({"manager": "patroni", "synchronous_mode": "maybe"}, "synchronous_mode"),
    ({"manager": "patroni", "etcd_members": 2}, "etcd_members"),
    ({"manager": "pglab", "ttl": 20}, "applies to manager = \"patroni\" only"),
    ({"manager": "patroni", "colour": 1}, "unknown key 'colour'"),
])
def test_bad_ha_sections_are_refused(bad, words):
    with pytest.raises(InvalidInput) as e:
        ha_from_dict(bad, "t.toml")
    assert words in e.value.line()


def test_s1_is_the_synchronous_standby_by_default_and_nosync_is_checked():
    topo = default_topology(2).with_changes(ha=ha_from_dict({"manager": "patroni", "profile": "fast"}))
    assert nosync(topo) == {"s2"}
    conf = render(lab="x", scope="pglab-x", namespace="/pglab-x-1/", node="s2", topology=topo, rest=("127.0.0.1", 1),
                  pg=("127.0.0.1", 2), home="/h", data_dir="/h/data", bin_dir="/b", etcd_hosts=["127.0.0.1:3"],
                  networks=["127.0.0.1/32"], superuser_password="pw1", replication_password="pw2")
    assert conf["tags"]["nosync"] is True
    dcs = conf["bootstrap"]["dcs"]
    assert (dcs["ttl"], dcs["loop_wait"], dcs["retry_timeout"], dcs["synchronous_mode"]) == (20, 2, 5, True)
    assert "host replication replicator 127.0.0.1/32 scram-sha-256" in conf["postgresql"]["pg_hba"]
    with pytest.raises(InvalidInput, match="nosync names 's9'"):
        topology_from_dict({"nodes": [{"name": "p1"}, {"name": "s1"}], "ha": {"manager": "patroni", "nosync": ["s9"]}})


# ---- bad input on the command line ----------------------------------------------------------------
@pytest.mark.parametrize("args, words", [
    (["--ha", "corosync"], "unknown failover manager"),
    (["--ha", "patroni", "--ha-profile", "slow"], "unknown [ha] profile"),
])
def test_up_with_a_bad_manager_says_one_line_and_leaves_nothing(args, words):
    name = f"bad-{uuid.uuid4().hex[:6]}"
    res = runner.invoke(app, ["up", "--name", name, *args])
    assert res.exit_code == 2, res.output
    assert words in res.output
    assert "Traceback" not in res.output
    assert leftovers(name) == []


def test_a_patroni_python_that_cannot_run_is_named(monkeypatch):
    monkeypatch.setenv("PGLAB_PATRONI_PYTHON", "/nonexistent/bin/python")
    name = f"bad-{uuid.uuid4().hex[:6]}"
    res = runner.invoke(app, ["up", "--name", name, "--runtime", "local", "--ha", "patroni"])
    assert res.exit_code == 2, res.output
    assert "PGLAB_PATRONI_PYTHON=/nonexistent/bin/python is not an executable Python" in res.output
    assert leftovers(name) == []


# ---- one real Patroni lab -------------------------------------------------------------------------
def _patroni_missing() -> str | None:
    try:
        from lab.ha.patroni import check_available
        check_available(default_topology(2).with_changes(ha=ha_from_dict({"manager": "patroni"})))
    except Exception as e:  # noqa: BLE001 - the reason to skip
        return str(e)
    if os.geteuid() != 0 or not shutil.which("runuser"):
        return "Patroni runs as the postgres user: needs root"
    return None


@pytest.mark.slow
@pytest.mark.root
@pytest.mark.skipif(_patroni_missing() is not None, reason=str(_patroni_missing()))
def test_patroni_lab_up_status_haproxy_sync_kill_drill_and_down():
    name = f"pt-{uuid.uuid4().hex[:6]}"
    lab = Lab.up(name=name, runtime="local", ha="patroni", ha_profile="fast")
    try:
        # Patroni's view beside PostgreSQL's: leader p1, s1 synchronous through synchronous_mode
        st, view = lab.status(), lab.ha_view()
        assert st.primary == "p1" and view.leader == "p1"
        roles = {m.name: m.role for m in view.members}
        assert roles == {"p1": "leader", "s1": "sync_standby", "s2": "replica"}
        assert st.node("s1").sync_state == "sync"
        assert lab.disagreements(st, view) == {}
        etcd = [c for c in view.components if c.kind == "etcd" and c.name.startswith("e")]
        assert len(etcd) == 3 and sum(c.state == "leader" for c in etcd) == 1
        # HAProxy: the read-write port reaches the leader, the read-only one a standby
        rw = lab.dsn(role="primary")
        assert "target_session_attrs" not in rw
        with psycopg.connect(rw, autocommit=True) as c:
            assert c.execute("SELECT pg_is_in_recovery()").fetchone()[0] is False
        with psycopg.connect(lab.dsn(role="standby"), autocommit=True) as c:
            assert c.execute("SELECT pg_is_in_recovery()").fetchone()[0] is True
        res = runner.invoke(app, ["status", "--name", name])
        assert res.exit_code == 0 and "patroni's view: leader p1" in res.output and "leader key" in res.output
        _top_shows_patroni(lab)

        # losing the etcd leader: etcd elects another, Patroni's leader stays
        lab.fault("etcd-leader", "kill")
        lab.wait_for(lambda lb: sum(c.state == "leader" for c in lb.ha_view().components if c.kind == "etcd") == 1,
                     timeout=30, what="etcd to elect another leader")
        assert lab.manager.leader() == "p1"

        # the failover drill in sync mode, the whole primary node killed: nothing acknowledged is lost
        rep = lab.drill_failover(mode="sync", fault="kill")
        r = rep.results[0]
        assert r.passed, r.problems
        assert r.new_primary == "s1" and r.check.lost == () and r.check.ok > 100
        assert r.rejoin is not None and r.rejoin.streaming
        with psycopg.connect(lab.dsn(role="primary"), autocommit=True) as c:   # HAProxy followed
            assert c.execute("SELECT pg_is_in_recovery()").fetchone()[0] is False
            assert c.execute("SELECT inet_server_port()").fetchone()[0] == lab.ctx.state.nodes["s1"].port

        # async: synchronous_mode off and the standbys starved just before the kill. Acknowledged
        # writes are lost, exactly the ones a copy of the old primary's files has and the new lacks
        rep = lab.drill_failover(mode="async", fault="kill")
        r = rep.results[0]
        assert r.passed, r.problems
        assert r.old_primary == "s1" and r.new_primary != "s1"
        assert len(r.check.lost) > 0 and r.lost_seen_on_old == len(r.check.lost)
        assert r.rejoin is not None and r.rejoin.inspected is not None and r.rejoin.streaming
        assert lab.manager.leader() == r.new_primary
    finally:
        removed = lab.down()
    assert any("patroni-p1" in r for r in removed) and sum("etcd-e" in r for r in removed) == 2   # one was killed
    assert leftovers(name) == []


def test_disagreements_between_the_manager_and_postgresql_are_named():
    from lab.cluster.status import LabStatus, NodeStatus, Role
    from lab.ha import Component, ManagerView, Member
    from lab.ha.compare import disagreements
    pg = LabStatus("x", "local", "p1", (NodeStatus("p1", Role.PRIMARY), NodeStatus("s1", Role.PRIMARY),
                                        NodeStatus("s2", Role.STANDBY, sync_state="async")), 0.0)
    view = ManagerView("patroni", "s1", (Member("p1", "replica"), Member("s1", "leader"), Member("s2", "sync_standby")),
                       (Component("etcd", "leader key", "/k", "held", "p1"),))
    odd = disagreements(pg, view)
    assert odd["lab"] == "2 nodes accept writes: p1, s1"
    assert odd["p1"] == "PostgreSQL accepts writes, patroni says replica"
    assert "s1" not in odd
    assert odd["s2"] == "patroni says sync_standby, the primary reports async"
    assert odd["leader key"] == "etcd's leader key names p1, the agents report s1"
    agree = LabStatus("x", "local", "p1", (NodeStatus("p1", Role.PRIMARY), NodeStatus("s1", Role.STANDBY, sync_state="sync")), 0.0)
    assert disagreements(agree, ManagerView("patroni", "p1", (Member("p1", "leader"), Member("s1", "sync_standby")))) == {}


def _top_shows_patroni(lab: Lab) -> None:
    """`pglab top` on a Patroni lab: the manager panel shows Patroni's members and its etcd and
    HAProxy (the dashboard needs the ui extra, which CI installs)."""
    import asyncio
    try:
        from lab.ui.app import TopApp
    except ImportError:
        if os.environ.get("CI") == "true":
            raise
        return

    async def drive() -> str:
        top = TopApp(lab)
        async with top.run_test(size=(180, 60)) as pilot:
            for _ in range(100):
                if top.manager_plain.startswith("patroni's view: leader p1") and "etcd" in top.manager_plain:
                    break
                await pilot.pause(0.2)
            await pilot.press("q")
            for _ in range(150):
                if not top.is_running:
                    break
                await pilot.pause(0.2)
        return top.manager_plain

    plain = asyncio.run(drive())
    assert plain.startswith("patroni's view: leader p1"), plain
    assert "s1 sync_standby" in plain and "etcd e1" in plain and "haproxy" in plain, plain


def test_haproxy_resolves_servers_given_by_name_again_and_again():
    """Containers are given by name (their address changes when a partition heals): HAProxy then
    resolves them through the network's DNS; addresses (local runtime) need no resolver."""
    from lab.ha.haproxy import render
    by_name = render(rw_port=5000, ro_port=5001, stats_socket="/s", bind="0.0.0.0",
                     servers=[("p1", "pglab-x-p1", 5432, "pglab-x-p1", 8008)])
    assert "resolvers lab\n    parse-resolv-conf" in by_name and "bind 0.0.0.0:5000" in by_name
    assert "server p1 pglab-x-p1:5432 check port 8008\n" in by_name
    assert "resolvers lab init-addr last,libc,none" in by_name
    by_ip = render(rw_port=6000, ro_port=6001, stats_socket="/s", servers=[("p1", "127.0.0.1", 7000, "127.0.0.1", 7001)])
    assert "resolvers" not in by_ip and "bind 127.0.0.1:6000" in by_ip


def test_both_runtimes_provide_every_service_operation():
    """A failover manager talks to lab.runtime.base.Services only: each runtime's implementation has
    all of it (the Docker one runs the services in the lab's containers)."""
    from lab.runtime.base import Services
    from lab.runtime.docker_services import DockerServices
    from lab.runtime.services import LocalServices
    wanted = {n for n, v in vars(Services).items() if callable(v) and not n.startswith("_")}
    assert {"host", "front", "reach", "bind_address", "program", "put", "start", "signal", "partition"} <= wanted
    for impl in (LocalServices, DockerServices):
        assert wanted <= set(dir(impl)), (impl.__name__, wanted - set(dir(impl)))


def test_managers_with_their_own_rules_refuse_pglabs_failover_options():
    """Pure logic: --fence or a --max-lag the user chose is refused in one line naming the option;
    the CLI's defaults and --force are not a choice, so they pass."""
    from lab.errors import InvalidInput
    from lab.failover.election import DEFAULT_MAX_LAG_BYTES
    from lab.ha.base import refuse_pglab_options
    refuse_pglab_options({"force": True, "max_lag_bytes": DEFAULT_MAX_LAG_BYTES, "fence_with": "none"}, "Patroni", "x")
    with pytest.raises(InvalidInput, match="--fence does not apply to a Patroni lab"):
        refuse_pglab_options({"fence_with": "kill"}, "Patroni", "x")
    with pytest.raises(InvalidInput, match="--max-lag does not apply to a pg_auto_failover lab"):
        refuse_pglab_options({"max_lag_bytes": 1}, "pg_auto_failover", "x")
    refuse_pglab_options({"max_lag_bytes": 1}, "repmgr", "x", ignore=("max_lag_bytes",))
    with pytest.raises(InvalidInput, match="--allow-data-loss does not apply to a repmgr lab"):
        refuse_pglab_options({"allow_data_loss": True}, "repmgr", "x")
