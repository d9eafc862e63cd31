"""pglab node reclone, pglab sync set, and the follower drills (pglab drill catchup|noslot|sync)."""
from __future__ import annotations

from typing import Optional

import typer

from lab.cli.root import app
from lab.cli.core import JsonOpt, NameOpt, open_lab
from lab.cli.failover import drill_app
from lab.cli.render import console, human_bytes, human_secs, print_json, table

node_app = typer.Typer(no_args_is_help=True, help="Per-node operations.")
sync_app = typer.Typer(no_args_is_help=True, help="synchronous_standby_names, live.")
app.add_typer(node_app, name="node")
app.add_typer(sync_app, name="sync")


@node_app.command("reclone")
def reclone(node: str = typer.Argument(..., help="The standby to rebuild."), name: Optional[str] = NameOpt) -> None:
    """Rebuild a standby from the current primary (fresh base backup and slot): the way back for a
    standby whose WAL the primary has removed."""
    lab = open_lab(name)
    lab.reclone(node)
    n = lab.status().node(node)
    console.print(f"{node} re-cloned from {lab.primary}: {n.role.value}, {n.stream_state or 'not streaming yet'}")


@sync_app.command("set")
def sync_set(spec: str = typer.Argument(..., help="'FIRST 1 (s1)', 'ANY 1 (s1, s2)', 'FIRST 2 (s1, s2)' or 'none'."),
             name: Optional[str] = NameOpt) -> None:
    """Change synchronous_standby_names on the primary now (reload); the lab's topology follows."""
    lab = open_lab(name)
    s = lab.set_sync(spec)
    console.print(f"synchronous_standby_names = '{s.render()}'" + (" (asynchronous replication)" if s.is_async else ""))


@drill_app.command("catchup")
def catchup(
    node: str = typer.Argument("s2", help="The standby to take away."),
    fault: str = typer.Option("stop", "--fault", help="stop, kill, pause, partition or throttle."),
    outage: float = typer.Option(3.0, "--outage", "-T", help="Seconds away."),
    threshold: int = typer.Option(256 * 1024, "--threshold", help="Caught up when replay lag <= this many bytes."),
    name: Optional[str] = NameOpt,
    as_json: bool = JsonOpt,
) -> None:
    """With pgbench writing, take a standby away for T seconds and measure its catch-up from its slot."""
    r = open_lab(name).drill_catchup(node, fault=fault, outage=outage, threshold_bytes=threshold)
    if as_json:
        print_json(r)
        return
    console.print(table(f"catch-up of {r.node} after {r.fault} for {r.outage_s:.1f} s (load {r.load_tps:.0f} tps)",
                        ["WAL missed", "catch-up", "WAL kept for its slot", "wal_status", "max_slot_wal_keep_size",
                         "same system", "same timeline", "slot advanced", "re-cloned"],
                        [[human_bytes(r.missed_bytes), human_secs(r.catchup_s), human_bytes(r.retained_max_bytes),
                          r.wal_status, r.max_slot_wal_keep_size, r.same_system, r.same_timeline, r.slot_advanced,
                          r.recloned]]))
    if r.max_slot_wal_keep_size == "-1":
        console.print("max_slot_wal_keep_size = -1: a slot keeps WAL without limit while its standby is away; "
                      "set it (e.g. \\[settings] max_slot_wal_keep_size = \"1GB\") to bound the primary's disk use.")


@drill_app.command("noslot")
def noslot(
    node: str = typer.Argument("s2", help="The standby to strand."),
    reclone: bool = typer.Option(True, "--reclone/--no-reclone", help="Re-clone it afterwards."),
    name: Optional[str] = NameOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Without its slot (and little WAL kept), a standby that was away can't come back: detect it, re-clone."""
    r = open_lab(name).drill_noslot(node, reclone=reclone)
    if as_json:
        print_json(r)
        return
    console.print(f"{r.node}: slot dropped, wal_keep_size = {r.wal_keep_size}; it needed {r.segment_needed}; "
                  f"the primary removed it after {r.segments_written} segment switches")
    console.print(f"unrecoverable: {r.unrecoverable}" + (f"  ({r.log_line})" if r.log_line else ""))
    if r.recloned:
        console.print(f"pglab node reclone {r.node}: {human_secs(r.reclone_s)}, streaming again: {r.streaming_after}")


@drill_app.command("sync")
def sync_drill(
    remedy: str = typer.Option("all", "--remedy", help="none, any, first2, async, or all."),
    outage: float = typer.Option(3.0, "--outage", "-T"),
    name: Optional[str] = NameOpt,
    as_json: bool = JsonOpt,
) -> None:
    """A synchronous standby fails under writes: commits block; each remedy measured under the same outage."""
    from lab.replication.follower import REMEDIES  # lazy: start-up
    lab = open_lab(name)
    todo = REMEDIES if remedy == "all" else (remedy,)
    results = [lab.drill_sync_failure(remedy=r, outage=outage) for r in todo]
    if as_json:
        print_json(results)
        return
    rows = [[r.remedy, r.spec, f"{r.tps_before:.0f}", f"{r.tps_during:.0f}", r.max_waiting, human_secs(r.longest_wait_s),
             r.cancel_outcome, human_secs(r.resume_s), ", ".join(f"{a}={b}" for a, b in r.sync_during),
             human_secs(r.unprotected_s), r.acked_unprotected] for r in results]
    console.print(table(f"synchronous standby {results[0].node} stopped for {outage:.0f} s under pgbench INSERTs",
                        ["remedy", "rule", "tps before", "tps during", "waiting", "longest wait", "cancelled commit",
                         "resume", "sync state during", "unprotected", "acked unprotected"], rows))
