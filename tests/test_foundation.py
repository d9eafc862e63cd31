"""The foundation on real servers, on every runtime: up, status, lag, DSNs, down."""
from __future__ import annotations

import json
import time
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from lab import Lab, Role
from lab.cli import app
from lab.runtime.leftovers import leftovers

runner = CliRunner()


def test_default_lab_streams_with_sync_and_async(shared_lab: Lab):
    st = shared_lab.status()
    assert st.primary == "p1" and st.primaries == ["p1"]
    s1, s2 = st.node("s1"), st.node("s2")
    assert (s1.role, s1.sync_state, s1.stream_state, s1.upstream) == (Role.STANDBY, "sync", "streaming", "p1")
    assert (s2.role, s2.sync_state, s2.stream_state) == (Role.STANDBY, "async", "streaming")
    # each standby replicates through its own physical slot
    assert (s1.slot, s1.slot_active, s2.slot, s2.slot_active) == ("s1", True, "s2", True)
    assert st.node("p1").timeline == 1 and s1.timeline == 1


def test_status_json_reports_lag_in_bytes_and_seconds(shared_lab: Lab):
    r = runner.invoke(app, ["status", "--name", shared_lab.name, "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    nodes = {n["name"]: n for n in d["nodes"]}
    assert nodes["s1"]["sync_state"] == "sync" and nodes["s2"]["sync_state"] == "async"
    for s in ("s1", "s2"):
        for stage in ("write", "flush", "replay"):
            assert isinstance(nodes[s][f"{stage}_lag_bytes"], int)
        assert isinstance(nodes[s]["replay_lag_s"], float)


def test_write_on_primary_is_visible_on_both_standbys(shared_lab: Lab):
    with shared_lab.connect() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS visible (id int)")
        conn.execute("INSERT INTO visible VALUES (42)")
    for s in ("s1", "s2"):
        shared_lab.wait_for(lambda lab, s=s: lab.connect(s).execute("SELECT count(*) FROM visible WHERE id = 42")
                            .fetchone()[0] == 1, timeout=20, what=f"the row on {s}")


def test_write_on_standby_fails_read_only(shared_lab: Lab):
    with shared_lab.connect("s1") as conn:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("CREATE TABLE nope (id int)")


def test_role_dsns_reach_primary_and_standby(shared_lab: Lab):
    with psycopg.connect(shared_lab.dsn(role="primary")) as c:
        assert c.execute("SELECT pg_is_in_recovery()").fetchone()[0] is False
    with psycopg.connect(shared_lab.dsn(role="standby")) as c:
        assert c.execute("SELECT pg_is_in_recovery()").fetchone()[0] is True
    # the DSN carries no password: it points at the lab's passfile
    assert "password" not in shared_lab.dsn(role="primary")


def test_lag_moves_when_replay_is_paused(shared_lab: Lab):
    with shared_lab.connect("s2") as c:
        c.execute("SELECT pg_wal_replay_pause()")
    try:
        with shared_lab.connect() as c:
            c.execute("CREATE TABLE IF NOT EXISTS filler AS SELECT g FROM generate_series(1, 50000) g")
            c.execute("INSERT INTO filler SELECT g FROM generate_series(1, 50000) g")
        time.sleep(1.2)
        s2 = shared_lab.status().node("s2")
        assert s2.replay_paused
        assert s2.replay_lag_bytes > 1_000_000
        assert s2.replay_lag_s is not None and s2.replay_lag_s >= 1.0
        assert s2.flush_lag_bytes == 0 or s2.flush_lag_bytes < s2.replay_lag_bytes  # received, not replayed
    finally:
        with shared_lab.connect("s2") as c:
            c.execute("SELECT pg_wal_replay_resume()")
    shared_lab.wait_caught_up(timeout=30)
    assert shared_lab.status().node("s2").replay_lag_bytes == 0


def test_cli_lag_and_watch(shared_lab: Lab):
    r = runner.invoke(app, ["lag", "--name", shared_lab.name])
    assert r.exit_code == 0 and "s1" in r.output and "s2" in r.output
    r = runner.invoke(app, ["lag", "--name", shared_lab.name, "--watch", "--interval", "0.2", "--duration", "0.6"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["lag", "--name", shared_lab.name, "--json"])
    assert {n["name"] for n in json.loads(r.output)} == {"s1", "s2"}


def test_cli_dsn(shared_lab: Lab):
    r = runner.invoke(app, ["dsn", "s1", "--name", shared_lab.name])
    assert r.exit_code == 0 and f"port={shared_lab.ctx.state.nodes['s1'].port}" in r.output
    r = runner.invoke(app, ["dsn", "--role", "primary", "--name", shared_lab.name])
    assert "target_session_attrs=read-write" in r.output
    r = runner.invoke(app, ["dsn", "s9", "--name", shared_lab.name])
    assert r.exit_code == 2 and "no node 's9'" in r.output


def test_other_shapes_and_two_labs_side_by_side(make_lab):
    a = make_lab(standbys=3, sync="ANY 1")
    b = make_lab(standbys=0)
    st = a.status()
    assert {n.sync_state for n in st.nodes if n.role == Role.STANDBY} == {"quorum"}
    assert b.status().nodes[0].role == Role.PRIMARY and len(b.nodes) == 1
    if a.runtime == "local":
        ports_a = {x.port for x in a.ctx.state.nodes.values()}
        ports_b = {x.port for x in b.ctx.state.nodes.values()}
        assert not ports_a & ports_b
    with a.connect() as c:
        c.execute("CREATE TABLE only_in_a (id int)")
    with b.connect() as c:
        assert c.execute("SELECT to_regclass('only_in_a')").fetchone()[0] is None


def test_topology_file_and_settings(make_lab, tmp_path):
    f = tmp_path / "t.toml"
    f.write_text('[replication]\nsynchronous_standby_names = "FIRST 1 (b)"\nsynchronous_commit = "remote_apply"\n'
                 '[settings]\nwal_keep_size = "32MB"\n'
                 '[[nodes]]\nname = "a"\nrole = "primary"\n[[nodes]]\nname = "b"\n')
    lab = make_lab(str(f))
    with lab.connect() as c:
        assert c.execute("SHOW wal_keep_size").fetchone()[0] == "32MB"
        assert c.execute("SHOW synchronous_commit").fetchone()[0] == "remote_apply"
        assert c.execute("SHOW wal_log_hints").fetchone()[0] == "on"
        assert c.execute("SHOW password_encryption").fetchone()[0] == "scram-sha-256"
        # least privilege: the replication role can replicate and nothing else
        rep = c.execute("SELECT rolreplication, rolsuper, rolcreatedb, rolcreaterole FROM pg_roles "
                        "WHERE rolname = 'replicator'").fetchone()
        assert rep == (True, False, False, False)
        hba = c.execute("SELECT DISTINCT auth_method FROM pg_hba_file_rules WHERE type = 'host'").fetchall()
        assert hba == [("scram-sha-256",)]
    assert lab.status().node("b").sync_state == "sync"


def test_down_is_idempotent(make_lab):
    lab = make_lab(standbys=1)
    name = lab.name
    r = runner.invoke(app, ["down", "--name", name])
    assert r.exit_code == 0 and "removed" in r.output
    assert leftovers(name) == []
    r = runner.invoke(app, ["down", "--name", name])
    assert r.exit_code == 0 and "nothing to remove" in r.output


def test_down_removes_frozen_orphans_of_a_killed_postmaster(make_lab, runtime):
    """A node frozen (pause) whose postmaster then dies leaves children that cannot notice it:
    `down` finds them by their process title and removes them."""
    if runtime != "local":
        pytest.skip("host processes of the local runtime")
    import os
    import signal
    lab = make_lab(standbys=1, sync="none")
    lab.fault("s1", "pause")
    pid = int(open(f"{lab.ctx.rt.paths('s1').data}/postmaster.pid").readline())
    os.kill(pid, signal.SIGKILL)          # behind the lab's back: its children stay frozen
    from lab.runtime import procs
    from lab.model.names import cluster_name
    assert procs.titled(cluster_name(lab.name, "s1"))
    # make_lab's teardown runs `down` and asserts that nothing of the lab is left


def test_down_releases_the_segment_of_a_killed_server_whose_directory_is_gone(make_lab, runtime):
    """A failover manager may re-clone a node whose server was killed, deleting the directory
    whose postmaster.pid named the server's System V segment: `down` still removes that segment
    and the /dev/shm segments its header leads to (the autouse guard in conftest also fails the
    test if any stays)."""
    if runtime != "local":
        pytest.skip("System V segments of host processes (a container's go with its IPC namespace)")
    import shutil
    from lab.runtime import sysv
    lab = make_lab(standbys=1, sync="none")
    data = lab.ctx.rt.paths("s1").data
    seg = sysv.segment_of(data)
    assert seg is not None
    import os
    import signal
    from lab.runtime import procs
    pid = int(open(f"{data}/postmaster.pid").readline())
    # its dynamic shared memory, read from the kernel's own map of the postmaster
    shm = {line.split()[-1] for line in open(f"/proc/{pid}/maps") if "/dev/shm/PostgreSQL." in line}
    assert shm
    family = procs.descendants(pid)
    os.kill(pid, signal.SIGKILL)          # behind the lab's back, as a manager's agent would
    procs.wait_dead(family)
    assert seg[1] in sysv.segments()      # SIGKILL leaves it
    assert all(os.path.exists(p) for p in shm)   # and the /dev/shm files
    shutil.rmtree(data)                   # and then a re-clone: nothing names the segment any more
    lab.down()
    assert seg[1] not in sysv.segments()
    assert not [p for p in shm if os.path.exists(p)]


def test_a_killed_postmasters_lock_files_go_but_not_its_successors(make_lab, runtime):
    """After a kill, pglab removes the dead postmaster's lock files only while they still name it.
    A supervisor (a pg_auto_failover keeper) may have started the next server already; removing
    that one's postmaster.pid made it shut itself down a minute later, and the monitor then failed
    over a primary that had come back."""
    if runtime != "local":
        pytest.skip("lock files of host processes")
    import os
    import signal
    from lab.cluster import server
    from lab.runtime import procs
    lab = make_lab(standbys=1, sync="none")
    rt, data = lab.ctx.rt, lab.ctx.rt.paths("s1").data

    def kill_behind_the_labs_back() -> int:
        pid = int(open(f"{data}/postmaster.pid").readline())
        family = procs.descendants(pid)
        os.kill(pid, signal.SIGKILL)
        procs.wait_dead(family)
        return pid

    old = int(open(f"{data}/postmaster.pid").readline())
    rt.kill("s1")
    server.start(rt, "s1")                    # the supervisor's new server, with lock files of its own
    new = int(open(f"{data}/postmaster.pid").readline())
    locks = [f"{data}/postmaster.pid", *(str(p) for p in Path(rt.paths("s1").socket_dir).glob(".s.PGSQL.*.lock")
                                         if open(p).readline().strip() == str(new))]
    assert new != old and len(locks) == 2
    assert rt.remove_stale_locks("s1", old) == []
    assert all(os.path.exists(p) for p in locks)
    lab.wait_caught_up()                      # the new server still serves
    assert kill_behind_the_labs_back() == new
    assert sorted(rt.remove_stale_locks("s1", new)) == sorted(locks)
    assert not any(os.path.exists(p) for p in locks)


def test_kill_of_a_paused_node_lets_it_start_again(make_lab):
    lab = make_lab(standbys=1, sync="none")
    lab.fault("s1", "pause")
    lab.fault("s1", "kill")
    assert lab.heal("s1")[-1] == "start"
    lab.wait_caught_up()
