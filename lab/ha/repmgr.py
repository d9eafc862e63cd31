"""repmgr as the lab's failover manager: repmgrd on every node, PostgreSQL 15 (Debian's repmgr 5.3).

Both runtimes: locally the system's postgresql-15-repmgr; on Docker the lab's PostgreSQL 15 image,
which holds the same package (its label pglab.managers names repmgr). Everything goes through the
runtime: repmgr commands and repmgr.conf on the node (in its container on Docker), repmgrd as a
service on the node (a process in the node's container, so a kill, pause or partition of the node
reaches it too), peers addressed as the runtime names them (peer_host/peer_port).

pglab creates the servers as without a manager (primary, standbys cloned, s1 synchronous), then
registers them with repmgr (`repmgr primary register`, `repmgr standby register`) and starts one
`repmgrd --daemonize=false` per node as a lab service (lab.runtime services: `down` kills it).
repmgrd decides failovers by itself: after reconnect_attempts x reconnect_interval without the
primary, the standbys elect the one with the highest LSN (then priority), which runs
`repmgr standby promote`; the others run `repmgr standby follow`.

What repmgr does not do, pglab does:
  synchronous_standby_names  repmgr never sets it: pglab sets it from the topology, and again on
                 the new primary after a failover (when pglab sees the takeover: a drill, `pglab
                 failover`/`switchover`, or `pglab rejoin`).
  slots          pglab keeps one physical slot per standby (named after it), made on the new primary
                 as soon as pglab sees it; repmgr's own slots are off (use_replication_slots=no).
  switchover     repmgr's needs ssh between nodes; pglab scripts it locally (stop the old primary,
                 `repmgr standby promote`, `repmgr standby follow`, `repmgr node rejoin --force-rewind`).
  fencing        none: repmgr does not stop an isolated old primary (repmgr#212, #766).

Faults with a supervisor:
  kill           SIGKILL of repmgrd and the postmaster (the node died)
  kill-postgres  SIGKILL of the postmaster only: repmgrd stays and sees its server gone
  stop           repmgrd stopped, then the server shut down cleanly (the node was shut down)
  pause          repmgrd and the server frozen
  partition, isolate, throttle, delay   as without a manager (lab.cluster.faults)
"""
from __future__ import annotations

import secrets
import time
from typing import Any

import psycopg

from lab.cluster import faults, server, sql
from lab.errors import InvalidInput, LabError, NodeFailed, WaitTimeout
from lab.failover import reconfigure
from lab.failover.phases import parse_log_time, server_marks
from lab.failover.rejoin import Rejoin, rejoin
from lab.ha import repmgr_conf as conf
from lab.ha.base import (
    Change,
    starve_by_hba,
    unstarve,
    Manager,
    Say,
    Takeover,
    refuse_pglab_options,
)
from lab.ha.repmgr_view import RepmgrView
from lab.replication import syncpolicy
from lab.wait import poll, wait_until


class RepmgrError(LabError):
    """repmgr refused or failed a command (its own ERROR line is the message)."""


def _repmgr_error(out: str) -> str:
    lines = [ln for ln in out.splitlines() if "ERROR" in ln or "FATAL" in ln]
    return (lines or out.strip().splitlines() or ["no output"])[-1].strip()


class RepmgrManager(RepmgrView, Manager):
    name = "repmgr"
    bootstraps_servers = False

    # ---- what the lab remembers ----------------------------------------------------------
    @property
    def _st(self) -> dict:
        return self.ctx.state.ha

    def _svc(self):
        return self.ctx.rt.services()

    def _home(self, node: str) -> str:
        return self.ctx.rt.paths(node).home

    def _conf(self, node: str) -> str:
        return f"{self._home(node)}/repmgr.conf"

    def _ids(self) -> dict[str, int]:
        return conf.node_ids(self.ctx.topology)

    def _bindir(self) -> str:
        return self.ctx.state.runtime_data.get("bindir") or ""

    # ---- life cycle ------------------------------------------------------------------------
    def check_available(self) -> None:
        check_available(self.ctx.topology, self.ctx.rt.kind)

    def repmgr(self, node: str, *args: str, check: bool = True, timeout: float = 120) -> str:
        """A repmgr command on a node, as the server user, with the node's repmgr.conf."""
        res = self.ctx.rt.run(node, [f"{self._bindir()}/repmgr", "-f", self._conf(node), *args],
                              env={"HOME": self._home(node)}, check=False, timeout=timeout)
        if check and res.rc != 0:
            raise RepmgrError(f"repmgr {' '.join(args[:2])} on {node} failed: {_repmgr_error(res.out)}",
                              f"see {self._home(node)}/repmgr.log", details=res.out[-1500:])
        return res.out

    def start(self, say: Say) -> None:
        """Register a running lab's servers with repmgr and start repmgrd on every node (or, when
        they are registered already, start the repmgrd that are not running)."""
        ctx = self.ctx
        if not self._st.get("registered"):
            self._register(say)
        started = [n for n in ctx.state.nodes if self._start_repmgrd(n)]
        if started:
            self._wait_monitoring(started)
            t = conf.timing(ctx.topology)
            say(f"repmgrd runs on {', '.join(started)} (profile {ctx.topology.ha.profile}: monitor_interval_secs "
                f"{t['monitor_interval_secs']}, reconnect_attempts {t['reconnect_attempts']}, reconnect_interval "
                f"{t['reconnect_interval']}); pglab sets synchronous_standby_names, repmgr does not")

    def _register(self, say: Say) -> None:
        ctx = self.ctx
        primary = ctx.state.primary
        password = self._st.get("password") or secrets.token_urlsafe(18)
        self._st.update(password=password)
        ctx.save()
        with sql.connect(ctx.state, primary) as c:
            c.execute("SET synchronous_commit = local")   # no standby may be needed to create a role
            for stmt in conf.role_sql(password):
                c.execute(stmt)
        with sql.connect(ctx.state, primary, dbname=conf.DB) as c:
            c.execute("SET synchronous_commit = local")
            for stmt in conf.extension_sql():
                c.execute(stmt)
            # pg_rewind (repmgr node rejoin --force-rewind) reads the source through these, as
            # PostgreSQL's documentation lists them: no superuser
            for f in ("pg_catalog.pg_ls_dir(text, boolean, boolean)", "pg_catalog.pg_stat_file(text, boolean)",
                      "pg_catalog.pg_read_binary_file(text)", "pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)"):
                c.execute(f"GRANT EXECUTE ON FUNCTION {f} TO {conf.USER}")
        for n in ctx.state.nodes:
            self._write_config(n)
        self.repmgr(primary, "primary", "register")
        # the role and database reach the standbys by streaming; register each once it has them
        pid = self._ids()[primary]
        for n in ctx.state.standbys:
            wait_until(lambda n=n: sql.scalar(ctx.state, n, "SELECT count(*) FROM pg_database WHERE datname = %s",
                                               (conf.DB,)) == 1, timeout=30,
                       what=f"repmgr's database to reach {n}", interval=0.05)
            wait_until(lambda n=n: self._has_extension(n), timeout=30, what=f"repmgr's extension to reach {n}",
                       interval=0.05)
            self.repmgr(n, "standby", "register", f"--upstream-node-id={pid}", "--wait-sync=30")
        self._st["registered"] = True
        ctx.save()
        self.record("registered", primary, f"repmgr: {primary} primary, {', '.join(ctx.state.standbys)} standbys")
        say(f"repmgr: {primary} registered as primary, {', '.join(ctx.state.standbys) or 'no standbys'} as standbys")

    def _has_extension(self, node: str) -> bool:
        try:
            with sql.connect(self.ctx.state, node, dbname=conf.DB) as c:
                return c.execute("SELECT count(*) FROM repmgr.nodes").fetchone()[0] >= 1
        except psycopg.Error:
            return False

    def _write_config(self, node: str) -> None:
        ctx, p = self.ctx, self.ctx.rt.paths(node)
        a = ctx.state.nodes[node]
        ctx.rt.write_file(node, conf.passfile(p.home), conf.passfile_text(self._st["password"], ctx.state.replication_password))
        ctx.rt.write_file(node, f"{p.home}/repmgr_promote.sh", conf.promote_script(
            topology=ctx.topology, node=node, home=p.home, bindir=self._bindir(), port=a.peer_port,
            socket_dir=p.socket_dir), mode=0o700)
        ctx.rt.write_file(node, self._conf(node), conf.render(topology=ctx.topology, node=node, host=a.peer_host,
                                                              port=a.peer_port, home=p.home, data_dir=p.data,
                                                              bindir=self._bindir(), server_log=p.log))

    def _start_repmgrd(self, node: str) -> bool:
        svc = self._svc()
        if svc.pid(f"repmgrd-{node}") is not None:
            return False
        svc.start(f"repmgrd-{node}", [f"{self._bindir()}/repmgrd", "-f", self._conf(node), "--daemonize=false"],
                  where=node, env={"HOME": self._home(node), "PATH": f"{self._bindir()}:/usr/sbin:/usr/bin:/sbin:/bin"},
                  log=f"{self._home(node)}/repmgrd.out", cwd=self._home(node))
        return True

    def _wait_monitoring(self, nodes: list[str]) -> None:
        def watching(n: str) -> bool:
            if self._svc().pid(f"repmgrd-{n}") is None:
                raise NodeFailed(f"repmgrd on {n} exited", f"see {self._home(n)}/repmgr.log", details=self._log_tail(n))
            # the latest start's lines only: an earlier run of repmgrd wrote the same words
            text = self._log(n)
            since = text[text.rfind("starting up"):]
            return "monitoring connection to upstream" in since or "monitoring cluster primary" in since
        wait_until(lambda: all(watching(n) for n in nodes), timeout=30, what=f"repmgrd on {', '.join(nodes)} to monitor",
                   interval=0.1, logs=lambda: "\n".join(f"--- {n} ---\n{self._log_tail(n)}" for n in nodes))

    def _log(self, node: str) -> str:
        return self.ctx.rt.read_file(node, f"{self._home(node)}/repmgr.log") or ""

    def log_files(self) -> dict[str, tuple[str, str]]:
        # repmgrd writes to its log_file; its service's output holds only the line saying so
        return {f"repmgr-{n}.log": (n, f"{self._home(n)}/repmgr.log") for n in self.ctx.state.nodes}

    def _log_tail(self, node: str, lines: int = 12) -> str:
        return "\n".join(self._log(node).splitlines()[-lines:])

    def stop(self) -> list[str]:
        svc, out = self._svc(), []
        for n in self.ctx.state.nodes:
            if svc.signal(f"repmgrd-{n}", "term"):
                out.append(f"repmgrd-{n}")
        return out

    # ---- what pglab does after repmgr moved the primary ----------------------------------------
    def _writable(self, node: str) -> bool:
        try:
            rows = sql.query(self.ctx.state, node, "SELECT NOT pg_is_in_recovery()", connect_timeout=1)
            return bool(rows) and rows[0][0] is True
        except (psycopg.Error, OSError):
            return False

    def _adopt(self, primary: str, *, standbys: list[str], wait: float = 30.0) -> str:
        """After repmgr promoted `primary`: pglab's record, a slot per standby on it, the standbys
        streaming from it through pglab's own configuration, and synchronous_standby_names.
        Returns the synchronous_standby_names set."""
        ctx = self.ctx
        ctx.state.primary = primary
        ctx.save()
        for s in standbys:
            reconfigure.ensure_slot(ctx, primary, s)
        for s in standbys:
            # repmgr's follow writes primary_conninfo into postgresql.auto.conf, which would shadow
            # every later re-pointing through pglab.conf: pglab's configuration stays the one in force
            try:
                sql.query(ctx.state, s, "ALTER SYSTEM RESET primary_conninfo", connect_timeout=2)
                sql.query(ctx.state, s, "ALTER SYSTEM RESET primary_slot_name", connect_timeout=2)
            except psycopg.Error:
                continue
            reconfigure.repoint(ctx, s, primary)
        self._repair_diverged(primary, standbys, wait)
        spec = reconfigure.restore_sync(ctx, primary, wait=wait, expect=standbys)
        return spec.render() or "''"

    def _repair_diverged(self, primary: str, standbys: list[str], wait: float) -> None:
        """repmgrd elects on the LSNs its standbys report at one moment; a sibling may still hold WAL
        beyond the winner's fork point (seen here: "follow target server's timeline 3 forked off
        current database system timeline 2 before current recovery point"). Such a standby can never
        stream from the new primary: pglab rewinds it (its rejoin) and re-registers it with repmgr."""
        ctx = self.ctx
        marks = {s: len(ctx.rt.read_file(s, ctx.rt.paths(s).log) or "") for s in standbys}

        def diverged(s: str) -> bool:
            text = (ctx.rt.read_file(s, ctx.rt.paths(s).log) or "")[marks[s]:]
            return "forked off current database system timeline" in text

        def settled() -> bool:
            live = reconfigure.streaming(ctx, primary)
            return all(s in live or diverged(s) for s in standbys)
        poll(settled, timeout=wait, interval=0.2)
        for s in [s for s in standbys if s not in reconfigure.streaming(ctx, primary) and diverged(s)]:
            rj = rejoin(ctx, s)
            self.repmgr(s, "standby", "register", "--force", f"--upstream-node-id={self._ids()[primary]}")
            self.record("rewound", s, f"{s} had WAL beyond {primary}'s fork point: {rj.method} ({rj.reason})")

    def _live_standbys(self, primary: str, exclude: set[str] = frozenset()) -> list[str]:
        return [n for n in self.ctx.state.nodes if n != primary and n not in exclude and self.ctx.rt.postmaster_running(n)]

    # ---- acting ------------------------------------------------------------------------------
    def _pause(self, on: bool) -> None:
        node = next((n for n in [self.ctx.state.primary, *self.ctx.state.nodes] if self.ctx.rt.postmaster_running(n)), None)
        if node:
            self.repmgr(node, "service", "pause" if on else "unpause", check=False)

    def switchover(self, to: str | None) -> Change:
        """Planned, without ssh: repmgrd paused; the old primary shut down cleanly (its standbys
        receive all of its WAL first); `repmgr standby promote` on the target; the other standbys
        `repmgr standby follow`; the old primary back with `repmgr node rejoin --force-rewind`
        (pglab's own rejoin if repmgr's fails); pglab's configuration and synchronous_standby_names
        brought in line; repmgrd resumed."""
        ctx = self.ctx
        old = ctx.state.primary
        to = self._target(to, old)
        t0 = time.time()
        steps: list[tuple[str, float]] = []
        self._pause(True)
        try:
            server.stop(ctx.rt, old, mode="fast")
            steps.append((f"{old} shut down", time.time() - t0))
            window = self._promote(to, t0, steps)
            others = self._live_standbys(to, {old})
            self._follow(to, others)
            steps.append((f"{', '.join(others) or 'no standby'} follow {to} (repmgr standby follow)", time.time() - t0))
            a = ctx.state.nodes[to]
            # pg_rewind reads the source's timeline from its control file, which a just-promoted
            # primary updates only at its next checkpoint (repmgr's promote does not make one)
            sql.query(ctx.state, to, "CHECKPOINT")
            res = ctx.rt.run(old, [f"{self._bindir()}/repmgr", "-f", self._conf(old), "node", "rejoin", "-d",
                                   conf.conninfo(a.peer_host, a.peer_port, self._home(old)), "--force-rewind"],
                             env={"HOME": self._home(old)}, check=False, timeout=300)
            if res.rc == 0:
                steps.append((f"{old} rejoined (repmgr node rejoin --force-rewind)", time.time() - t0))
            else:
                rj = self._rejoin(old, inspect=None, primary=to)
                why = _repmgr_error(res.out)
                steps.append((f"{old} rejoined by pglab ({rj.method}); repmgr node rejoin failed: {why}", time.time() - t0))
            spec = self._adopt(to, standbys=[n for n in ctx.state.nodes if n != to])
            steps.append((f"pglab set synchronous_standby_names = {spec} (repmgr does not)", time.time() - t0))
        finally:
            self._pause(False)
        self._start_repmgrd(old)
        self.record("switchover", to, f"repmgr, scripted by pglab, from {old}")
        demoted = old in reconfigure.streaming(ctx, to)
        return Change("switchover", old, to, window, tuple(steps), demoted, self._timeline(to))

    def _promote(self, to: str, t0: float, steps: list) -> float:
        self.repmgr(to, "standby", "promote")
        wait_until(lambda: self._writable(to), timeout=60, what=f"{to} to accept writes", interval=0.05)
        window = time.time() - t0
        steps.append((f"{to} promoted by repmgr, accepts writes", window))
        self.ctx.state.primary = to
        self.ctx.save()
        # the slots the standbys stream through (pglab's, one per standby) before any follows
        for n in self.ctx.state.nodes:
            if n != to:
                reconfigure.ensure_slot(self.ctx, to, n)
        return window

    def _follow(self, to: str, standbys: list[str]) -> None:
        for s in standbys:
            # best effort: pglab re-points every standby afterwards anyway (_adopt)
            self.repmgr(s, "standby", "follow", f"--upstream-node-id={self._ids()[to]}", check=False)

    def failover(self, to: str | None, **kw: Any) -> Change:
        """By hand: the primary is gone; `repmgr standby promote` on the target (repmgr refuses
        while the primary still runs), the others follow, pglab sets synchronous_standby_names."""
        refuse_pglab_options(kw, "repmgr", "repmgr promotes the standby you name, as it is", ignore=("max_lag_bytes",))
        ctx = self.ctx
        old = ctx.state.primary
        to = self._target(to, old)
        t0 = time.time()
        steps: list[tuple[str, float]] = []
        self._pause(True)    # repmgrd must not race the promotion asked by hand
        try:
            window = self._promote(to, t0, steps)
            others = self._live_standbys(to, {old})
            self._follow(to, others)
            spec = self._adopt(to, standbys=others)
        finally:
            self._pause(False)
        steps.append((f"{', '.join(others) or 'no standby'} follow {to}; pglab set synchronous_standby_names = {spec}",
                      time.time() - t0))
        self.record("failover", to, f"repmgr standby promote, from {old}")
        return Change("failover", old, to, window, tuple(steps), False, self._timeline(to))

    def _target(self, to: str | None, old: str) -> str:
        if to is not None:
            if to not in self.ctx.state.nodes or to == old:
                raise InvalidInput(f"cannot promote {to!r}", f"name a standby: {', '.join(self.ctx.state.standbys)}")
            return to
        sync = [n for n in syncpolicy.get(self.ctx).names if n != old and n in self.ctx.state.nodes]
        cands = sync or [n for n in self.ctx.state.nodes if n != old]
        if not cands:
            raise InvalidInput("no standby to promote", "the lab has no other node")
        return cands[0]

    def _timeline(self, node: str) -> int | None:
        try:
            return sql.scalar(self.ctx.state, node, "SELECT timeline_id FROM pg_control_checkpoint()")
        except psycopg.Error:
            return None

    # ---- faults ------------------------------------------------------------------------------
    def fault(self, node: str, kind: str, *, rate: str = "1mbit", latency: str | None = None) -> None:
        svc = self._svc()
        if node not in self.ctx.state.nodes:
            raise InvalidInput(f"no node {node!r} in lab {self.ctx.name}", f"nodes are: {', '.join(self.ctx.state.nodes)}")
        agent = f"repmgrd-{node}"
        if kind == "kill":
            svc.signal(agent, "kill")     # the node died: its repmgrd with it
        elif kind == "stop":
            svc.signal(agent, "term")
        elif kind == "pause":
            svc.signal(agent, "stop")
        faults.inject(self.ctx, node, kind, rate=rate, latency=latency)

    def heal(self, node: str, kind: str | None = None) -> list[str]:
        healed = faults.heal(self.ctx, node, kind)
        if "pause" in healed:
            self._svc().signal(f"repmgrd-{node}", "cont")
        if self.ctx.rt.postmaster_running(node) and self._start_repmgrd(node):
            healed.append("start repmgrd")
        return healed

    # ---- drills ------------------------------------------------------------------------------
    def set_mode(self, mode: str) -> str:
        from lab.failover import drill  # lazy: drill imports lab.ha (this package)
        return f"{drill.set_mode(self.ctx, mode).render()} (pglab sets synchronous_standby_names; repmgr does not)"

    def starve(self, standby: str) -> None:
        # repmgr's clone put primary_conninfo in postgresql.auto.conf, which outranks pglab's file
        starve_by_hba(self.ctx, standby)

    def arm(self, *, interval: float, timeout: float, fence: str, allow_data_loss: bool, say: Say,
            fast_path: bool = True, confirm: float = 0.3) -> None:
        leader = self.leader()
        if leader is None or leader != self.ctx.state.primary:
            raise NodeFailed(f"repmgr's primary ({leader or 'none'}) is not the lab's ({self.ctx.state.primary})",
                             "see `pglab status`")
        down = [n for n in self.ctx.state.nodes if self._svc().pid(f"repmgrd-{n}") is None]
        if [n for n in down if not self.ctx.rt.postmaster_running(n)]:
            raise NodeFailed(f"repmgrd does not run on {', '.join(down)}", "run `pglab heal` on those nodes")
        if down:
            # repmgrd can exit by itself after a follow or a rejoin it did not expect (its last log
            # lines say why); a drill starts from every daemon watching, so those are started again
            for n in down:
                last = (self._log_tail(n, 1) or "no log").strip()
                say(f"repmgr: repmgrd was not running on {n} (its log ends: {last[:160]}); starting it")
                self._start_repmgrd(n)
            self._wait_monitoring(down)
        t = conf.timing(self.ctx.topology)
        say(f"repmgr: {leader} is primary; monitor_interval_secs {t['monitor_interval_secs']}, reconnect_attempts "
            f"{t['reconnect_attempts']}, reconnect_interval {t['reconnect_interval']} (profile "
            f"{self.ctx.topology.ha.profile}); repmgrd decides the failover, not the drill's --interval/--timeout")

    def _bound(self, timeout: float) -> float:
        t = conf.timing(self.ctx.topology)
        return max(timeout, t["monitor_interval_secs"] + t["reconnect_attempts"] * (t["reconnect_interval"] + 2) + 60)

    def wait_for_takeover(self, old: str, t_fault: float, timeout: float) -> Takeover:
        ctx = self.ctx
        others = [n for n in ctx.state.nodes if n != old]
        # a standby that accepts writes: repmgrd promoted it (PostgreSQL's own view, a fresh look)
        new = wait_until(lambda: next((n for n in others if self._writable(n)), None), timeout=self._bound(timeout),
                         what=f"repmgrd to promote a standby after {old} failed", interval=0.05,
                         logs=lambda: "\n".join(f"--- {n} ---\n{self._log_tail(n, 8)}" for n in others))
        # repmgr logs whole seconds only; the new primary's own log has milliseconds. repmgrd's
        # decision, election and promote request are one moment at that resolution (as Patroni's
        # taking of the leader key is), so detection runs until the promote request the server logs
        marks = server_marks(ctx, new, t_fault)
        # the new timeline is chosen before the server lets a write in (its "ready" line can come
        # a few ms after the first write it acknowledged)
        t_promoted = next((t for line in (ctx.rt.read_file(new, ctx.rt.paths(new).log) or "").splitlines()
                           if "selected new timeline ID" in line and (t := parse_log_time(line)) and t >= t_fault),
                          None) or marks.ready
        live = [n for n in others if n != new and ctx.rt.postmaster_running(n)]
        spec = self._adopt(new, standbys=live, wait=15.0)
        self.record("promoted", new, f"by repmgrd after {old} failed; pglab set synchronous_standby_names = {spec}")
        return Takeover(old, new, marks.promote_request, marks.promote_request, t_promoted, reason="repmgrd")

    def disarm(self) -> None:
        pass

    def rejoin(self, node: str, *, inspect: str | None = None, allow_reclone: bool = True) -> Rejoin:
        return self._rejoin(node, inspect=inspect, allow_reclone=allow_reclone)

    def recover(self, node: str, fault: str, *, inspect: str | None = None) -> Rejoin:
        """The old primary back as a standby: pglab's rejoin (pg_rewind through its least-privilege
        role, with the WAL it discards measured first), then `repmgr standby register --force` so
        repmgr's metadata says so, and its repmgrd started again."""
        if fault == "partition":
            self.ctx.rt.heal_partition(node)
        self.ctx.rt.resume(node)
        self._svc().signal(f"repmgrd-{node}", "cont")
        unstarve(self.ctx, node)   # an async drill's reject lines (pg_rewind would copy the new primary's file)
        return self._rejoin(node, inspect=inspect)

    def _rejoin(self, node: str, *, inspect: str | None, allow_reclone: bool = True, primary: str | None = None) -> Rejoin:
        ctx = self.ctx
        # repmgrd may have moved the primary while no pglab command ran: follow what PostgreSQL says
        primary = primary or next((n for n in [self.leader(), *ctx.state.nodes] if n and n != node and self._writable(n)),
                                  ctx.state.primary)
        if primary != ctx.state.primary:
            ctx.state.primary = primary
            ctx.save()
        # its repmgrd still believes in the node's old role: restarted once the node is a standby
        self._svc().signal(f"repmgrd-{node}", "term")
        wait_until(lambda: self._svc().pid(f"repmgrd-{node}") is None, timeout=15, what=f"repmgrd on {node} to stop",
                   interval=0.05)
        rj = rejoin(ctx, node, inspect=inspect, allow_reclone=allow_reclone)
        self.repmgr(node, "standby", "register", "--force", f"--upstream-node-id={self._ids()[primary]}",
                    "--wait-sync=30")
        self._adopt(primary, standbys=self._live_standbys(primary), wait=10.0)
        self._start_repmgrd(node)
        try:
            self._wait_monitoring([node])
        except WaitTimeout:
            pass
        return rj


def check_available(topology, runtime: str) -> str:
    """Before anything is created: PostgreSQL 15 and repmgr for it, on this machine (local runtime,
    also what 'auto' means here) or in the lab's 15 image (Docker). Returns the runtime to use."""
    if runtime == "docker":
        from lab.runtime import images  # lazy: the Docker SDK is slow to import
        conf.check_major(topology.pg_version or images.DEFAULT_MAJOR)
        images.manager_image("repmgr", conf.PG_MAJOR, topology.image)
        return "docker"
    from lab.runtime import servers  # lazy: runs `postgres --version` per installation
    if topology.bindir:
        v = servers.version_of(topology.bindir)
        major = int(v.split(".")[0]) if v else None
        bindir = topology.bindir
    else:
        major = topology.pg_version
        if major is None:
            major = servers.find(None).major
        bindir = servers.find(major).bindir if major == conf.PG_MAJOR else ""
    conf.check(major, bindir)
    return "local"
