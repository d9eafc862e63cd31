"""Lab services on the local runtime: background processes other than the PostgreSQL servers.

A failover manager's agents (Patroni), its consensus store (etcd) and a proxy (HAProxy) run here
as detached processes. Each is recorded in <lab dir>/services/<name>.json (pid, the process's start
time so a recycled pid is never mistaken for it, command, log), and every command line names a
file in the lab directory, so `down` and the leftovers check find them by the lab's name too.

With per-node network namespaces a service on node N runs inside N's namespace (so a partition of
N cuts its REST and consensus traffic too), and a lab host (an etcd member) gets a namespace of its
own on the lab bridge. Without them everything listens on 127.0.0.1, each on a free port.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from lab.errors import NodeFailed, Unsupported
from lab.runtime import netns, procs

SIGNALS = {"kill": signal.SIGKILL, "term": signal.SIGTERM, "stop": signal.SIGSTOP, "cont": signal.SIGCONT,
           "hup": signal.SIGHUP}


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2:].split()[19]


class LocalServices:
    def __init__(self, rt: Any):   # a LocalRuntime (which imports this module)
        self.rt = rt
        self.dir = rt.dir / "services"

    # ---- places ---------------------------------------------------------------------------
    def host(self, name: str) -> str:
        if not self.rt.netns:
            return "127.0.0.1"
        if name not in self.rt.net.get("nodes", {}):
            netns.add_node(self.rt.net, self.rt.lab, name)
        return netns.node_ip(self.rt.net, name)

    def address(self, where: str) -> str:
        return netns.node_ip(self.rt.net, where) if self.rt.netns else "127.0.0.1"

    def bind_address(self, where: str) -> str:
        return self.address(where)

    def reach(self, where: str, port: int) -> tuple[str, int] | None:
        return self.address(where), port     # this machine reaches every namespace of the lab bridge

    def front(self, name: str, ports: tuple[int, ...]) -> tuple[str | None, str, list[tuple[int, int]]]:
        # on this machine itself: each wanted port becomes a free port of 127.0.0.1, listened on directly
        out = [(p, p) for p in (self.port("", want) for want in ports)]
        return None, "127.0.0.1", out

    def program(self, name: str) -> str | None:
        return None    # this machine's own installation (the manager finds it)

    def put(self, path: str, text: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        if self.rt.user:
            os.chown(path, self.rt.user.pw_uid, self.rt.user.pw_gid)

    def port(self, where: str, preferred: int) -> int:
        if self.rt.netns and where in self.rt.net.get("nodes", {}):
            return preferred     # the place has an address of its own
        from lab.runtime.local import pick_port  # lazy: local imports this module (services())
        taken_file = self.dir / "ports.json"
        self.dir.mkdir(mode=0o711, exist_ok=True)
        taken = set(json.loads(taken_file.read_text())) if taken_file.exists() else set()
        port = pick_port(taken)
        taken_file.write_text(json.dumps(sorted(taken | {port})))
        return port

    def workdir(self, name: str) -> str:
        self.dir.mkdir(mode=0o711, exist_ok=True)
        d = self.dir / name
        d.mkdir(mode=0o700, exist_ok=True)
        if self.rt.user:
            os.chown(d, self.rt.user.pw_uid, self.rt.user.pw_gid)
        return str(d)

    def node_dir(self, name: str) -> str:
        # the nodes share this machine's file system: one directory serves them all
        return self.workdir(name)

    # ---- processes ------------------------------------------------------------------------
    def _record(self, name: str) -> dict | None:
        try:
            return json.loads((self.dir / f"{name}.json").read_text())
        except (OSError, ValueError):
            return None

    def names(self) -> list[str]:
        return sorted(p.stem for p in self.dir.glob("*.json") if p.name != "ports.json") if self.dir.exists() else []

    def log_path(self, name: str) -> tuple[str | None, str] | None:
        rec = self._record(name)
        return (rec.get("where"), rec["log"]) if rec and rec.get("log") else None

    def start(self, name: str, argv: list[str], *, where: str | None, server_user: bool = True,
              env: dict[str, str] | None = None, log: str, cwd: str | None = None) -> int:
        if self.pid(name):
            raise NodeFailed(f"service {name} already runs (pid {self.pid(name)})")
        self.dir.mkdir(mode=0o711, exist_ok=True)
        user = self.rt.user if server_user else None
        cmd = list(argv)
        kwargs: dict = {}
        if self.rt.netns and where:
            prefix = ["ip", "netns", "exec", netns.ns_name(self.rt.lab, where)]
            if user:
                prefix += ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
            cmd = prefix + cmd
        elif user:
            kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        if user:
            os.chown(log, user.pw_uid, user.pw_gid)
        try:
            p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=fd, stderr=subprocess.STDOUT,
                                 # never the caller's directory: the server user may not be
                                 # allowed in it (HAProxy then refuses its configuration)
                                 start_new_session=True, close_fds=True, cwd=cwd or str(self.dir),
                                 env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8", **(env or {})},
                                 **kwargs)
        except OSError as e:
            raise NodeFailed(f"could not start {name}: {e}") from None
        finally:
            os.close(fd)
        rec = {"pid": p.pid, "start": _start_time(p.pid), "argv": argv, "where": where, "log": log}
        (self.dir / f"{name}.json").write_text(json.dumps(rec))
        return p.pid

    def pid(self, name: str) -> int | None:
        rec = self._record(name)
        if not rec:
            return None
        pid = rec["pid"]
        if not procs.alive(pid) or _start_time(pid) != rec.get("start"):
            return None
        return pid

    def signal(self, name: str, sig: str, *, group: bool = False) -> bool:
        pid = self.pid(name)
        if pid is None:
            return False
        try:
            # each service leads a session of its own (start_new_session), so its process group is
            # everything it started that did not leave it: a keeper's workers and its postmaster
            if group:
                os.killpg(pid, SIGNALS[sig])
            else:
                os.kill(pid, SIGNALS[sig])
        except ProcessLookupError:
            return False
        if sig == "kill":
            try:   # reap it when this process started it
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        return True

    def partition(self, where: str, on: bool) -> None:
        if not self.rt.netns:
            raise Unsupported(f"cutting {where} off needs per-node network namespaces",
                              "bring the lab up with --netns (as root)")
        netns.link(self.rt.net, where, up=not on)

    def destroy(self) -> list[str]:
        removed = []
        for name in self.names():
            # the whole group: a supervisor's children retitle themselves (pg_autoctl's do), so they
            # cannot be found by the lab's directory in their command line afterwards
            if self.signal(name, "kill", group=True):
                removed.append(f"{name} (pid {self._record(name)['pid']})")
        return removed
