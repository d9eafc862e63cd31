"""--ha patroni on the Docker runtime: the HA image (PostgreSQL 18, Patroni, etcd, HAProxy, built
offline by `pglab image build --pg 18 --ha`), one real lab of 3 etcd members, 3 Patroni agents and
HAProxy as containers on the lab's network, drilled end to end; bad input keeps its one line.
CI builds the image in .ci/run."""
from __future__ import annotations

import uuid

import docker
import psycopg
import pytest
from typer.testing import CliRunner

from lab.api import Lab
from lab.cli import app
from lab.runtime import docker as drt
from lab.runtime import images as lab_images

from .conftest import IN_CI, assert_clean, require_runtime

pytestmark = pytest.mark.docker
runner = CliRunner()


@pytest.fixture
def ha18() -> str:
    require_runtime("docker")
    name = lab_images.image_name(18, ha=True)
    try:
        drt.client().images.get(name)
    except docker.errors.ImageNotFound:
        if IN_CI:
            pytest.fail(f"no {name}; in CI .ci/run builds it with `pglab image build --pg 18 --ha`")
        pytest.skip(f"no {name} (build it with `pglab image build --pg 18 --ha`)")
    return name


def test_the_ha_image_holds_patroni_etcd_haproxy_and_the_server(ha18: str):
    img = drt.client().images.get(ha18)
    assert img.labels.get("pglab.pg") == "18" and img.labels.get("pglab.patroni", "").startswith("4.")
    p = lab_images.HA_PROGRAMS
    script = (f"{p['patroni']} --version && {p['etcd']} --version | head -n 1 && {p['haproxy']} -v | head -n 1 && "
              "postgres --version && id postgres")
    out = drt.client().containers.run(ha18, ["sh", "-c", script], remove=True, network_mode="none").decode()
    assert f"patroni {img.labels['pglab.patroni']}" in out
    assert "etcd Version: 3." in out and "HAProxy version" in out and "(PostgreSQL) 18." in out


@pytest.mark.parametrize("args, words", [
    (["--pg", "16"], "needs the image pglab-ha:16"),
])
def test_docker_patroni_without_its_image_says_one_line_and_leaves_nothing(args, words):
    require_runtime("docker")
    name = f"bad-{uuid.uuid4().hex[:6]}"
    res = runner.invoke(app, ["up", "--name", name, "--runtime", "docker", "--ha", "patroni", *args])
    assert res.exit_code == 2, res.output
    assert words in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) <= 2    # the line, and how to fix it
    assert_clean(name)


def test_docker_patroni_refuses_a_topology_image(tmp_path):
    require_runtime("docker")
    name = f"bad-{uuid.uuid4().hex[:6]}"
    f = tmp_path / "t.toml"
    f.write_text('[postgres]\nversion = 18\nimage = "pglab-postgres:18"\n[ha]\nmanager = "patroni"\n')
    res = runner.invoke(app, ["up", "--name", name, "--runtime", "docker", "--topology", str(f)])
    assert res.exit_code == 2, res.output
    assert "runs the lab's HA image, not [postgres] image = 'pglab-postgres:18'" in res.output
    assert "Traceback" not in res.output
    assert_clean(name)


def _ip(container: str, network: str) -> str:
    c = drt.client().containers.get(container)
    return c.attrs["NetworkSettings"]["Networks"][network]["IPAddress"]


@pytest.mark.slow
def test_patroni_on_docker_up_status_faults_sync_kill_drill_and_down(ha18: str):
    name = f"pd-{uuid.uuid4().hex[:6]}"
    lab = Lab.up(name=name, runtime="docker", ha="patroni", ha_profile="fast", pg=18)
    net = f"pglab-{name}"
    try:
        assert lab.ctx.state.runtime == "docker"
        # every part is a container of the lab, on the lab's network, from the HA image
        cs = {c.name: c for c in drt.client().containers.list(filters={"label": f"pglab.lab={name}"})}
        parts = {"p1", "s1", "s2", "e1", "e2", "e3", "haproxy"}
        assert set(cs) == {f"pglab-{name}-{x}" for x in parts}
        assert {c.image.tags[0] for c in cs.values()} == {ha18}
        # what is published is published on the loopback address only: the servers and HAProxy
        for c in cs.values():
            for binds in (c.attrs["HostConfig"].get("PortBindings") or {}).values():
                assert all(b["HostIp"] == "127.0.0.1" for b in binds), c.name
        assert {p for p in cs[f"pglab-{name}-haproxy"].attrs["HostConfig"]["PortBindings"]} == {"5000/tcp", "5001/tcp"}

        # Patroni's view beside PostgreSQL's: leader p1, s1 synchronous through synchronous_mode
        st, view = lab.status(), lab.ha_view()
        assert st.primary == "p1" and view.leader == "p1"
        assert {m.name: m.role for m in view.members} == {"p1": "leader", "s1": "sync_standby", "s2": "replica"}
        assert st.node("s1").sync_state == "sync"
        assert lab.disagreements(st, view) == {}
        etcd = [c for c in view.components if c.kind == "etcd" and c.name.startswith("e")]
        assert len(etcd) == 3 and sum(c.state == "leader" for c in etcd) == 1
        proxy = {c.name: c for c in view.components if c.kind == "haproxy"}
        assert proxy["primary"].detail == "routes to p1" and proxy["primary"].state == "up"
        # HAProxy's read-write port reaches p1 (its address on the lab network, as Docker says), the
        # read-only one a standby
        rw = lab.dsn(role="primary")
        with psycopg.connect(rw, autocommit=True) as c:
            assert c.execute("SELECT pg_is_in_recovery()").fetchone()[0] is False
            assert c.execute("SELECT host(inet_server_addr())").fetchone()[0] == _ip(f"pglab-{name}-p1", net)
        assert f"port={proxy['primary'].address.split(':')[1]}" in rw
        with psycopg.connect(lab.dsn(role="standby"), autocommit=True) as c:
            assert c.execute("SELECT pg_is_in_recovery()").fetchone()[0] is True
        res = runner.invoke(app, ["status", "--name", name])
        assert res.exit_code == 0 and "patroni's view: leader p1" in res.output and "leader key" in res.output
        res = runner.invoke(app, ["dsn", "--name", name, "--role", "primary"])
        assert res.exit_code == 0 and f"port={proxy['primary'].address.split(':')[1]}" in res.output

        # losing the etcd leader (its process in its container): etcd elects another, Patroni's leader stays
        lab.fault("etcd-leader", "kill")
        lab.wait_for(lambda lb: sum(c.state == "leader" for c in lb.ha_view().components if c.kind == "etcd") == 1,
                     timeout=30, what="etcd to elect another leader")
        assert lab.manager.leader() == "p1"
        # a paused standby (docker pause, its agent frozen with it) comes back with its agent running
        lab.fault("s2", "pause")
        assert drt.client().containers.get(f"pglab-{name}-s2").status == "paused"
        lab.heal("s2")
        lab.wait_for(lambda lb: {m.name: m.state for m in lb.ha_view().members}.get("s2") == "streaming",
                     timeout=60, what="s2 to stream again")

        # the failover drill in sync mode, the whole primary node killed: nothing acknowledged is lost
        rep = lab.drill_failover(mode="sync", fault="kill")
        r = rep.results[0]
        assert r.passed, r.problems
        assert r.new_primary == "s1" and r.check.lost == () and r.check.ok > 100
        assert r.rejoin is not None and r.rejoin.streaming
        # the RTO against Patroni's own record: its history dates s1's promotion by the mtime of the
        # new timeline's history file (the server writes it before it accepts writes), which must lie
        # between the fault and the first write the drill saw acknowledged there
        ph = r.times.phases
        promoted = [e for e in lab.manager.events()
                    if e.kind == "promoted" and e.node == "s1" and "Patroni's history" in e.detail]
        assert promoted and ph.t_fault - 0.01 <= promoted[-1].t <= ph.t_first_write + 0.01
        assert r.times.rto_s == pytest.approx(ph.t_first_write - ph.t_fault)
        with psycopg.connect(lab.dsn(role="primary"), autocommit=True) as c:   # HAProxy followed
            assert c.execute("SELECT pg_is_in_recovery()").fetchone()[0] is False
            assert c.execute("SELECT host(inet_server_addr())").fetchone()[0] == _ip(f"pglab-{name}-s1", net)
    finally:
        removed = lab.down()
    assert any(r.startswith("patroni-p1") for r in removed) and sum(r.startswith("etcd-e") for r in removed) == 3
    assert f"container pglab-{name}-haproxy" in removed
    assert_clean(name)
