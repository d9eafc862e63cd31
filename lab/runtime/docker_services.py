"""Lab services on the Docker runtime: a failover manager's processes in containers of the lab.

A service on a node (Patroni) is a process exec'd in that node's container, as the image's server
user: a partition, pause or kill of the node reaches it too, as it would on a machine. A lab host
(an etcd member, HAProxy) is a container of its own on the lab network, `pglab-<lab>-<host>`, from
the lab's image (an HA image holds etcd, HAProxy and Patroni), with the label of the lab, so
`down` removes it like a node. Each service is recorded in <lab dir>/services/<name>.json (the
container, its pid there and the process's start time, so a recycled pid is never mistaken for it).

The lab's services directory on this machine is mounted at the same path in every lab host: a
host's work directory (etcd's data and log, HAProxy's configuration and stats socket) is then a
file of this machine too, which pglab reads without an exec. Everything listens inside the
containers only; what this machine's clients use (HAProxy's ports) is published on 127.0.0.1.
"""
from __future__ import annotations

import json
import os
import shlex
import signal
import time
from pathlib import Path
from typing import Any

import docker
import docker.errors

from lab.errors import NodeFailed, Unsupported
from lab.runtime.images import HA_PROGRAMS, HA_REPO
from lab.runtime.local import pick_port

NUMBERS = {"kill": "KILL", "term": "TERM", "stop": "STOP", "cont": "CONT", "hup": "HUP"}
HOST_LABEL = "pglab.host"


class DockerServices:
    def __init__(self, rt: Any):   # a DockerRuntime (which imports this module)
        self.rt = rt
        self.dir = rt.dir / "services"

    # ---- places ---------------------------------------------------------------------------
    def _mkdir(self) -> None:
        self.dir.mkdir(mode=0o711, parents=True, exist_ok=True)

    def _create_host(self, name: str, ports: dict[str, tuple[str, int]] | None = None):
        self._mkdir()
        labels = {**self.rt._labels(), HOST_LABEL: name}
        try:
            c = self.rt.client.containers.create(
                self.rt.image, entrypoint=self.rt.sleeper(), command=[], name=self.rt.cname(name), hostname=name,
                labels=labels, init=True, detach=True, network=self.rt.network, environment={"LANG": "C.UTF-8"},
                volumes={str(self.dir): {"bind": str(self.dir), "mode": "rw"}}, ports=ports or {})
            c.start()
        except docker.errors.APIError as e:
            raise NodeFailed(f"could not start the lab host {name} ({self.rt.cname(name)}): {e.explanation or e}") from None
        self.rt._containers[name] = c
        return c

    def _exists(self, where: str) -> bool:
        try:
            self.rt.container(where)
            return True
        except NodeFailed:
            return False

    def host(self, name: str) -> str:
        if not self._exists(name):
            self._create_host(name)
        return self.rt.cname(name)

    def front(self, name: str, ports: tuple[int, ...]) -> tuple[str | None, str, list[tuple[int, int]]]:
        """A lab host whose ports this machine's clients reach on 127.0.0.1 (published there only)."""
        if self._exists(name):    # made before: the ports it publishes
            bound = self.rt.container(name).attrs["HostConfig"].get("PortBindings") or {}
            return name, "0.0.0.0", [(p, int(bound[f"{p}/tcp"][0]["HostPort"])) for p in ports]
        out: list[tuple[int, int]] = []
        taken: set[int] = set()
        for p in ports:
            out.append((p, pick_port(taken)))
            taken.add(out[-1][1])
        self._create_host(name, {f"{p}/tcp": ("127.0.0.1", hp) for p, hp in out})
        return name, "0.0.0.0", out

    def address(self, where: str) -> str:
        return self.rt.cname(where)   # the container's name: resolved by Docker's DNS on the lab network

    def bind_address(self, where: str) -> str:
        # inside its own container: the container's address can change when a partition is healed
        return "0.0.0.0"

    def reach(self, where: str, port: int) -> tuple[str, int] | None:
        """The container's address on the lab network now (this machine is on that bridge); None
        when it is cut off."""
        try:
            c = self.rt.container(where)
            c.reload()
        except (NodeFailed, docker.errors.NotFound):
            self.rt._containers.pop(where, None)
            return None
        ip = ((c.attrs.get("NetworkSettings", {}).get("Networks") or {}).get(self.rt.network) or {}).get("IPAddress")
        return (ip, port) if ip else None

    def port(self, where: str, preferred: int) -> int:
        return preferred if where else pick_port(set())   # each place has an address of its own

    def program(self, name: str) -> str | None:
        return HA_PROGRAMS.get(name) if self.rt.image.startswith(HA_REPO + ":") else None

    def workdir(self, name: str) -> str:
        self._mkdir()
        d = self.dir / name
        d.mkdir(mode=0o700, exist_ok=True)
        os.chown(d, self.rt.uid or 0, self.rt.gid or 0)
        return str(d)

    def node_dir(self, name: str) -> str:
        # every container has the same home (the node's volume), none sees another's: the same
        # path names each node's own directory
        return f"{self.rt.paths(name).home}/{name}"

    def put(self, path: str, text: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chown(path, self.rt.uid or 0, self.rt.gid or 0)

    # ---- processes ------------------------------------------------------------------------
    def _record(self, name: str) -> dict | None:
        try:
            return json.loads((self.dir / f"{name}.json").read_text())
        except (OSError, ValueError):
            return None

    def names(self) -> list[str]:
        return sorted(p.stem for p in self.dir.glob("*.json")) if self.dir.exists() else []

    def log_path(self, name: str) -> tuple[str | None, str] | None:
        rec = self._record(name)
        return (rec.get("where"), rec["log"]) if rec and rec.get("log") else None

    def _status(self, where: str) -> str | None:
        try:
            c = self.rt.container(where)
            c.reload()
            return c.status
        except (NodeFailed, docker.errors.NotFound):
            self.rt._containers.pop(where, None)
            return None

    def _sh(self, where: str, script: str, *args: str, user: str = "root", env: dict | None = None,
            detach: bool = False):
        c = self.rt.container(where)
        try:
            return c.exec_run(["sh", "-c", script, "sh", *args], user=user, environment=env or {}, detach=detach)
        except docker.errors.APIError as e:
            raise NodeFailed(f"could not run a command in {c.name}: {e.explanation or e}") from None

    def start(self, name: str, argv: list[str], *, where: str | None, server_user: bool = True,
              env: dict[str, str] | None = None, log: str, cwd: str | None = None) -> int:
        if where is None:
            raise Unsupported(f"service {name}: the Docker runtime runs services in the lab's containers, "
                              "not on this machine", "give it a lab host (Services.host or front)")
        if self.pid(name):
            raise NodeFailed(f"service {name} already runs (pid {self.pid(name)})")
        self._mkdir()
        pidfile = f"/tmp/pglab-service-{name}.pid"
        # the shell writes its pid, then becomes the service (exec): that pid is the service's
        script = ('rm -f "$1"; echo $$ > "$1"; cd "$2" 2>/dev/null || cd /; shift 3; '
                  'exec "$@" >> "$LOG" 2>&1')
        user = "postgres" if server_user else "root"
        self._sh(where, "mkdir -p \"$(dirname \"$1\")\" && touch \"$1\" && chown $2 \"$1\"", log,
                 user if server_user else "root")
        self._sh(where, script, pidfile, cwd or "/", "--", *argv, user=user,
                 env={"LC_ALL": "C.UTF-8", **(env or {}), "LOG": log}, detach=True)
        pid, start = None, None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:   # bounded: the shell writes the file at once
            rc, out = self._sh(where, 'p=$(cat "$1" 2>/dev/null) && [ -n "$p" ] && echo "$p" && '
                                      'sed "s/.*) //" /proc/$p/stat | cut -d" " -f20', pidfile)
            words = (out or b"").decode().split()
            if rc == 0 and len(words) == 2:
                pid, start = int(words[0]), words[1]
                break
            time.sleep(0.05)
        if pid is None:
            raise NodeFailed(f"service {name} did not start in {self.rt.cname(where)}", f"see its log {log}")
        rec = {"container": self.rt.cname(where), "where": where, "pid": pid, "start": start, "argv": argv,
               "log": log, "cmd": shlex.join(argv)[:200]}
        (self.dir / f"{name}.json").write_text(json.dumps(rec))
        return pid

    def pid(self, name: str) -> int | None:
        rec = self._record(name)
        if not rec:
            return None
        st = self._status(rec["where"])
        if st == "paused":
            return rec["pid"]      # frozen, not gone
        if st != "running":
            return None
        rc, out = self._sh(rec["where"], 'sed "s/.*) //" /proc/$1/stat 2>/dev/null | cut -d" " -f1,20', str(rec["pid"]))
        words = (out or b"").decode().split()
        # a zombie (state Z) is gone as far as a service goes
        if rc != 0 or len(words) != 2 or words[0] == "Z" or words[1] != rec.get("start"):
            return None
        return rec["pid"]

    def signal(self, name: str, sig: str, *, group: bool = False) -> bool:
        rec = self._record(name)
        if not rec or self.pid(name) is None:
            return False
        if self._status(rec["where"]) == "paused":
            if sig == "stop":
                return True       # frozen already
            # a paused container takes no exec. A kill is sent from this machine before the thaw (a
            # frozen process acts on it first, so it never runs again); anything else after it
            host = self._host_pid(rec["where"], rec["pid"]) if sig in ("kill", "term") else None
            if host is not None:
                try:
                    # a service leads its process group (see `kill -SIG -pid` below): its host pid is
                    # that group's id here too
                    (os.killpg if group else os.kill)(host, getattr(signal, f"SIG{NUMBERS[sig]}"))
                except ProcessLookupError:
                    host = None
            self.rt.container(rec["where"]).unpause()
            if host is not None:
                return True
        # an exec'd process leads a session and process group of its own (the Engine makes it so),
        # and the service is that process (the shell exec's it): -pid reaches everything it started
        # that did not leave the group (a keeper's workers and the postmaster it runs)
        target = f"-{rec['pid']}" if group else str(rec["pid"])
        # (dash's kill takes no `--`: a negative number after the signal is a process group)
        rc, _ = self._sh(rec["where"], f'kill -{NUMBERS[sig]} "$1"', target)
        return rc == 0

    def _host_pid(self, where: str, pid: int) -> int | None:
        """This machine's pid of a process of the container (None when the daemon is elsewhere)."""
        try:
            rows = self.rt.container(where).top(ps_args="-o pid").get("Processes") or []
        except docker.errors.APIError:
            return None
        for row in rows:
            try:
                status = Path(f"/proc/{int(row[0])}/status").read_text()
            except (OSError, ValueError):
                continue
            ns = next((ln.split()[1:] for ln in status.splitlines() if ln.startswith("NSpid:")), [])
            if ns and ns[-1] == str(pid):     # the innermost namespace's pid is the container's
                return int(row[0])
        return None

    def partition(self, where: str, on: bool) -> None:
        net = self.rt.client.networks.get(self.rt.network)
        c = self.rt.container(where)
        c.reload()
        connected = self.rt.network in (c.attrs.get("NetworkSettings", {}).get("Networks") or {})
        if on and connected:
            net.disconnect(c)
        elif not on and not connected:
            net.connect(c, aliases=[where])
        self.rt._containers.pop(where, None)

    def destroy(self) -> list[str]:
        # the processes go with their containers (removed by the runtime, found by the lab's label)
        out = []
        for name in self.names():
            rec = self._record(name) or {}
            out.append(f"{name} (in {rec.get('container', '?')})")
        return out
