"""compose/: the rendered project runs under plain docker-compose and streams; nothing is left."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from lab.cli import app
from lab.runtime.compose import compose_file, node_conf, node_script
from lab.runtime import docker as drt
from lab.model.topology import default_topology
from lab.wait import wait_until

from .conftest import IN_CI, require_runtime, unique

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


def test_checked_in_compose_dir_is_what_render_writes():
    topo = default_topology()
    assert (ROOT / "compose/docker-compose.yml").read_text() == compose_file(topo)
    assert (ROOT / "compose/pglab-node.sh").read_text() == node_script()
    for n in ("p1", "s1", "s2"):
        assert (ROOT / f"compose/conf/{n}.conf").read_text() == node_conf(topo, n)


def test_render_any_topology(tmp_path):
    f = tmp_path / "t.toml"
    f.write_text('[replication]\nsynchronous_standby_names = "ANY 1 (b, c)"\n'
                 '[[nodes]]\nname = "a"\n[[nodes]]\nname = "b"\n[[nodes]]\nname = "c"\napply_delay = "5s"\n')
    out = tmp_path / "out"
    r = runner.invoke(app, ["compose", "render", "--topology", str(f), "--out", str(out)])
    assert r.exit_code == 0, r.output
    text = (out / "docker-compose.yml").read_text()
    assert "127.0.0.1:${PGLAB_PORT_C:-}:5432" in text and "0.0.0.0" not in text
    assert "synchronous_standby_names = 'ANY 1 (b, c)'" in (out / "conf/a.conf").read_text()
    assert "recovery_min_apply_delay = '5s'" in (out / "conf/c.conf").read_text()
    assert oct((out / ".env").stat().st_mode & 0o777) == "0o600"


def _compose(cwd: Path, project: str, *args: str, env: dict | None = None, timeout: float = 180):
    return subprocess.run(["docker-compose", "-p", project, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


@pytest.mark.docker
@pytest.mark.slow
def test_rendered_compose_streams_under_plain_docker_compose(tmp_path):
    require_runtime("docker")
    if not shutil.which("docker-compose"):
        if IN_CI:
            pytest.fail("docker-compose is missing; .ci/run installs it")
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    from lab.runtime.images import usable_image
    image = usable_image()   # the default major, which the rendered file names too
    out = tmp_path / "proj"
    assert runner.invoke(app, ["compose", "render", "--out", str(out)]).exit_code == 0
    project = unique("pglabc")
    env = {"PGLAB_IMAGE": image}
    try:
        r = _compose(out, project, "up", "-d", env=env)
        assert r.returncode == 0, r.stdout + r.stderr
        port = _compose(out, project, "port", "p1", "5432", env=env).stdout.strip().rsplit(":", 1)[1]
        password = dict(line.split("=", 1) for line in (out / ".env").read_text().split())["POSTGRES_PASSWORD"]

        def streaming():
            with psycopg.connect(host="127.0.0.1", port=port, user="postgres", password=password,
                                 dbname="postgres", connect_timeout=2) as c:
                rows = c.execute("SELECT application_name, state, sync_state FROM pg_stat_replication").fetchall()
            return sorted(rows) == [("s1", "streaming", "sync"), ("s2", "streaming", "async")]
        wait_until(streaming, timeout=60, what="s1 (sync) and s2 (async) to stream from p1",
                   logs=lambda: _compose(out, project, "logs", "--tail", "20", env=env).stdout)
        # published on the loopback address only
        ps = drt.client().containers.list(filters={"label": f"com.docker.compose.project={project}"})
        assert len(ps) == 3
        for c in ps:
            assert {b["HostIp"] for b in c.ports["5432/tcp"]} == {"127.0.0.1"}
    finally:
        r = _compose(out, project, "down", "-v", "--remove-orphans", env=env)
    assert r.returncode == 0, r.stderr
    flt = {"label": f"com.docker.compose.project={project}"}
    c = drt.client()
    left = [x.name for x in c.containers.list(all=True, filters=flt)] + \
           [x.name for x in c.volumes.list(filters=flt)] + [x.name for x in c.networks.list(filters=flt)]
    assert left == []
