"""pglab installs into a clean Python and runs from there: every import it needs is declared.

Each test builds a fresh virtual environment (no system site-packages), installs a copy of this
checkout into it with pip as a user would, and runs the installed `pglab`. The machine's own
Python and the environment the suite runs in may hold packages pglab forgets to declare; a fresh
venv does not. pip uses this machine's own index configuration (pip.conf, PIP_* variables):
once per session it downloads what `.[test]` needs into a wheelhouse (resolving over the network
takes minutes here), and each venv installs from that wheelhouse alone (`--no-index`), so a
package pglab does not declare is not there either. The lowest-versions test resolves on its own.

The venvs live in a world-readable temporary directory: as root the servers run as the
`postgres` user, which must be able to read the server files the lab picks (they may live in the
venv, e.g. the embedded PostgreSQL 18). Marked `install`: minutes in all; CI runs them.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Iterator

import pytest

from lab.cluster.bootstrap import down

from .conftest import assert_clean, unique

pytestmark = [pytest.mark.install, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
PIP_TIMEOUT = 900


def _env(venv: Path) -> dict[str, str]:
    """This machine's environment, minus anything that would let the venv see this checkout."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
    env["VIRTUAL_ENV"] = str(venv)
    return env


def run(venv: Path, args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(args, cwd=cwd, env=_env(venv), capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 0, f"{' '.join(args)} exited {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p


def copy_checkout(dest: Path) -> Path:
    """What `pip install .` needs from a clone, copied so the build leaves nothing in this checkout."""
    src = dest / "src"
    src.mkdir()
    for f in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / f, src / f)
    for d in ("lab", "tests"):
        shutil.copytree(ROOT / d, src / d, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return src


def readable_tmpdir(prefix: str) -> Path:
    """A world-readable temporary directory (mkdtemp makes 0700 ones)."""
    d = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    d.chmod(0o755)
    return d


@pytest.fixture
def workdir() -> Iterator[Path]:
    d = readable_tmpdir("pglab-install-")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def wheelhouse() -> Iterator[Path]:
    """Every wheel `pip install '.[test]'` needs (and the build backend), downloaded once."""
    d = readable_tmpdir("pglab-wheelhouse-")
    try:
        src = copy_checkout(d)
        p = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "-d", str(d / "wheels"), ".[test]",
                            "setuptools>=64", "wheel"], cwd=src, capture_output=True, text=True, timeout=PIP_TIMEOUT,
                           stdin=subprocess.DEVNULL)
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
        yield d / "wheels"
    finally:
        shutil.rmtree(d, ignore_errors=True)


def fresh_venv(workdir: Path) -> Path:
    venv = workdir / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=120)
    cfg = (venv / "pyvenv.cfg").read_text()
    assert re.search(r"include-system-site-packages\s*=\s*false", cfg), cfg
    return venv


def pip_install(venv: Path, cwd: Path, *args: str, wheels: Path | None = None) -> None:
    only = ["--no-index", "--find-links", str(wheels)] if wheels else []
    run(venv, [str(venv / "bin/python"), "-m", "pip", "install", "-q", *only, *args], cwd, timeout=PIP_TIMEOUT)


def installed_lab(venv: Path, cwd: Path) -> Path:
    p = run(venv, [str(venv / "bin/python"), "-c", "import lab; print(lab.__file__)"], cwd)
    return Path(p.stdout.strip())


def lab_round_trip(venv: Path, cwd: Path) -> dict:
    """pglab --help, up --runtime local, status --json, down, all from the venv; returns the status."""
    pglab = str(venv / "bin/pglab")
    assert "Usage" in run(venv, [pglab, "--help"], cwd).stdout
    name = unique("inst")
    try:
        run(venv, [pglab, "up", "--runtime", "local", "--name", name], cwd)
        status = json.loads(run(venv, [pglab, "status", "--name", name, "--json"], cwd).stdout)
        run(venv, [pglab, "down", "--name", name], cwd)
    finally:
        down(name)
    assert_clean(name)
    return status


def assert_default_lab(status: dict) -> None:
    nodes = {n["name"]: n for n in status["nodes"]}
    assert status["primary"] == "p1" and nodes["p1"]["role"] == "primary", status
    for s in ("s1", "s2"):
        assert nodes[s]["role"] == "standby" and nodes[s]["stream_state"] == "streaming", nodes[s]
    assert nodes["s1"]["sync_state"] == "sync" and nodes["s2"]["sync_state"] == "async", nodes


def test_pip_install_then_up_status_down(workdir: Path, wheelhouse: Path):
    """A normal install (`pip install .`) in a venv without system site-packages runs a lab."""
    src = copy_checkout(workdir)
    venv = fresh_venv(workdir)
    pip_install(venv, src, ".", wheels=wheelhouse)
    assert installed_lab(venv, workdir).is_relative_to(venv), "lab imported from outside the venv"
    # typer below 0.29 (pyproject.toml says why) runs on click, declared; 0.29's pydantic is not there
    found = run(venv, [str(venv / "bin/python"), "-c", "import importlib.util as u; "
                       "print(bool(u.find_spec('click')), bool(u.find_spec('pydantic')))"], workdir).stdout.split()
    assert found == ["True", "False"], found
    assert_default_lab(lab_round_trip(venv, workdir))


def test_editable_install_runs_pglab(workdir: Path, wheelhouse: Path):
    """`pip install -e .` (what a contributor does) gives a working `pglab` too."""
    src = copy_checkout(workdir)
    venv = fresh_venv(workdir)
    pip_install(venv, src, "-e", ".", wheels=wheelhouse)
    assert installed_lab(venv, workdir).is_relative_to(src)
    assert "Usage" in run(venv, [str(venv / "bin/pglab"), "--help"], workdir).stdout
    run(venv, [str(venv / "bin/pglab"), "ls"], workdir)


def test_test_extra_runs_the_fast_tests(workdir: Path, wheelhouse: Path):
    """`pip install '.[test]'` brings what the README's test command needs (pytest, --reruns)."""
    src = copy_checkout(workdir)
    venv = fresh_venv(workdir)
    pip_install(venv, src, ".[test]", wheels=wheelhouse)
    shutil.rmtree(src / "lab")   # the tests must run against the installed package
    p = run(venv, [str(venv / "bin/python"), "-m", "pytest", "-q", "--reruns", "1", "-p", "no:cacheprovider",
                   "tests/test_units.py"], src)
    assert re.search(r"\d+ passed", p.stdout), p.stdout[-2000:]


def lowest_requirements() -> list[str]:
    """pyproject's dependencies (and the test extra) with each lower bound pinned: ">=" read as "==";
    an upper bound (a release known not to work, said in pyproject.toml) is dropped."""
    proj = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [*proj["dependencies"], *proj["optional-dependencies"]["test"]]
    pinned = []
    for r in reqs:
        assert ">=" in r, f"{r}: give a tested lower bound (>=)"
        pinned.append(re.sub(r",\s*<[^,;]*", "", r).replace(">=", "=="))
    return pinned


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _trim_zeros(version: str) -> str:
    return re.sub(r"(\.0)+$", "", version)


def test_lowest_declared_versions_run_a_lab(workdir: Path):
    """The lower bounds in pyproject.toml are real: with exactly those versions, a lab runs."""
    src = copy_checkout(workdir)
    venv = fresh_venv(workdir)
    pins = lowest_requirements()
    pip_install(venv, src, *pins)
    pip_install(venv, src, "--no-deps", ".")
    freeze = run(venv, [str(venv / "bin/python"), "-m", "pip", "freeze"], workdir).stdout
    installed = {_norm(line.split("==")[0]): line.split("==")[1] for line in freeze.splitlines() if "==" in line}
    for pin in pins:
        pkg, version = re.sub(r"\[.*\]", "", pin).split("==")
        assert _trim_zeros(installed.get(_norm(pkg), "")) == _trim_zeros(version), f"{pin} not installed:\n{freeze}"
    shutil.rmtree(src / "lab")
    p = run(venv, [str(venv / "bin/python"), "-m", "pytest", "-q", "--reruns", "1", "-p", "no:cacheprovider",
                   "tests/test_units.py", "tests/test_bad_input.py"], src, timeout=600)
    assert re.search(r"\d+ passed", p.stdout), p.stdout[-2000:]
    assert_default_lab(lab_round_trip(venv, workdir))
