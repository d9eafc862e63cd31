"""pytest plugin (registered through the pytest11 entry point): a replicated cluster for your tests.

Fixtures
  pglab_cluster   a module-scoped lab (default: p1 primary, s1 sync, s2 async); configure it with
                  `pytestmark = pytest.mark.pglab(standbys=2, sync="ANY 1", topology="t.toml")`
  pglab           the module's lab, reset for this test: tables in the public schema of the
                  primary truncated (not re-created) and standbys caught up
  pglab_factory   make labs of your own (for tests that break them): pglab_factory(topology, **kw)

Options: --pglab-runtime auto|local|docker (or ini pglab_runtime), --pglab-keep (keep the labs of
failed tests and print how to reach them). On a failure the report gets the lab's status and the
last log lines of every server.
"""
from __future__ import annotations

import uuid
from typing import Any, Callable, Iterator

import pytest

from lab.api import Lab

_LABS_KEY = pytest.StashKey[dict]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pglab")
    group.addoption("--pglab-runtime", default=None, help="runtime for pglab fixtures: auto, local or docker")
    group.addoption("--pglab-keep", action="store_true", default=False,
                    help="keep the labs of failed tests for debugging (prints how to reach them)")
    parser.addini("pglab_runtime", "runtime for pglab fixtures (auto, local, docker)", default="auto")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "pglab(topology=None, standbys=2, sync=None): the pglab_cluster's shape")
    config.stash[_LABS_KEY] = {}


def _runtime(config: pytest.Config) -> str:
    return config.getoption("--pglab-runtime") or config.getini("pglab_runtime") or "auto"


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _track(request: pytest.FixtureRequest, lab: Lab) -> None:
    """Remember which labs a test used: a failure report shows them, --pglab-keep keeps them."""
    request.config.stash[_LABS_KEY].setdefault(request.node.nodeid, []).append(lab)


def _finish(request: pytest.FixtureRequest, lab: Lab) -> None:
    keep = request.config.getoption("--pglab-keep")
    failed = getattr(request.node, "_pglab_failed", False) or any(
        getattr(item, "_pglab_failed", False) for item in getattr(request.node, "items", []) or [])
    if keep and (failed or lab.name in _failed_labs(request.config)):
        tr = request.config.pluginmanager.get_plugin("terminalreporter")
        msg = (f"pglab: kept lab {lab.name} of a failed test: `pglab status --name {lab.name}`, "
               f"`pglab psql --name {lab.name}`; remove it with `pglab down --name {lab.name}`")
        if tr:
            tr.write_line(msg)
        return
    lab.down()


def _failed_labs(config: pytest.Config) -> set[str]:
    return getattr(config, "_pglab_failed_labs", set())


@pytest.fixture(scope="module")
def pglab_cluster(request: pytest.FixtureRequest) -> Iterator[Lab]:
    marker = request.node.get_closest_marker("pglab")
    kwargs: dict[str, Any] = dict(marker.kwargs) if marker else {}
    topology = kwargs.pop("topology", None)
    lab = Lab.up(topology, name=_unique("pt"), runtime=kwargs.pop("runtime", _runtime(request.config)), **kwargs)
    try:
        yield lab
    finally:
        _finish(request, lab)


@pytest.fixture
def pglab(pglab_cluster: Lab, request: pytest.FixtureRequest) -> Lab:
    """The module's lab with its user tables emptied (TRUNCATE is much cheaper than a new lab)."""
    _track(request, pglab_cluster)
    with pglab_cluster.connect() as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables WHERE schemaname = 'public'").fetchall()]
        if tables:
            conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
    pglab_cluster.wait_caught_up(timeout=30)
    return pglab_cluster


@pytest.fixture
def pglab_factory(request: pytest.FixtureRequest) -> Iterator[Callable[..., Lab]]:
    made: list[Lab] = []

    def make(topology: Any = None, **kwargs: Any) -> Lab:
        kwargs.setdefault("runtime", _runtime(request.config))
        kwargs.setdefault("name", _unique("pf"))
        lab = Lab.up(topology, **kwargs)
        made.append(lab)
        _track(request, lab)
        return lab

    yield make
    for lab in made:
        _finish(request, lab)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    labs = item.config.stash[_LABS_KEY].get(item.nodeid, [])
    if not labs:
        return
    item._pglab_failed = True  # type: ignore[attr-defined]
    failed = getattr(item.config, "_pglab_failed_labs", set())
    failed.update(lab.name for lab in labs)
    item.config._pglab_failed_labs = failed  # type: ignore[attr-defined]
    for lab in labs:
        report.sections.append((f"pglab {lab.name}: status", _status_text(lab)))
        report.sections.append((f"pglab {lab.name}: server logs", _logs_text(lab)))


def _status_text(lab: Lab) -> str:
    try:
        st = lab.status()
    except Exception as e:  # noqa: BLE001 - a report must not fail
        return f"(status unavailable: {e})"
    lines = []
    for n in st.nodes:
        lines.append(f"{n.name:8} {n.role.value:11} tl={n.timeline} sync={n.sync_state} upstream={n.upstream} "
                     f"replay_lag={n.replay_lag_bytes}B/{n.replay_lag_s}s" + (f" error={n.error}" if n.error else ""))
    return "\n".join(lines)


def _logs_text(lab: Lab, lines: int = 15) -> str:
    out = []
    for node in lab.nodes:
        try:
            out.append(f"--- {node} ---\n{lab.logs(node, lines)}")
        except Exception as e:  # noqa: BLE001
            out.append(f"--- {node} --- (log unavailable: {e})")
    return "\n".join(out)
