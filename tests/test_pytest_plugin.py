"""The pytest plugin, tested with pytester: fixtures, reports on failure, --pglab-keep."""
from __future__ import annotations

import re

import pytest

from lab import list_labs
from lab.cluster.bootstrap import down
from lab.runtime.leftovers import leftovers

pytest_plugins = ["pytester"]

TWENTY_TESTS = '''
import pytest

@pytest.fixture(scope="module", autouse=True)
def schema(pglab_cluster):
    with pglab_cluster.connect() as c:
        c.execute("CREATE TABLE IF NOT EXISTS notes (id serial PRIMARY KEY, body text)")

@pytest.mark.parametrize("i", range(20))
def test_write_then_read(pglab, i):
    with pglab.connect() as c:
        c.execute("INSERT INTO notes (body) VALUES (%s)", (f"note {i}",))
        # reset between tests: each test starts from an empty table
        assert c.execute("SELECT count(*) FROM notes").fetchone()[0] == 1
    pglab.wait_caught_up()
    with pglab.connect("s1") as c:
        assert c.execute("SELECT body FROM notes").fetchone()[0] == f"note {i}"
'''


def _labs_before() -> set[str]:
    # only the plugin's labs (pt-…, pf-…): other tests may run labs at the same time
    return {n for n in list_labs() if n.startswith(("pt-", "pf-"))}


def test_module_cluster_twenty_tests(pytester: pytest.Pytester, runtime: str):
    before = _labs_before()
    pytester.makepyfile(test_twenty=TWENTY_TESTS)
    result = pytester.runpytest_subprocess(f"--pglab-runtime={runtime}", "-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=20)
    assert _labs_before() == before  # the module's lab is gone


def test_failure_report_has_status_and_logs(pytester: pytest.Pytester):
    before = _labs_before()
    pytester.makepyfile(test_fail='''
def test_breaks(pglab):
    pglab.fault("s2", "kill")
    assert False, "boom"
''')
    result = pytester.runpytest_subprocess("--pglab-runtime=local", "-q", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert re.search(r"pglab pt-\w+: status", out)
    assert re.search(r"s2\s+down", out)
    assert "server logs" in out and "--- p1 ---" in out
    assert _labs_before() == before


def test_keep_keeps_the_lab_of_a_failed_test(pytester: pytest.Pytester):
    before = _labs_before()
    pytester.makepyfile(test_keep='''
def test_fails(pglab_factory):
    lab = pglab_factory(standbys=1)
    assert lab.status().node("s1").sync_state == "nope"
''')
    result = pytester.runpytest_subprocess("--pglab-runtime=local", "--pglab-keep", "-q", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    m = re.search(r"pglab: kept lab (pf-\w+) of a failed test", result.stdout.str())
    assert m, result.stdout.str()
    name = m.group(1)
    try:
        assert name in list_labs()
    finally:
        down(name)
    assert leftovers(name) == [] and _labs_before() == before


def test_marker_configures_the_cluster(pytester: pytest.Pytester):
    pytester.makepyfile(test_marker='''
import pytest
pytestmark = pytest.mark.pglab(standbys=3, sync="ANY 2")

def test_shape(pglab_cluster):
    st = pglab_cluster.status()
    assert sorted(n.sync_state for n in st.nodes if n.role.value == "standby") == ["quorum"] * 3
''')
    result = pytester.runpytest_subprocess("--pglab-runtime=local", "-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_examples_run_as_a_new_project_would(pytester: pytest.Pytester, runtime: str):
    """examples/ copied into an empty project: plain pytest, the plugin comes from the installed package."""
    from pathlib import Path
    src = Path(__file__).resolve().parent.parent / "examples"
    for name in ("app.py", "test_app.py"):
        pytester.path.joinpath(name).write_text(src.joinpath(name).read_text())
    before = _labs_before()
    result = pytester.runpytest_subprocess(f"--pglab-runtime={runtime}", "-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    assert _labs_before() == before


@pytest.mark.root
@pytest.mark.slow
def test_factory_with_patroni_fails_over_and_cleans_up(pytester: pytest.Pytester):
    """An application's test against the production HA stack: pglab_factory(ha="patroni") gives a
    Patroni lab whose primary route (HAProxy) follows a failover; the fixture removes all of it.
    Run from pytester's directory, which the server user may not enter: the lab's services must
    not depend on the caller's working directory (HAProxy refused to start here once)."""
    import os
    if os.geteuid() != 0:
        pytest.skip("Patroni runs as the postgres user: needs root")
    pytester.makepyfile(test_ha='''
import psycopg

def test_app_survives_failover(pglab_factory):
    lab = pglab_factory(ha="patroni", ha_profile="fast", name="pfha-plugin")
    with psycopg.connect(lab.dsn(role="primary"), autocommit=True) as c:
        c.execute("CREATE TABLE app (x int)")
        c.execute("INSERT INTO app VALUES (1)")
    lab.fault(lab.primary, "kill")
    lab.wait_for(lambda lb: lb.manager.leader() not in (None, "p1"), timeout=90, what="Patroni to promote a standby")
    lab.wait_for(lambda lb: lb.status().primary not in (None, "p1"), timeout=30, what="the new primary")

    def write_through_haproxy(lb):
        # HAProxy's checks notice the new leader within a few of their intervals: retry as an app would
        with psycopg.connect(lb.dsn(role="primary"), autocommit=True, connect_timeout=5) as c:
            c.execute("INSERT INTO app VALUES (2)")
            return c.execute("SELECT count(*) FROM app").fetchone()[0]
    assert lab.wait_for(write_through_haproxy, timeout=30, what="a write through HAProxy") == 2
''')
    result = pytester.runpytest_subprocess("--pglab-runtime=local", "-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    from lab.runtime.leftovers import leftovers
    assert leftovers("pfha-plugin") == []
