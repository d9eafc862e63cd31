"""What only the Docker runtime does: labels, loopback ports, name collisions, images, network faults.

The behaviour both runtimes share is tested once, parametrized by the `runtime` fixture
(tests/test_foundation.py, tests/test_bad_input.py)."""
from __future__ import annotations

import time

import docker
import psycopg
import pytest
from typer.testing import CliRunner

from lab import Lab
from lab.runtime import images as lab_images
from lab.model import state as lab_state
from lab.cluster.bootstrap import down
from lab.cli import app
from lab.runtime.leftovers import leftovers
from lab.runtime import docker as drt

from .conftest import assert_clean, require_runtime, unique

pytestmark = pytest.mark.docker
runner = CliRunner()
# partition/heal: notice a dead peer in seconds, not the default minute
QUICK_TIMEOUTS = ('[settings]\nwal_sender_timeout = "3s"\nwal_receiver_timeout = "3s"\n'
                  '[[nodes]]\nname = "p1"\n[[nodes]]\nname = "s1"\n')


@pytest.fixture
def dclient() -> docker.DockerClient:
    require_runtime("docker")
    return drt.client()


@pytest.fixture(scope="module")
def dlab(tmp_path_factory) -> Lab:
    """A Docker lab p1 + s1 (async) for the fault tests of this module."""
    require_runtime("docker")
    f = tmp_path_factory.mktemp("topo") / "t.toml"
    f.write_text(QUICK_TIMEOUTS)
    name = unique("dk")
    lab = Lab.up(str(f), name=name, runtime="docker")
    try:
        yield lab
    finally:
        down(name)
        assert_clean(name)


def _fails(args: list[str], needle: str, name: str) -> str:
    r = runner.invoke(app, args)
    assert r.exit_code == 2, r.output
    assert needle in r.output, r.output
    assert "Traceback" not in r.output
    assert leftovers(name) == []
    return r.output


def test_everything_is_labelled_and_ports_are_loopback_only(dlab: Lab, dclient):
    flt = {"label": f"pglab.lab={dlab.name}"}
    containers = dclient.containers.list(all=True, filters=flt)
    assert sorted(c.name for c in containers) == [f"pglab-{dlab.name}-p1", f"pglab-{dlab.name}-s1"]
    assert sorted(v.name for v in dclient.volumes.list(filters=flt)) == [c.name for c in sorted(containers, key=lambda c: c.name)]
    assert [n.name for n in dclient.networks.list(filters=flt)] == [f"pglab-{dlab.name}"]
    for c in containers:
        assert c.labels["pglab.node"] in ("p1", "s1")
        bindings = c.attrs["HostConfig"]["PortBindings"]["5432/tcp"]
        assert [b["HostIp"] for b in bindings] == ["127.0.0.1"]
        assert {p["HostIp"] for p in c.ports["5432/tcp"]} == {"127.0.0.1"}
        # passwords travel in files written through the archive API, never in a command or env
        inspected = str(c.attrs)
        assert dlab.ctx.state.superuser_password not in inspected
        assert dlab.ctx.state.replication_password not in inspected
    assert dlab.ctx.state.nodes["p1"].host == "127.0.0.1"


def test_host_clients_arrive_from_the_lab_subnet(dlab: Lab):
    import ipaddress
    with dlab.connect("p1") as c:
        addr = c.execute("SELECT inet_client_addr()::text").fetchone()[0]
    subnet = dlab.ctx.rt.hba_networks()[0]
    assert ipaddress.ip_address(addr.split("/")[0]) in ipaddress.ip_network(subnet)


def test_pause_and_resume(dlab: Lab, dclient):
    dlab.fault("s1", "pause")
    try:
        assert dclient.containers.get(f"pglab-{dlab.name}-s1").status == "paused"
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(dlab.dsn("s1"), connect_timeout=1).close()
        assert dlab.ctx.rt.postmaster_running("s1")   # frozen, not gone
    finally:
        dlab.heal("s1")
    assert dclient.containers.get(f"pglab-{dlab.name}-s1").status == "running"
    with dlab.connect("s1") as c:
        assert c.execute("SELECT pg_is_in_recovery()").fetchone()[0] is True


def test_partition_and_heal(dlab: Lab):
    rt = dlab.ctx.rt
    peer = dlab.ctx.state.nodes["p1"].peer_host
    dlab.fault("s1", "partition")
    try:
        # s1 no longer reaches p1 (not even its name), and clients no longer reach s1
        assert rt.run("s1", ["pg_isready", "-h", peer, "-t", "2"], check=False).rc != 0
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(dlab.dsn("s1"), connect_timeout=2).close()
        dlab.wait_for(lambda lab: "s1" not in {r[0] for r in lab.connect("p1").execute(
            "SELECT application_name FROM pg_stat_replication").fetchall()}, timeout=20,
            what="p1 to notice that s1 is gone")
    finally:
        dlab.heal("s1")
    assert rt.run("s1", ["pg_isready", "-h", peer, "-t", "5"], check=False).rc == 0
    dlab.wait_for(lambda lab: lab.status().node("s1").stream_state == "streaming", timeout=40,
                  what="s1 to stream again")
    with dlab.connect("s1") as c:   # the published port works again too
        assert c.execute("SELECT 1").fetchone()[0] == 1


def test_kill_is_a_crash_of_the_postmaster_not_of_the_container(dlab: Lab, dclient):
    dlab.fault("s1", "kill")
    assert not dlab.ctx.rt.postmaster_running("s1")
    assert dclient.containers.get(f"pglab-{dlab.name}-s1").status == "running"
    assert "start" in dlab.heal("s1")
    dlab.wait_for(lambda lab: lab.status().node("s1").stream_state == "streaming", timeout=30, what="s1 streaming")


def test_throttle_uses_tbf_in_the_container(dlab: Lab):
    if dlab.ctx.rt.image.startswith("postgres:"):
        pytest.skip("the official image has no tc")
    dlab.fault("s1", "throttle", rate="2mbit")
    try:
        out = dlab.ctx.rt.run("s1", ["tc", "qdisc", "show"]).out
        assert "tbf" in out and "2Mbit" in out
    finally:
        dlab.heal("s1")
    assert "tbf" not in dlab.ctx.rt.run("s1", ["tc", "qdisc", "show"]).out


def test_foreign_container_with_our_name_is_refused_and_left_alone(dclient):
    n = unique()
    foreign = dclient.containers.run(lab_images.usable_image(15), ["sleep", "infinity"], name=f"pglab-{n}-s1",
                                     detach=True, labels={"owner": "someone-else"})
    try:
        _fails(["up", "--name", n, "--runtime", "docker"],
               f"a container named pglab-{n}-s1 already exists and does not belong to lab {n}", n)
        foreign.reload()
        assert foreign.status == "running" and foreign.labels["owner"] == "someone-else"
        assert "pglab.lab" not in foreign.labels
    finally:
        foreign.remove(force=True)


def test_missing_image_says_how_to_get_one(dclient, monkeypatch, tmp_path):
    # no image of this major under either name: the exact command to build or pull one
    monkeypatch.setattr(lab_images, "image_name", lambda m: f"pglab-nothere:{m}")
    monkeypatch.setattr(lab_images, "official_name", lambda m: f"pglab-nothere-either:{m}")
    n = unique()
    out = _fails(["up", "--name", n, "--runtime", "docker"], "no PostgreSQL 18 image here", n)   # the default major
    assert "build it with `pglab image build --pg 18` or pull `pglab-nothere-either:18`" in out
    f = tmp_path / "t.toml"
    f.write_text('[postgres]\nimage = "pglab-no-such-image:1"\n[[nodes]]\nname = "p1"\n')
    _fails(["up", "--name", n, "--runtime", "docker", "--topology", str(f)],
           "image 'pglab-no-such-image:1' (set in the topology) is not here", n)


def test_missing_image_hint_names_the_real_commands():
    assert lab_images.build_hint(15) == "build it with `pglab image build --pg 15` or pull `postgres:15`"
    assert "pull `postgres:16`" in lab_images.build_hint(16)


def test_container_that_exits_during_bootstrap_shows_its_log(dclient, monkeypatch):
    monkeypatch.setattr(drt, "SLEEPER", ["sh", "-c", "echo simulated crash of the node; exit 3"])
    n = unique()
    out = _fails(["up", "--name", n, "--runtime", "docker", "--standbys", "1"], "exited (exit 3)", n)
    assert "simulated crash of the node" in out


def test_no_daemon_is_one_line(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    n = unique()
    _fails(["up", "--name", n, "--runtime", "docker"], "no Docker daemon answers at unix:///nonexistent/docker.sock", n)


def test_permission_denied_on_the_socket_is_one_line(monkeypatch):
    # root is never refused by the socket's mode, so feed the SDK's own error for EACCES
    def refuse(**_):
        raise docker.errors.DockerException("Error while fetching server API version: ('Connection aborted.', "
                                            "PermissionError(13, 'Permission denied'))")
    monkeypatch.setenv("DOCKER_HOST", "unix:///tmp/pglab-test-denied.sock")
    monkeypatch.setattr(drt.docker, "from_env", refuse)
    n = unique()
    _fails(["up", "--name", n, "--runtime", "docker"], "permission denied on the Docker socket", n)


def test_prune_removes_what_a_lost_lab_left(dclient):
    n = unique()
    Lab.up(name=n, runtime="docker", standbys=1)
    lab_state.remove_lab_dir(n)   # the state is lost; the containers are not
    assert any(x.startswith("container ") for x in leftovers(n))
    r = runner.invoke(app, ["prune"])
    assert r.exit_code == 0, r.output
    assert f"container pglab-{n}-p1" in r.output and f"network pglab-{n}" in r.output
    assert leftovers(n) == []


def test_down_removes_everything_quickly(dclient):
    n = unique()
    Lab.up(name=n, runtime="docker", standbys=2)
    t0 = time.monotonic()
    removed = down(n)
    elapsed = time.monotonic() - t0
    assert sum(r.startswith("container ") for r in removed) == 3
    assert sum(r.startswith("volume ") for r in removed) == 3
    assert leftovers(n) == []
    assert elapsed < 10   # generous: the bench measures it (target 2 s)
    assert down(n) == []


def test_nodes_are_copies_of_a_template_the_lab_does_not_own(dlab: Lab, dclient):
    """Cold clones on Docker: every node has the primary's system identifier without a
    pg_basebackup, and the template volume carries no lab label, so `down` keeps it for the next
    lab while `prune` removes it once no container mounts it."""
    from lab.runtime import docker_templates
    ids = set()
    for node in ("p1", "s1"):
        out = dlab.ctx.rt.run(node, ["pg_controldata", "-D", dlab.ctx.rt.paths(node).data], env={"LC_ALL": "C"}).out
        ids.add(next(line.split(":")[1].strip() for line in out.splitlines() if line.startswith("Database system identifier")))
    assert len(ids) == 1
    vol = dclient.volumes.get(docker_templates.VOLUME)
    assert "pglab.lab" not in (vol.attrs.get("Labels") or {})
    mounts = {m["Name"] for m in dclient.containers.get(f"pglab-{dlab.name}-s1").attrs["Mounts"] if m.get("Name")}
    assert docker_templates.VOLUME in mounts
    # in use: prune leaves it
    assert docker_templates.remove_unused(dclient) == []
    assert dclient.volumes.get(docker_templates.VOLUME)


def test_template_copies_from_the_host_or_by_exec(dclient, monkeypatch):
    """As root with the daemon on this machine, each node's copy of the template is made on the
    host while its container starts; without that view of the volumes, by an exec in each node
    afterwards. Either way the lab comes up streaming, and `down` leaves nothing."""
    import os
    if os.geteuid() != 0:
        pytest.skip("the host-side copy needs root")
    with monkeypatch.context() as m:
        m.setattr(drt.DockerRuntime, "_template_on_host", lambda self, recipe: None)
        n = unique("tx")
        lab = Lab.up(name=n, runtime="docker", standbys=1)     # makes the template if it is missing
        try:
            assert lab.ctx.rt._prefilled == set()
            assert _streaming(lab) == 1
        finally:
            down(n)
            assert_clean(n)
    n = unique("th")
    lab = Lab.up(name=n, runtime="docker", standbys=1)
    try:
        assert lab.ctx.rt._prefilled == {"p1", "s1"}
        assert _streaming(lab) == 1
    finally:
        down(n)
        assert_clean(n)


def _streaming(lab: Lab) -> int:
    from lab.cluster import sql
    return sql.scalar(lab.ctx.state, "p1", "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
