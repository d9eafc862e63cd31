"""pytest plugin (registered through the pytest11 entry point): fixtures that give a test a lab.

Fixtures:
  pglab_cluster  a module-scoped lab (default topology), torn down after the module
  pglab_factory  make your own labs: pglab_factory(topology=None, **Lab.up kwargs)
Options: --pglab-runtime (auto|local|docker), --pglab-keep (keep labs of failed tests).
"""
from __future__ import annotations

import uuid
from typing import Iterator

import pytest

from .api import Lab


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pglab")
    group.addoption("--pglab-runtime", default=None, help="runtime for pglab fixtures: auto, local or docker")
    group.addoption("--pglab-keep", action="store_true", default=False,
                    help="keep the labs of failed tests for debugging (prints how to reach them)")
    parser.addini("pglab_runtime", "runtime for pglab fixtures (auto, local, docker)", default="auto")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "pglab(**kwargs): options for the pglab_cluster fixture (topology, standbys, sync)")


def _runtime(config: pytest.Config) -> str:
    return config.getoption("--pglab-runtime") or config.getini("pglab_runtime") or "auto"


def _unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def pglab_cluster(request: pytest.FixtureRequest) -> Iterator[Lab]:
    marker = request.node.get_closest_marker("pglab")
    kwargs = dict(marker.kwargs) if marker else {}
    lab = Lab.up(kwargs.pop("topology", None), name=_unique("pt"), runtime=_runtime(request.config), **kwargs)
    try:
        yield lab
    finally:
        lab.down()


@pytest.fixture
def pglab_factory(request: pytest.FixtureRequest) -> Iterator:
    made: list[Lab] = []

    def make(topology=None, **kwargs) -> Lab:
        kwargs.setdefault("runtime", _runtime(request.config))
        kwargs.setdefault("name", _unique("pf"))
        lab = Lab.up(topology, **kwargs)
        made.append(lab)
        return lab

    yield make
    for lab in made:
        lab.down()
