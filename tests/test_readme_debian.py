"""The README's first command, as written, on a stock Debian 12: a lab comes up.

A container made from a bare bookworm root filesystem (debootstrap minbase: no Python, no
PostgreSQL, no venv module) gets a copy of this checkout, as a clone would be, and runs the
README's first command as root. Packages come from the Debian mirror this machine's apt uses (the
same one the image builds use, read at run time), Python packages from the index this machine's pip
uses: the container shares the host's network (this container only) and gets pip's configuration
and the local paths it names, read-only. Then `pglab status --json` in the container must show p1
primary with s1 sync and s2 async streaming, and `pglab down` clears it.

Takes minutes (debootstrap, apt, pip): marked `install` and `docker`; in CI it must run.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from lab.runtime import docker_answers
from lab.runtime.images import debian_mirror

from .conftest import IN_CI

pytestmark = [pytest.mark.install, pytest.mark.docker, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
#: The README's first command (section "Set up on a fresh machine"), run as written from the clone.
FIRST_COMMAND = ("apt-get update && apt-get install -y python3-venv && python3 -m venv .venv "
                 "&& .venv/bin/pip install . && .venv/bin/pglab up")
CLONE = "/root/pglab"   # where the command runs in the container, as root, like a user's clone


def test_readme_shows_the_tested_first_command():
    """The README's first set-up command is the one the container test runs (they cannot drift)."""
    text = (ROOT / "README.md").read_text()
    setup = text.split("## Set up on a fresh machine", 1)[-1]
    first = re.search(r"```(?:sh|bash|console)?\n(.*?)\n```", setup, re.S)
    assert first, "README.md: no command block under 'Set up on a fresh machine'"
    assert first.group(1).strip() == FIRST_COMMAND, (
        f"README's first command is\n  {first.group(1).strip()}\nbut the tested one is\n  {FIRST_COMMAND}")


def require_docker() -> None:
    if not docker_answers():
        if IN_CI:
            pytest.fail("no Docker daemon answers; in CI the Docker tests must run (.ci/run starts dockerd)")
        pytest.skip("no Docker daemon answers (start dockerd to run the Docker tests)")
    if not shutil.which("debootstrap"):
        if IN_CI:
            pytest.fail("debootstrap is not installed; .ci/run installs it")
        pytest.skip("debootstrap is not installed (apt-get install debootstrap)")


def docker(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if check:
        assert p.returncode == 0, f"docker {' '.join(args)[:300]} exited {p.returncode}\n{p.stdout[-4000:]}\n{p.stderr[-3000:]}"
    return p


HOST = "/run/pglab-host"   # where the host's pip files appear in the container (read-only)


def pip_settings() -> tuple[dict[str, str], list[tuple[str, str]]]:
    """This machine's pip configuration as PIP_* variables for the container, and the mounts it needs.

    `pip config list` prints `global.extra-index-url='…'` (from files) and `:env:.find-links='…'`
    (from variables). Local paths in the values (a file:// index, a wheel directory, a constraints
    file, a CA bundle) are mounted read-only under HOST and the values rewritten to match; a
    file:// index's pages link to files beside its `simple` directory, so its parent is mounted."""
    out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    env: dict[str, str] = {}
    mounts: dict[str, str] = {}
    for line in out.splitlines():
        m = re.match(r"^[^.]*\.([a-z0-9-]+)='(.*)'$", line.strip())
        if not m:
            continue
        key, value = m.groups()
        parts = []
        for part in value.split():
            scheme = "file://" if part.startswith("file://") else ""
            local = part.removeprefix("file://")
            if local.startswith("/") and os.path.exists(local):
                top = os.path.dirname(local.rstrip("/")) if os.path.basename(local.rstrip("/")) == "simple" else local
                mounts[top] = HOST + top
                part = scheme + HOST + local
            parts.append(part)
        env["PIP_" + key.upper().replace("-", "_")] = " ".join(parts)
    return env, sorted(mounts.items())


@pytest.fixture
def bookworm_image() -> Iterator[str]:
    """A stock Debian 12 image (debootstrap minbase from this machine's mirror), removed afterwards."""
    require_docker()
    tag = f"pglab-test-bookworm:{uuid.uuid4().hex[:8]}"
    rootfs = Path(tempfile.mkdtemp(prefix="pglab-test-bookworm-", dir="/var/tmp"))
    try:
        p = subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs), debian_mirror()],
                           capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
        for absent in ("usr/bin/python3", "usr/lib/postgresql", "usr/bin/psql"):
            assert not (rootfs / absent).exists(), f"the base is not bare: it has /{absent}"
        tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        imp = subprocess.run(["docker", "import", "--change", "ENV LANG=C.UTF-8", "-", tag], stdin=tar.stdout,
                             capture_output=True, text=True, timeout=600)
        assert tar.stdout is not None
        tar.stdout.close()
        assert tar.wait() == 0 and imp.returncode == 0, imp.stderr
        shutil.rmtree(rootfs, ignore_errors=True)
        yield tag
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
        docker("rmi", "-f", tag, check=False)


def test_readme_first_command_brings_a_lab_up_on_stock_debian(bookworm_image: str):
    name = f"pglab-test-readme-{uuid.uuid4().hex[:8]}"
    pip_env, mounts = pip_settings()
    # --init: PID 1 reaps orphans, as a machine's init does (`sleep` would leave killed servers as zombies)
    args = ["run", "-d", "--init", "--name", name, "--network", "host", "--label", "pglab.test=readme",
            "-v", f"{ROOT}:/src:ro"]
    for src, dest in mounts:
        args += ["-v", f"{src}:{dest}:ro"]
    for k, v in pip_env.items():
        args += ["-e", f"{k}={v}"]
    docker(*args, bookworm_image, "sleep", "infinity")
    try:
        # the clone: this checkout's tracked and new files, without its build leftovers
        docker("exec", name, "sh", "-c", f"mkdir -p {CLONE} && cd /src && tar -c --exclude=./.git --exclude=./.venv "
               f"--exclude=__pycache__ --exclude=./build --exclude='*.egg-info' . | tar -x -C {CLONE}")
        assert docker("exec", name, "sh", "-c", "command -v python3 || true").stdout.strip() == ""
        r = docker("exec", "-w", CLONE, "-e", "DEBIAN_FRONTEND=noninteractive", name, "bash", "-c", FIRST_COMMAND,
                   timeout=1500, check=False)
        assert r.returncode == 0, f"README's first command failed ({r.returncode}):\n{r.stdout[-5000:]}\n{r.stderr[-4000:]}"
        s = docker("exec", "-w", CLONE, name, ".venv/bin/pglab", "status", "--json").stdout
        status = json.loads(s)
        nodes = {n["name"]: n for n in status["nodes"]}
        assert status["primary"] == "p1" and nodes["p1"]["role"] == "primary", status
        assert nodes["s1"]["sync_state"] == "sync" and nodes["s1"]["stream_state"] == "streaming", nodes["s1"]
        assert nodes["s2"]["sync_state"] == "async" and nodes["s2"]["stream_state"] == "streaming", nodes["s2"]
        docker("exec", "-w", CLONE, name, ".venv/bin/pglab", "down")
        left = docker("exec", name, "sh", "-c", "cat /proc/[0-9]*/comm 2>/dev/null | grep -c '^postgres' || true")
        assert left.stdout.strip() == "0", "server processes are left in the container after `pglab down`"
    finally:
        docker("rm", "-f", "-v", name, check=False)
