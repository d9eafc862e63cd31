"""Leader failure: promote, switchover, failover, rejoin, monitor run|start|stop|status, drill failover."""
from __future__ import annotations

import signal
from typing import Optional

import typer

from lab.cli.root import app
from lab.cli.core import JsonOpt, NameOpt, open_lab
from lab.errors import FailoverRefused, InvalidInput
from lab.failover.election import DEFAULT_MAX_LAG_BYTES, Decision
from lab.cli.render import console, err_console, human_bytes, human_secs, print_json, table, to_jsonable
from lab.ha import Change

monitor_app = typer.Typer(no_args_is_help=True, help="The automatic failover supervisor (foreground or background).")
drill_app = typer.Typer(no_args_is_help=True, help="Failure drills that measure lost writes and downtime.")
app.add_typer(monitor_app, name="monitor")
app.add_typer(drill_app, name="drill")


def decision_table(d: Decision):
    rows = [[r.candidate.name, r.verdict.value, r.candidate.timeline, r.candidate.receive_lsn, r.candidate.replay_lsn,
             r.candidate.priority, human_bytes(r.lag_bytes), r.candidate.error] for r in d.rows]
    return table(f"election: {d.reason}", ["node", "verdict", "tl", "receive", "replay", "prio", "behind", "error"], rows)


@app.command()
def promote(node: str = typer.Argument(..., help="The standby to promote."), name: Optional[str] = NameOpt,
            as_json: bool = JsonOpt) -> None:
    """Promote a standby by hand (pg_promote()), then re-point the others and fix synchronous_standby_names."""
    p = open_lab(name).promote(node)
    if as_json:
        return print_json(p)
    console.print(f"{p.new_primary} promoted in {human_secs(p.promote_s)} (timeline {p.timeline}); "
                  f"sync: {p.sync or 'async'}; re-pointed: {', '.join(p.repointed) or 'none'}")
    for prob in p.problems:
        err_console.print(f"warning: {prob}")


@app.command()
def switchover(to: Optional[str] = typer.Option(None, "--to", help="The new primary (default: the most advanced standby)."),
               name: Optional[str] = NameOpt, as_json: bool = JsonOpt) -> None:
    """Planned change of leader with zero lost writes; reports the write-unavailable window."""
    s = open_lab(name).switchover(to)
    if as_json:
        return print_json(s)
    if isinstance(s, Change):
        return _print_change(s)
    console.print(table(f"switchover {s.old_primary} -> {s.new_primary}: writes unavailable for {human_secs(s.window_s)}",
                        ["step", "at"], [[step, human_secs(t)] for step, t in s.steps]))
    console.print(f"{s.old_primary} " + ("streams from " + s.new_primary if s.demoted else "is NOT streaming: run `pglab rejoin`"))


@app.command()
def failover(to: Optional[str] = typer.Option(None, "--to", help="Promote this standby (still guarded)."),
             allow_data_loss: bool = typer.Option(False, "--allow-data-loss", help="Promote even if behind the bound."),
             max_lag: int = typer.Option(DEFAULT_MAX_LAG_BYTES, "--max-lag", help="Refuse a candidate this many bytes behind."),
             fence: str = typer.Option("none", "--fence", help="none, stop, kill or partition the old primary first."),
             force: bool = typer.Option(False, "--force", help="Fail over even though the primary answers."),
             name: Optional[str] = NameOpt, as_json: bool = JsonOpt) -> None:
    """Unplanned: elect the most advanced standby and promote it; prints the table it decided from."""
    try:
        f = open_lab(name).failover(to, allow_data_loss=allow_data_loss, max_lag_bytes=max_lag, fence=fence, force=force)
    except FailoverRefused as e:
        if as_json:
            print_json(e.decision)
        else:
            console.print(decision_table(e.decision))
        raise
    if as_json:
        return print_json({**to_jsonable(f), "loss_line": getattr(f, "loss_line", None)})
    if isinstance(f, Change):
        return _print_change(f)
    console.print(decision_table(f.decision))
    p = f.promotion
    console.print(f"guard: {f.decision.loss_line}", markup=False)
    console.print(f"{p.new_primary} promoted in {human_secs(p.promote_s)} (timeline {p.timeline}); sync: {p.sync or 'async'}; "
                  f"re-pointed: {', '.join(p.repointed) or 'none'}; old primary {p.old_primary}: `pglab rejoin {p.old_primary}`")
    console.print(f"data loss: {f.loss_line}", markup=False)


def _print_change(c) -> None:
    """A switchover or failover the failover manager made through its own API."""
    console.print(table(f"{c.kind} {c.old_primary} -> {c.new_primary} (by the failover manager): writes unavailable "
                        f"for {human_secs(c.window_s)}", ["step", "at"], [[step, human_secs(t)] for step, t in c.steps]))
    console.print(f"{c.old_primary} " + (f"streams from {c.new_primary} again" if c.demoted else "is not streaming yet")
                  + (f"; timeline {c.timeline}" if c.timeline else ""))


@app.command()
def rejoin(node: str = typer.Argument(..., help="The old primary (or stray standby) to bring back."),
           no_reclone: bool = typer.Option(False, "--no-reclone", help="Fail instead of re-cloning when rewind is impossible."),
           name: Optional[str] = NameOpt, as_json: bool = JsonOpt) -> None:
    """Bring a node back as a standby of the primary (pg_rewind, else re-clone); reports discarded WAL."""
    r = open_lab(name).rejoin(node, allow_reclone=not no_reclone)
    if as_json:
        return print_json(r)
    console.print(f"{r.node}: {r.method} ({r.reason}) in {human_secs(r.duration_s)}; streaming from {r.primary}: {r.streaming}")
    if r.fork_lsn:
        console.print(f"old timeline {r.old_timeline} ended at {r.old_end_lsn}, fork point {r.fork_lsn}: "
                      f"{human_bytes(r.discarded_bytes)} of WAL ({r.discarded_commits} commits) discarded")



IntervalOpt = typer.Option(0.5, "--interval", help="Seconds between health checks.")
TimeoutOpt = typer.Option(2.0, "--timeout", help="Declare the primary failed after this many seconds without a good check.")
FenceOpt = typer.Option("kill", "--fence", help="How to fence the old primary before promoting: none, stop, kill, partition.")
MaxLagOpt = typer.Option(DEFAULT_MAX_LAG_BYTES, "--max-lag", help="Data-loss guard in bytes.")
AllowOpt = typer.Option(False, "--allow-data-loss", help="Promote a candidate even beyond --max-lag.")
FastOpt = typer.Option(True, "--fast-path/--no-fast-path",
                       help="Declare a certainly dead primary (port refused, no standby streaming) without the timeout.")
ConfirmOpt = typer.Option(0.3, "--confirm",
                          help="Seconds the fast path's evidence must hold (longer than a restart refuses connections).")


@monitor_app.command("run")
def monitor_run(name: Optional[str] = NameOpt, interval: float = IntervalOpt, timeout: float = TimeoutOpt,
                fence: str = FenceOpt, duration: float = typer.Option(60.0, "--duration", help="Stop after this many seconds."),
                max_lag: int = MaxLagOpt, allow_data_loss: bool = AllowOpt, fast_path: bool = FastOpt,
                confirm: float = ConfirmOpt, log: Optional[str] = typer.Option(None, "--log", help="Log file (default: <lab dir>/monitor.log)."),
                quiet: bool = typer.Option(False, "--quiet", help="Log to the file only.")) -> None:
    """Run the monitor in the foreground (bounded by --duration; Ctrl-C or SIGTERM stops it)."""
    lab = open_lab(name)
    m = lab.monitor(interval=interval, timeout=timeout, fence=fence, duration=duration, max_lag_bytes=max_lag,
                    allow_data_loss=allow_data_loss, fast_path=fast_path, confirm=confirm,
                    say=None if quiet else (lambda line: console.print(line, markup=False)),
                    log_path=log, reload_state=True)
    signal.signal(signal.SIGTERM, lambda *_: m.stop_event.set())
    try:
        m.run()
    except KeyboardInterrupt:
        m.stop_event.set()


@monitor_app.command("start")
def monitor_start(name: Optional[str] = NameOpt, interval: float = IntervalOpt, timeout: float = TimeoutOpt,
                  fence: str = FenceOpt, duration: float = typer.Option(3600.0, "--duration", help="Stop by itself after this many seconds."),
                  max_lag: int = MaxLagOpt, allow_data_loss: bool = AllowOpt, fast_path: bool = FastOpt,
                  confirm: float = ConfirmOpt) -> None:
    """Start the monitor in the background (a detached process; `pglab down` stops it too)."""
    lab = open_lab(name)
    pid = lab.start_monitor(interval=interval, timeout=timeout, fence=fence, duration=duration, max_lag_bytes=max_lag,
                            allow_data_loss=allow_data_loss, fast_path=fast_path, confirm=confirm)
    console.print(f"monitor started (pid {pid}); log: {lab.state_dir / 'monitor.log'}")


@monitor_app.command("stop")
def monitor_stop(name: Optional[str] = NameOpt) -> None:
    """Stop the background monitor."""
    pid = open_lab(name).stop_monitor()
    console.print(f"monitor (pid {pid}) stopped" if pid else "no monitor runs")


@monitor_app.command("status")
def monitor_status(name: Optional[str] = NameOpt, lines: int = typer.Option(10, "--lines", help="Log lines to show."),
                   as_json: bool = JsonOpt) -> None:
    """Whether the background monitor runs, and its last log lines."""
    lab = open_lab(name)
    pid, tail = lab.monitor_pid(), lab.monitor_log(lines)
    if as_json:
        return print_json({"running": pid is not None, "pid": pid, "log": tail})
    console.print(f"monitor: {'running (pid ' + str(pid) + ')' if pid else 'not running'}")
    for line in tail:
        console.print(line, markup=False)


def drill_tables(rep) -> None:
    rows = []
    for i, r in enumerate(rep.results, 1):
        t = r.times
        rows.append([i, f"{r.old_primary}->{r.new_primary}", r.check.ok, r.check.unknown, r.check.ok_unreplicated,
                     len(r.check.lost), len(r.check.recovered), human_secs(t.rto_s), human_secs(t.client_gap_s),
                     human_secs(t.detect_s), human_secs(t.elect_s), human_secs(t.promote_s),
                     human_secs(t.reconnect_s),
                     ("≥" + human_bytes(r.loss_estimate_bytes)) if r.loss_estimate_bytes is not None else "?",
                     human_bytes(r.loss_true_bytes) + (f" ({r.loss_true_commits} commits)" if r.loss_true_commits is not None else ""),
                     human_bytes(r.rejoin.discarded_bytes if r.rejoin else None),
                     r.path or "-", "PASS" if r.passed else "FAIL"])
    r0 = rep.results[0]
    console.print(table(f"drill failover: mode {r0.mode}, fault {r0.fault}", ["#", "leader", "ok", "unknown", "ok_unrepl",
                        "lost", "recovered", "RTO", "client gap", "detect", "elect", "promote", "reconnect",
                        "loss est.", "loss true", "WAL>fork", "path", "check"], rows))
    console.print("detect: fault -> declared; elect: -> winner chosen; promote: -> pg_promote() returned; "
                  "reconnect: -> first write on the new primary; loss est.: the election's lower bound from the old "
                  "primary's last sighting; loss true: its WAL on disk beyond the winner's position; path: how the "
                  "monitor declared the primary dead (fast: fail-stop evidence; slow: the timeout)", style="dim")
    stats = [[k, *(human_bytes(int(v)) if "bytes" in k else (f"{v:.0f}" if k == "lost" else human_secs(v)) for v in vals)]
             for k, vals in rep.stats.items()]
    if len(rep.results) > 1:
        console.print(table("over the drills", ["figure", "min", "median", "max"], stats))
    for i, r in enumerate(rep.results, 1):
        led = r.ledger.outcomes["ok"]
        console.print(f"#{i} ledger: {r.ledger.attempted} writes, {r.ledger.ok_tps:.0f} ok/s, ok latency p50 "
                      f"{led.p50_ms or 0:.1f} ms p99 {led.p99_ms or 0:.1f} ms max {led.max_ms or 0:.0f} ms; "
                      + (f"old primary had {r.old_minus_new} ids the new one lacks, {r.lost_seen_on_old} of them lost acks; "
                         if r.old_minus_new is not None else "the old primary's own rows were not read (its manager rejoined it); ")
                      + f"data loss: {r.loss_line}"
                      + (f"; declared by the {r.path} path: {r.path_reason}" if r.path else "")
                      + (f"; problems: {'; '.join(r.problems)}" if r.problems else ""))


@drill_app.command("failover")
def drill_failover(name: Optional[str] = NameOpt,
                   mode: str = typer.Option("sync", "--mode", help="sync (FIRST 1, synchronous_commit=on) or async."),
                   fault: str = typer.Option("kill", "--fault", help="kill, stop, partition or pause the primary."),
                   lag_standby: Optional[str] = typer.Option(None, "--lag-standby", help="async: the standby made to lag (elected)."),
                   repeat: int = typer.Option(1, "--repeat", help="Number of drills."),
                   clients: int = typer.Option(4, "--clients", help="Ledger writer clients."),
                   interval: float = IntervalOpt, timeout: float = TimeoutOpt, fence: str = FenceOpt,
                   fast_path: bool = FastOpt, confirm: float = ConfirmOpt, as_json: bool = JsonOpt) -> None:
    """Write through the routed DSN, break the primary, let the monitor fail over, rejoin, check lost writes and RTO."""
    lab = open_lab(name)
    say = (lambda _: None) if as_json else (lambda line: err_console.print(line, style="dim", markup=False))
    rep = lab.drill_failover(repeat=repeat, mode=mode, fault=fault, lag_standby=lag_standby, clients=clients,
                             interval=interval, timeout=timeout, fence=fence, fast_path=fast_path, confirm=confirm,
                             say=say)
    if as_json:
        print_json({"passed": rep.passed, "stats": rep.stats,
                    "drills": [{"mode": r.mode, "fault": r.fault, "old_primary": r.old_primary, "new_primary": r.new_primary,
                                "check": r.check.to_dict(), "times": r.times, "ledger": r.ledger,
                                "decision": r.decision.to_dict() if r.decision else None,
                                "rejoin": r.rejoin, "old_minus_new": r.old_minus_new,
                                "lost_seen_on_old": r.lost_seen_on_old, "passed": r.passed,
                                "loss_estimate_bytes": r.loss_estimate_bytes, "loss_true_bytes": r.loss_true_bytes,
                                "loss_true_commits": r.loss_true_commits, "loss_line": r.loss_line,
                                "path": r.path, "path_reason": r.path_reason,
                                "problems": list(r.problems)} for r in rep.results]})
    else:
        drill_tables(rep)
    if not rep.passed:
        raise typer.Exit(1)


@drill_app.command("restart")
def drill_restart(name: Optional[str] = NameOpt,
                  restarts: int = typer.Option(3, "--restarts", help="Restarts of the primary (pg_ctl restart -m fast)."),
                  interval: float = IntervalOpt, timeout: float = TimeoutOpt, confirm: float = ConfirmOpt,
                  as_json: bool = JsonOpt) -> None:
    """Restart the primary under the monitor (fast path on): its port is refused for a moment, but no failover may follow."""
    lab = open_lab(name)
    say = (lambda _: None) if as_json else (lambda line: err_console.print(line, style="dim", markup=False))
    r = lab.drill_restart(restarts=restarts, interval=interval, timeout=timeout, confirm=confirm, say=say)
    if as_json:
        print_json({k: v for k, v in r.__dict__.items() if k != "log"})
    else:
        ev = ", ".join(human_secs(x) for x in r.evidence_s) or "none seen"
        console.print(f"drill restart: {r.restarts} restart(s) of {r.node}: {r.failovers} failover(s), primary now "
                      f"{r.primary_after}; fast-path evidence lasted {ev} (confirmation window "
                      f"{human_secs(r.confirm_s)}); longest pause between acknowledged writes "
                      f"{human_secs(r.longest_write_gap_s)}; lost acknowledged writes {r.lost}: "
                      + ("PASS" if r.passed else "FAIL"))
    if not r.passed:
        raise typer.Exit(1)


def _failsafe(value: Optional[str]) -> Optional[bool]:
    if value is None:
        return None
    if value not in ("on", "off"):
        raise InvalidInput(f"--failsafe {value!r} is not on or off", "use --failsafe on or --failsafe off")
    return value == "on"


FailsafeOpt = typer.Option(None, "--failsafe", help="on|off: Patroni's failsafe_mode during the drill (restored after).")


def _at(t: Optional[float], t0: Optional[float]) -> str:
    return "unknown" if t is None or t0 is None else f"{t - t0:+.1f} s"


@drill_app.command("split-brain")
def drill_split_brain(name: Optional[str] = NameOpt,
                      fence: str = typer.Option("none", "--fence", help="none, stop, kill or partition the old primary first (not on Patroni labs)."),
                      writes: int = typer.Option(3, "--writes", min=1, max=100, help="Writes tried on each side."),
                      failsafe: Optional[str] = FailsafeOpt, as_json: bool = JsonOpt) -> None:
    """Cut the primary off from the other nodes (its clients still reach it), let the manager fail
    over, keep writing to both leaders, heal: report when each side acknowledged writes, the writes
    the old leader acknowledged after the promotion and the conflicting rows."""
    r = open_lab(name).drill_split_brain(fence=fence, writes=writes, failsafe=_failsafe(failsafe))
    if as_json:
        print_json({**to_jsonable(r), "old_stopped_s": r.old_stopped_s, "new_accepted_s": r.new_accepted_s,
                    "split_brain_window_s": r.split_brain_window_s, "window_still_open": r.window_still_open})
        return
    fs = "" if r.failsafe is None else f"; failsafe_mode {'on' if r.failsafe else 'off'}"
    console.print(f"split brain ({r.manager}): {r.old_primary} isolated, {r.new_primary} promoted; fencing: {r.fence}"
                  + (f" (acted {r.fenced_at - r.promoted_at:+.2f}s from the promotion)" if r.fenced_at and r.promoted_at else "")
                  + f"; replication {'synchronous' if r.synchronous else 'asynchronous'}{fs}", markup=False)
    rows = [[a.node, a.id, a.outcome, f"{a.latency_s * 1000:.0f}ms"] for a in r.attempts if a.side == "drill"]
    console.print(table("writes", ["node", "id", "outcome", "took"], rows))
    win = r.split_brain_window_s
    console.print(f"from the isolation ({r.probes} probe writes, one every 0.2 s per side): old leader's last "
                  f"acknowledged write " + (_at(r.old_last_ack, r.isolated_at) if r.old_last_ack else "none seen")
                  + "; new leader's first "
                  f"{_at(r.new_first_ack, r.isolated_at)} (through the routed DSN "
                  + (_at(r.routed_first_new_ack, r.isolated_at) if r.routed_first_new_ack else "none while probing")
                  + f"); promoted {_at(r.promoted_at, r.isolated_at)}; both acknowledged writes for "
                  + ("unknown (the new leader was never seen acknowledging, or the old one not asked after it)" if win is None else
                     ("at least " if r.window_still_open else "") + human_secs(win)
                     + (" (both still did when the probes stopped)" if r.window_still_open else "")), markup=False)

    def rows_line(ids, node):
        if ids is None:
            return f"unknown only on {node} ({r.old_primary} could not be read)"
        return f"{len(ids)} only on {node}" + (f" {list(ids[:6])}{' …' if len(ids) > 6 else ''}" if ids else "")
    missing = r.old_acks_missing_on_new
    console.print(f"acknowledged by the old leader after the promotion: {r.acked_on_old_after_promotion}; "
                  f"acknowledged by the old leader and missing on the new: "
                  + ("unknown" if missing is None else str(len(missing)))
                  + f"; conflicting rows: {rows_line(r.only_on_old, r.old_primary)}, "
                  f"{rows_line(r.only_on_new, r.new_primary)}; primaries after healing: {r.primaries_after_heal}",
                  markup=False)
    console.print(f"{r.old_primary} read from: " + (r.old_read_from or f"nowhere ({r.old_read_error})"), markup=False)


@drill_app.command("quorum-loss")
def drill_quorum_loss(name: Optional[str] = NameOpt, failsafe: Optional[str] = FailsafeOpt,
                      hold: float = typer.Option(40.0, "--hold", help="Seconds a majority of the consensus store stays down (longer than the ttl)."),
                      clients: int = typer.Option(2, "--clients", help="Ledger writer clients."),
                      as_json: bool = JsonOpt) -> None:
    """Kill a majority of the manager's consensus store (Patroni's etcd) for --hold seconds under a
    ledger, heal: did the primary stop taking writes, the longest write gap, lost writes."""
    lab = open_lab(name)
    say = (lambda _: None) if as_json else (lambda line: err_console.print(line, style="dim", markup=False))
    r = lab.drill_quorum_loss(failsafe=_failsafe(failsafe), hold=hold, clients=clients, say=say)
    if as_json:
        print_json({**{k: v for k, v in to_jsonable(r).items() if k != "check"}, "check": r.check.to_dict(),
                    "longest_write_gap_s": r.longest_write_gap_s, "demoted_after_s": r.demoted_after_s,
                    "writes_back_after_heal_s": r.writes_back_after_heal_s,
                    "leader_back_after_heal_s": r.leader_back_after_heal_s, "writes_stopped": r.writes_stopped})
    else:
        fs = "as the lab had it" if r.failsafe is None else ("on" if r.failsafe else "off")
        console.print(f"quorum loss ({r.manager}, failsafe_mode {fs}): {', '.join(r.killed)} of {r.members} consensus "
                      f"members killed for {human_secs(r.hold_s)}", markup=False)
        console.print("primary: " + (f"stopped taking writes {human_secs(r.demoted_after_s)} after the kill (no node accepted "
                                     f"writes), back {_at(r.primary_back_at, r.t_heal)} from the heal"
                                     if r.writes_stopped else "kept taking writes (always one node accepting writes)"),
                      markup=False)
        console.print(f"ledger: {r.writes_ok} acknowledged writes; longest pause {human_secs(r.longest_write_gap_s)} "
                      f"(starting {_at(r.last_ack_before_gap, r.t_kill)} from the kill; with the store healthy "
                      f"{human_secs(r.floor_gap_s)}); writes back after the heal: "
                      + (human_secs(r.writes_back_after_heal_s) if r.writes_back_after_heal_s is not None else "they never stopped past it")
                      + f"; leader back after the heal {human_secs(r.leader_back_after_heal_s)}", markup=False)
        c = r.check
        console.print(f"set checker: lost {len(c.lost)}, unexpected {len(c.unexpected)}, unknown {c.unknown}, "
                      f"recovered {len(c.recovered)}: " + ("PASS" if c.valid else "FAIL"), markup=False)
    if not r.check.valid:
        raise typer.Exit(1)
