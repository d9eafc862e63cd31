"""Shared fixtures: labs on each runtime, each checked to leave nothing behind."""
from __future__ import annotations

import os
import pwd
import uuid
from typing import Callable, Iterator

import pytest

from lab import Lab
from lab.cluster.bootstrap import down
from lab.runtime.leftovers import leftovers
from lab.runtime import docker_answers, dsm, sysv

IN_CI = os.environ.get("CI") == "true"
RUNTIMES = ["local", pytest.param("docker", marks=pytest.mark.docker)]


def _server_uid() -> int | None:
    """The user the local servers run as: `postgres` when the suite runs as root."""
    if os.geteuid() != 0:
        return os.getuid()
    try:
        return pwd.getpwnam("postgres").pw_uid
    except KeyError:
        return None


@pytest.fixture(autouse=True)
def no_orphaned_shared_memory() -> Iterator[None]:
    """A killed server's System V segment must not outlive its lab: 4096 of them (kernel.shmmni)
    and no server on the machine can start. Nor its dynamic shared memory in /dev/shm, which
    holds memory until reboot. Checked after every test, once its labs are down."""
    uid = _server_uid()
    before = sysv.unattached(uid) if uid is not None else set()
    before_dsm = dsm.orphans(uid) if uid is not None else set()
    yield
    if uid is not None:
        left = sysv.unattached(uid) - before
        assert not left, f"the test left {len(left)} unattached shared memory segment(s) (ipcs -m): {sorted(left)}"
        left_dsm = dsm.orphans(uid) - before_dsm
        assert not left_dsm, f"the test left {len(left_dsm)} dynamic shared memory segment(s) in /dev/shm: {sorted(left_dsm)[:5]}"


def unique(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:7]}"


def require_runtime(kind: str) -> None:
    if kind != "docker":
        return
    if not docker_answers():
        if IN_CI:
            pytest.fail("no Docker daemon answers; in CI the Docker tests must run (.ci/run starts dockerd)")
        pytest.skip("no Docker daemon answers (start dockerd to run the Docker tests)")
    from lab.runtime.images import usable_image
    if usable_image() is None:   # the default major (18), which a lab runs unless told
        if IN_CI:
            pytest.fail("no PostgreSQL image; in CI .ci/run builds it with `pglab image build --pg 18`")
        pytest.skip("no PostgreSQL image (build one with `pglab image build --pg 18`)")


@pytest.fixture(params=RUNTIMES)
def runtime(request: pytest.FixtureRequest) -> str:
    require_runtime(request.param)
    return request.param


def assert_clean(name: str) -> None:
    left = leftovers(name)
    assert left == [], f"lab {name} left {left}"


def refuses_an_image_without(manager: str, tmp_path) -> None:
    """`up --runtime docker` with a topology whose image lacks the manager (the lab's 18 image):
    one line saying so, how to fix it, exit 2 and nothing made."""
    from typer.testing import CliRunner  # lazy: only the Docker tests of the managers use it
    from lab.cli import app  # lazy: as above
    from lab.runtime import images  # lazy: the Docker SDK is slow to import
    name = unique("bad")
    f = tmp_path / "t.toml"
    f.write_text(f'[postgres]\nversion = 15\nimage = "{images.image_name(18)}"\n[ha]\nmanager = "{manager}"\n')
    res = CliRunner().invoke(app, ["up", "--name", name, "--runtime", "docker", "--topology", str(f)])
    assert res.exit_code == 2, res.output
    assert f"needs an image with {manager}; {images.image_name(18)} has none" in res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) <= 2   # the line, the fix
    assert leftovers(name) == []


@pytest.fixture
def make_lab(runtime: str) -> Iterator[Callable[..., Lab]]:
    """Make labs on the test's runtime; after the test, `down` each and check nothing is left."""
    names: list[str] = []

    def make(topology=None, **kw) -> Lab:
        name = kw.pop("name", None) or unique()
        names.append(name)
        return Lab.up(topology, name=name, runtime=kw.pop("runtime", runtime), **kw)

    yield make
    for n in names:
        down(n)
        assert_clean(n)


@pytest.fixture(scope="module", params=RUNTIMES)
def shared_lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    """One default lab per runtime for tests that only look (module scope keeps the suite quick)."""
    require_runtime(request.param)
    name = unique("sh")
    lab = Lab.up(name=name, runtime=request.param)
    try:
        yield lab
    finally:
        down(name)
        assert_clean(name)
