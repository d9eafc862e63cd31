"""Patroni as the lab's failover manager: a real etcd cluster, one Patroni agent per node, HAProxy.

Patroni bootstraps and owns the servers: the lab writes each node's patroni.yml (settings from the
topology's [ha] section, lab.ha.patroni_conf) and starts the agents through the runtime's services;
PostgreSQL's configuration, synchronous_standby_names, promotion and rejoining (pg_rewind) are
Patroni's from then on. The lab talks to Patroni through its REST API only.

Faults mean what they mean with a supervisor:
  kill           SIGKILL of the agent and the server (the machine died)
  kill-postgres  SIGKILL of the postmaster only: Patroni restarts it in place
  stop           SIGTERM of the agent: Patroni stops the server cleanly and gives up the leader key
  pause          every process of the node frozen, the agent (and its REST API) included
  partition, isolate, throttle   the node's addresses (per-node namespaces, --netns; on Docker the
                 node's container on the lab network), which carry its REST and etcd traffic too
An etcd member (e1, e2, …, or etcd-leader for whichever leads now) can be killed, paused, stopped
or (with --netns, or on Docker) partitioned on its own.

The same code runs on both runtimes: where the agents, etcd and HAProxy run, how they are reached
and which programs they are comes from the runtime's Services (lab.runtime.base); on Docker they
are processes in the lab's containers, from the pglab-ha image.
"""
from __future__ import annotations

import base64
import json
import os
import re
import secrets
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from typing import Any

import psycopg
import yaml

from lab.cluster import sql
from lab.errors import InvalidInput, LabError, NodeFailed, Unsupported, WaitTimeout
from lab.failover.rejoin import Rejoin
from lab.ha import etcd, haproxy
from lab.ha.base import (Change, Component, HAEvent, Manager, ManagerView, Member, Say, Takeover, refuse_pglab_options,
                         inspect_if_down, starve_by_hba)
from lab.ha.patroni_faults import PatroniFaults
from lab.ha.patroni_conf import check, render, runner, runner_hint
from lab.wait import wait_until

REST_PORT = 8008
_PROMOTED_RE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO: promoted self to leader")
# the server's own log (Patroni passes it through): the moment it left recovery
_NEW_TIMELINE_RE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) UTC \[\d+\] LOG:  selected new timeline ID")


class PatroniError(LabError):
    """Patroni refused or failed a request (its answer is the message)."""


def _http(method: str, url: str, body: dict | None = None, timeout: float = 2.0) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        raw, status = e.read(), e.code
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


class PatroniManager(PatroniFaults, Manager):
    name = "patroni"
    bootstraps_servers = True

    # ---- what the lab remembers ----------------------------------------------------------
    @property
    def _st(self) -> dict:
        return self.ctx.state.ha

    def _api(self, node: str) -> str:
        at = self._svc().reach(node, self._st["rest"][node][1])
        if at is None:    # cut off from the lab network: as unreachable as a dead agent
            raise ConnectionError(f"the REST API of {node} is not reachable")
        return f"http://{at[0]}:{at[1]}"

    def _members(self) -> list[etcd.EtcdMember]:
        return etcd.from_state(self._st.get("etcd", []))

    def _svc(self):
        return self.ctx.rt.services()

    # ---- life cycle ------------------------------------------------------------------------
    def check_available(self) -> None:
        if self._svc().program("patroni") is None:    # else the runtime's places (an image) provide it all
            check_available(self.ctx.topology)

    def _runner(self) -> tuple[list[str], dict[str, str]]:
        prog = self._svc().program("patroni")
        return ([prog], {}) if prog else runner(_is_root())

    def _check_runner(self, node: str) -> None:
        if self._svc().program("patroni"):
            res = self.ctx.rt.run(node, [self._svc().program("patroni"), "--version"], check=False, timeout=60)
            if res.rc != 0:
                raise Unsupported(f"Patroni does not run in the lab's image ({res.out.strip()[-200:]})",
                                  "rebuild the image: pglab image build --pg <major> --ha")
            return
        argv, env = runner(_is_root())
        try:
            res = self.ctx.rt.run(node, [argv[0], "-c", "import patroni.dcs.etcd3, psycopg"], env=env, check=False,
                                  timeout=60)
        except OSError as e:    # the server user may not even execute it
            raise Unsupported(f"the server user cannot run Patroni ({e.strerror}: {argv[0]})", runner_hint()) from None
        if res.rc != 0:
            last = (res.out.strip().splitlines() or ["no output"])[-1]
            raise Unsupported(f"the server user cannot run Patroni ({last})", runner_hint())

    def bootstrap(self, say: Say) -> None:
        ctx, topo, svc = self.ctx, self.ctx.topology, self._svc()
        self.check_available()
        primary = topo.primary.name
        self._check_runner(primary)
        token = secrets.token_hex(4)
        scope = f"pglab-{ctx.name}"
        st: dict[str, Any] = {"scope": scope, "namespace": f"/pglab-{ctx.name}-{token}/", "rest": {}}
        # etcd first: Patroni cannot bootstrap without its consensus store
        members = etcd.plan(svc, topo.ha.etcd_members)
        st["etcd"] = etcd.to_state(members)
        ctx.state.ha = st
        ctx.save()
        etcd_dir = svc.workdir("etcd")
        etcd.start(svc, members, etcd_dir, f"pglab-{ctx.name}-{token}", etcd_dir)
        leader = etcd.wait_healthy(svc, members, timeout=60, logs=lambda: _tails([f"{etcd_dir}/{m.name}.log" for m in members]))
        say(f"etcd: {len(members)} members up, {leader} leads ({', '.join(m.client_url for m in members)})")
        for n in topo.node_names:
            st["rest"][n] = [svc.address(n), svc.port(n, REST_PORT)]
        ctx.save()
        for n in topo.node_names:
            self._write_config(n)
        self._start_agent(primary)
        wait_until(lambda: self._role_of(primary) == "leader" and self._writable(primary), timeout=120,
                   what=f"Patroni to bootstrap {primary}", interval=0.3, logs=lambda: self._log_tail(primary))
        say(f"patroni: {primary} bootstrapped and leads; cloning {', '.join(n for n in topo.node_names if n != primary)}")
        for n in topo.node_names:
            if n != primary:
                self._start_agent(n)
        self._wait_members_streaming(timeout=180)
        if topo.ha.synchronous_mode != "off" and len(topo.nodes) > 1:
            wait_until(lambda: self._sync_standbys(), timeout=60, what="Patroni to choose a synchronous standby",
                       interval=0.3)
        if topo.ha.haproxy:
            self._start_haproxy()
            say(f"haproxy: read-write 127.0.0.1:{st['haproxy']['rw']}, read-only 127.0.0.1:{st['haproxy']['ro']}")
        ctx.state.primary = primary
        ctx.save()
        self.record("bootstrapped", primary, f"Patroni leader of {scope}")

    def _write_config(self, node: str) -> None:
        ctx, p = self.ctx, self.ctx.rt.paths(node)
        a = ctx.state.nodes[node]
        conf = render(lab=ctx.name, scope=self._st["scope"], namespace=self._st["namespace"], node=node,
                      topology=ctx.topology, rest=tuple(self._st["rest"][node]), pg=(a.peer_host, a.peer_port),
                      home=p.home, data_dir=p.data, bin_dir=ctx.state.runtime_data.get("bindir") or "",
                      rest_listen=self._svc().bind_address(node), pg_listen=ctx.rt.listen_address(node),
                      etcd_hosts=[f"{m.host}:{m.client_port}" for m in self._members()],
                      # Patroni's own connections come from the node itself (127.0.0.1 when it listens on all)
                      networks=sorted({*ctx.rt.hba_networks(), "127.0.0.1/32"}), superuser_password=ctx.state.superuser_password,
                      replication_password=ctx.state.replication_password)
        ctx.rt.write_file(node, f"{p.home}/patroni.yml", yaml.safe_dump(conf, sort_keys=False))

    def _start_agent(self, node: str) -> None:
        p = self.ctx.rt.paths(node)
        argv, env = self._runner()
        bindir = self.ctx.state.runtime_data.get("bindir") or ""
        self._svc().start(f"patroni-{node}", [*argv, f"{p.home}/patroni.yml"], where=node,
                          env={**env, "HOME": p.home, "PATH": f"{bindir}:/usr/sbin:/usr/bin:/sbin:/bin"},
                          log=f"{p.home}/patroni.log", cwd=p.home)

    def _log_tail(self, node: str, lines: int = 20) -> str:
        text = self.ctx.rt.read_file(node, f"{self.ctx.rt.paths(node).home}/patroni.log") or ""
        return "\n".join(text.splitlines()[-lines:])

    def _start_haproxy(self) -> None:
        svc = self._svc()
        # this machine's 127.0.0.1 (local runtime), or a container of its own with ports published there
        where, bind, ((rw_in, rw), (ro_in, ro)) = svc.front(haproxy.SERVICE, (5000, 5001))
        d = svc.workdir("haproxy")
        servers = []
        for n in self.ctx.state.nodes:
            a = self.ctx.state.nodes[n]      # as the lab's places reach the node, like its peers
            rh, rp = self._st["rest"][n]
            servers.append((n, a.peer_host, a.peer_port, rh, rp))
        cfg = f"{d}/haproxy.cfg"
        svc.put(cfg, haproxy.render(bind=bind, rw_port=rw_in, ro_port=ro_in, servers=servers,
                                    stats_socket=f"{d}/stats.sock", where=where))
        self._st["haproxy"] = {"rw": rw, "ro": ro, "socket": f"{d}/stats.sock", "where": where}
        self.ctx.save()
        svc.start(haproxy.SERVICE, [svc.program("haproxy") or haproxy.binary(), "-db", "-f", cfg], where=where,
                  log=f"{d}/haproxy.log")
        # HAProxy starts every server as up until its checks say otherwise: wait until they did
        leader = self.leader()
        sock = f"{d}/stats.sock"
        wait_until(lambda: haproxy.up_servers(sock, "primary") == [leader] and leader not in haproxy.up_servers(sock, "replicas"),
                   timeout=30, what=f"HAProxy to route writes to {leader} only", interval=0.2)

    def start(self, say: Say) -> None:
        """Start what is not running (agents, etcd members, HAProxy): e.g. after a killed node."""
        svc = self._svc()
        for n in self.ctx.state.nodes:
            if svc.pid(f"patroni-{n}") is None:
                self._start_agent(n)
                say(f"patroni on {n} started")

    def stop(self) -> list[str]:
        svc, out = self._svc(), []
        for n in self.ctx.state.nodes:
            if svc.signal(f"patroni-{n}", "term"):
                out.append(f"patroni-{n}")
        return out

    # ---- looking -----------------------------------------------------------------------------
    def _get(self, path: str, exclude: set[str] | None = None) -> dict | None:
        """GET `path` from the first agent that answers (they answer from the same DCS)."""
        for n in self.ctx.state.nodes:
            if exclude and n in exclude:
                continue
            try:
                code, body = _http("GET", f"{self._api(n)}{path}", timeout=1.0)
            except OSError:
                continue
            if code == 200 and isinstance(body, dict):
                return body
        return None

    def _cluster(self, exclude: set[str] | None = None) -> dict | None:
        return self._get("/cluster", exclude)

    def _role_of(self, node: str) -> str | None:
        c = self._cluster()
        for m in (c or {}).get("members", []):
            if m.get("name") == node:
                return m.get("role")
        return None

    def _writable(self, node: str) -> bool:
        try:
            return sql.scalar(self.ctx.state, node, "SELECT NOT pg_is_in_recovery()") is True
        except psycopg.Error:
            return False

    def _sync_standbys(self) -> list[str]:
        c = self._cluster() or {}
        return [m["name"] for m in c.get("members", []) if m.get("role") in ("sync_standby", "quorum_standby")]

    def _wait_members_streaming(self, timeout: float, exclude: set[str] | None = None) -> None:
        want = [n for n in self.ctx.state.nodes if not exclude or n not in exclude]

        def ready() -> bool:
            c = self._cluster(exclude) or {}
            ms = {m.get("name"): m for m in c.get("members", [])}
            return all(n in ms and (ms[n].get("role") == "leader" and ms[n].get("state") == "running"
                                    or ms[n].get("state") == "streaming") for n in want)
        wait_until(ready, timeout=timeout, what=f"Patroni members {', '.join(want)} to stream", interval=0.3,
                   logs=lambda: "\n".join(f"--- {n} ---\n{self._log_tail(n, 8)}" for n in want))

    def leader(self) -> str | None:
        c = self._cluster()
        for m in (c or {}).get("members", []):
            if m.get("role") in ("leader", "standby_leader"):
                return m["name"]
        return None

    def leader_key(self) -> str | None:
        """The leader key as etcd holds it (what Patroni's agents race for)."""
        key = f"{self._st['namespace']}{self._st['scope']}/leader".replace("//", "/")
        body = {"key": base64.b64encode(key.encode()).decode()}
        for m in self._members():
            base = etcd.url(self._svc(), m)
            if base is None:
                continue
            try:
                code, res = _http("POST", f"{base}/v3/kv/range", body, timeout=1.0)
            except OSError:
                continue
            if code == 200 and isinstance(res, dict):
                kvs = res.get("kvs") or []
                return base64.b64decode(kvs[0]["value"]).decode() if kvs else ""
        return None

    def view(self) -> ManagerView:
        c = self._cluster()
        comps: list[Component] = etcd.components(self._svc(), self._members())
        key = self.leader_key()
        comps.append(Component("etcd", "leader key", f"{self._st['namespace']}{self._st['scope']}/leader",
                               "held" if key else ("empty" if key == "" else "unreadable"), key or None))
        h = self._st.get("haproxy")
        if h:
            comps += haproxy.components(self._svc().pid(haproxy.SERVICE) is not None, h["rw"], h["ro"], h["socket"])
        if c is None:
            return ManagerView(self.name, None, (), tuple(comps), error="no Patroni agent answers")
        members = []
        for m in c.get("members", []):
            lag = m.get("lag", m.get("receive_lag"))
            members.append(Member(m["name"], m.get("role", "?"), m.get("state"), m.get("timeline"),
                                  lag if isinstance(lag, int) else None, m.get("api_url"), m.get("tags") or {}))
        seen = {m.name for m in members}
        members += [Member(n, "(missing)", "no agent in the cluster view") for n in self.ctx.state.nodes if n not in seen]
        leader = next((m.name for m in members if m.role in ("leader", "standby_leader")), None)
        return ManagerView(self.name, leader, tuple(members), tuple(comps))

    def events(self) -> list[HAEvent]:
        """What the lab recorded, and Patroni's own timeline history (GET /history: each promotion,
        with its time and the new leader), oldest first."""
        out = super().events()
        leader = self.leader()
        try:
            code, hist = _http("GET", f"{self._api(leader)}/history", timeout=1.0) if leader else (0, None)
        except OSError:
            code, hist = 0, None
        if code == 200 and isinstance(hist, list):
            for row in hist:
                if len(row) >= 4 and row[3]:
                    try:
                        t = datetime.fromisoformat(str(row[3])).timestamp()
                    except ValueError:
                        continue
                    who = row[4] if len(row) >= 5 else None
                    lsn = f"{int(row[1]) >> 32:X}/{int(row[1]) & 0xFFFFFFFF:X}" if isinstance(row[1], int) else row[1]
                    out.append(HAEvent(t, "promoted", who, f"timeline {row[0] + 1} from {lsn} (Patroni's history)"))
        return sorted(out, key=lambda e: e.t)

    def endpoints(self) -> dict[str, tuple[str, int]]:
        h = self._st.get("haproxy")
        return {"primary": ("127.0.0.1", h["rw"]), "standby": ("127.0.0.1", h["ro"])} if h else {}

    # ---- acting ------------------------------------------------------------------------------
    def _post_leader(self, path: str, body: dict, timeout: float = 90) -> tuple[int, Any]:
        leader = self.leader()
        targets = [leader] if leader else []
        targets += [n for n in self.ctx.state.nodes if n not in targets]
        last: tuple[int, Any] = (0, "no Patroni agent answers")
        for n in targets:
            try:
                return _http("POST", f"{self._api(n)}{path}", body, timeout=timeout)
            except OSError as e:
                last = (0, str(e))
        return last

    def _change(self, kind: str, to: str | None) -> Change:
        old = self.leader()
        if to is not None and to not in self.ctx.state.nodes:
            raise InvalidInput(f"no node {to!r} in lab {self.ctx.name}", f"nodes are: {', '.join(self.ctx.state.nodes)}")
        if to is None:
            sync = self._sync_standbys()
            cands = sync or [n for n in self.ctx.state.nodes if n != old]
            if not cands:
                raise InvalidInput(f"no candidate for a {kind}", "the lab has no other member")
            to = cands[0]
        body = {"candidate": to} if kind == "failover" else {"leader": old, "candidate": to}
        t0 = time.time()
        code, res = self._post_leader(f"/{kind}", body)
        if code != 200:
            raise PatroniError(f"Patroni refused the {kind} to {to}: {res if isinstance(res, str) else json.dumps(res)}".strip(),
                               "see `pglab status` for the members Patroni can choose")
        steps = [(f"Patroni answered: {str(res).strip()[:80]}", time.time() - t0)]
        wait_until(lambda: self._writable(to), timeout=60, what=f"{to} to accept writes", interval=0.05)
        window = time.time() - t0
        steps.append((f"{to} accepts writes", window))
        self.ctx.state.primary = to
        self.ctx.save()
        self.record(kind, to, f"through Patroni's API, from {old}")
        demoted = False
        if old and old != to:
            try:
                self._wait_members_streaming(timeout=90)
                demoted = True
                steps.append((f"{old} streams from {to}", time.time() - t0))
            except WaitTimeout:
                pass
        tl = (self._cluster() or {}).get("members", [{}])
        timeline = next((m.get("timeline") for m in tl if m.get("name") == to), None)
        return Change(kind, old, to, window, tuple(steps), demoted, timeline)

    def switchover(self, to: str | None) -> Change:
        return self._change("switchover", to)

    def failover(self, to: str | None, **kw: Any) -> Change:
        refuse_pglab_options(kw, "Patroni", "Patroni applies its own guard (maximum_lag_on_failover, synchronous_mode)")
        return self._change("failover", to)

    # ---- drills ------------------------------------------------------------------------------
    def set_mode(self, mode: str) -> str:
        if mode not in ("sync", "async"):
            raise InvalidInput(f"unknown mode {mode!r}", "use sync or async")
        if mode == "async":
            code, res = self._patch_config({"synchronous_mode": False})
            if code != 200:
                raise PatroniError(f"Patroni refused synchronous_mode: {res}")
            # Patroni empties synchronous_standby_names on its next loop: until then commits still wait
            wait_until(lambda: not self._sync_standbys() and self._primary_sync_names() == "", timeout=60,
                       what="Patroni to drop its synchronous standbys", interval=0.2)
            return (f"Patroni synchronous_mode=off, maximum_lag_on_failover "
                    f"{self.ctx.topology.ha.maximum_lag_on_failover} B")
        # a topology that asks for no synchronous mode still gets one here: the drill's sync mode
        sm: Any = {"on": True, "off": True}.get(self.ctx.topology.ha.synchronous_mode, "quorum")
        code, res = self._patch_config({"synchronous_mode": sm})
        if code != 200:
            raise PatroniError(f"Patroni refused synchronous_mode: {res}")
        sync = wait_until(lambda: self._sync_standbys(), timeout=60, what="Patroni to name a synchronous standby",
                          interval=0.2)
        return f"Patroni synchronous_mode={sm} (synchronous: {', '.join(sync)})"

    def _primary_sync_names(self) -> str | None:
        try:
            return sql.scalar(self.ctx.state, self.ctx.state.primary, "SHOW synchronous_standby_names")
        except psycopg.Error:
            return None

    def starve(self, standby: str) -> None:
        # Patroni owns primary_conninfo (it puts back any change within a loop) and writes the
        # primary's pg_hba.conf anew when it next starts that server
        starve_by_hba(self.ctx, standby)

    def _patch_config(self, body: dict) -> tuple[int, Any]:
        for n in self.ctx.state.nodes:
            try:
                req = urllib.request.Request(f"{self._api(n)}/config", data=json.dumps(body).encode(), method="PATCH",
                                             headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=5) as r:
                    return r.status, json.loads(r.read() or b"null")
            except urllib.error.HTTPError as e:
                return e.code, e.read().decode(errors="replace")
            except OSError:
                continue
        return 0, "no Patroni agent answers"

    def arm(self, *, interval: float, timeout: float, fence: str, allow_data_loss: bool, say: Say,
            fast_path: bool = True, confirm: float = 0.3) -> None:
        leader = self.leader()
        if leader is None:
            raise NodeFailed("Patroni has no leader; a drill needs one", "see `pglab status`")
        self.ctx.state.primary = leader
        self.ctx.save()
        # every member up; not necessarily streaming: an async drill has starved the standbys by now
        def up() -> bool:
            ms = {m.get("name"): m for m in (self._cluster() or {}).get("members", [])}
            return all(n in ms and ms[n].get("state") in ("running", "streaming") for n in self.ctx.state.nodes)
        wait_until(up, timeout=60, what="every Patroni member to run", interval=0.2)
        ha = self.ctx.topology.ha
        say(f"patroni: {leader} leads; ttl {ha.ttl}, loop_wait {ha.loop_wait}, retry_timeout {ha.retry_timeout} "
            f"(profile {ha.profile}); Patroni decides the failover, not the drill's --interval/--timeout")

    def wait_for_takeover(self, old: str, t_fault: float, timeout: float) -> Takeover:
        ha = self.ctx.topology.ha
        bound = max(timeout, ha.ttl + ha.loop_wait + 2 * ha.retry_timeout + 60)

        # a killed postmaster alone: Patroni restarts it in place, and the "takeover" is the old
        # leader accepting writes again (unless Patroni fails over after all)
        in_place = self._last_fault.get(old) == "kill-postgres"

        def new_leader() -> str | None:
            c = self._cluster(exclude=None if in_place else {old}) or {}
            for m in c.get("members", []):
                if m.get("role") == "leader" and (in_place or m.get("name") != old) and m.get("state") == "running" \
                        and (not in_place or self._writable(m["name"])):
                    return m["name"]
            return None
        what = f"{old} to accept writes again" if in_place else f"Patroni to elect a leader other than {old}"
        new = wait_until(new_leader, timeout=bound, what=what, interval=0.1,
                         logs=lambda: "\n".join(f"--- {n} ---\n{self._log_tail(n, 6)}" for n in self.ctx.state.nodes))
        wait_until(lambda: self._writable(new), timeout=30, what=f"{new} to accept writes", interval=0.05)
        t_elected = self._log_time(new, _PROMOTED_RE, "%Y-%m-%d %H:%M:%S,%f", after=t_fault)
        t_promoted = self._log_time(new, _NEW_TIMELINE_RE, "%Y-%m-%d %H:%M:%S.%f", after=t_fault, utc=True)
        self.ctx.state.primary = new
        self.ctx.save()
        self.record("promoted" if new != old else "restarted", new, f"by Patroni after {old} failed")
        # Patroni does not log when it decided the primary was gone: its decision and election are
        # one moment (taking the leader key), so detection runs until then and election is 0
        return Takeover(old, new, t_elected, t_elected, t_promoted)

    def _log_time(self, node: str, pattern: re.Pattern, fmt: str, after: float, utc: bool = False) -> float | None:
        """The first line of the node's Patroni log (with the server's own lines) matching pattern after a time."""
        text = self.ctx.rt.read_file(node, f"{self.ctx.rt.paths(node).home}/patroni.log") or ""
        for line in text.splitlines():
            mt = pattern.match(line)
            if mt:
                d = datetime.strptime(mt.group(1), fmt)
                t = (d.replace(tzinfo=timezone.utc) if utc else d).timestamp()
                if t >= after - 1:
                    return t
        return None

    def disarm(self) -> None:
        pass

    # ---- split brain and a lost etcd quorum --------------------------------------------------
    has_failsafe = True

    def check_split_brain(self, *, fence: str, failsafe: bool | None) -> None:
        if fence != "none":
            raise InvalidInput(f"--fence {fence} does not apply to a Patroni lab",
                               "Patroni fences itself: a leader that cannot renew its key demotes itself; drop --fence")

    def set_failsafe(self, on: bool) -> bool:
        """PATCH /config failsafe_mode (dynamic configuration, kept in etcd); returns the old value."""
        before = bool(self._config().get("failsafe_mode", False))
        code, res = self._patch_config({"failsafe_mode": on})
        if code != 200:
            raise PatroniError(f"Patroni refused failsafe_mode={on}: {res}")
        # every agent applies the new dynamic configuration on its next loop
        wait_until(lambda: self._config().get("failsafe_mode", False) is on, timeout=30,
                   what=f"Patroni to report failsafe_mode {on}", interval=0.2)
        time.sleep(self.ctx.topology.ha.loop_wait + 1)
        self.record("config", None, f"failsafe_mode {str(before).lower()} -> {str(on).lower()}")
        return before

    def _config(self) -> dict:
        return self._get("/config") or {}

    def take_over_isolated(self, old: str, *, fence: str, t_fault: float, timeout: float) -> Takeover:
        # Patroni decides: the others take the key once it expires (ttl), the old leader demotes
        return self.wait_for_takeover(old, t_fault, timeout)

    def settle(self, node: str, timeout: float) -> None:
        self._wait_members_streaming(timeout=timeout)

    def consensus_members(self) -> list[str]:
        return [m.name for m in self._members()]

    def rejoin(self, node: str, *, inspect: str | None = None, allow_reclone: bool = True) -> Rejoin:
        """Rejoining is Patroni's job: start the node's agent if it is down, and wait for it."""
        return self.recover(node, "", inspect=inspect)

    def recover(self, node: str, fault: str, *, inspect: str | None = None) -> Rejoin:
        """Heal the fault and let Patroni bring the node back (pg_rewind when needed): pglab only
        waits and reports the time."""
        t0 = time.time()
        inspected = inspect_if_down(self.ctx, node, inspect)
        self.heal(node)
        primary = self.ctx.state.primary
        self._wait_members_streaming(timeout=180)
        return Rejoin(node, primary, "patroni", f"Patroni rejoined {node} by itself (use_pg_rewind)", None, None, None,
                      None, None, inspected, time.time() - t0, True)


def check_available(topology) -> None:
    check()
    etcd.binary()
    if topology.ha.haproxy:
        haproxy.binary()


def _is_root() -> bool:
    return os.geteuid() == 0


def _tails(paths: list[str]) -> str:
    out = []
    for p in paths:
        try:
            with open(p, errors="replace") as f:
                out.append(f"--- {p} ---\n" + "".join(f.readlines()[-6:]))
        except OSError:
            pass
    return "\n".join(out)

