"""Local runtime: PostgreSQL server processes on this machine.

Nodes listen on 127.0.0.1 on free ports. With netns=True (root only) each node
gets its own network namespace with a veth on a lab bridge, as
pg_auto_failover's test harness does, so that a node can be partitioned
(link down) or throttled (tc tbf) on its own.

PostgreSQL refuses to run as root: when the lab runs as root, every server
program runs as the `postgres` system user, and node directories belong to it.
"""
from __future__ import annotations

import hashlib
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Mapping

from lab.model.names import cluster_name
from lab.errors import InvalidInput, NodeFailed, RuntimeUnavailable, Unsupported
from lab.model.state import TRASH_PREFIX, NodeAddr
from lab.model.topology import NodeSpec
from lab.runtime import cache, netns, procs, servers, sysv
from lab.runtime.services import LocalServices
from lab.runtime.base import CommandResult, NodePaths
from lab.runtime.programs import client_program

log = logging.getLogger(__name__)


def templates_key(bindir: str, version: str, recipe: str) -> str:
    """A template is valid for one server build and one recipe (initdb options and what follows)."""
    digest = hashlib.sha256(f"{servers.build_id(bindir)}|{recipe}".encode()).hexdigest()[:12]
    return f"{version or 'pg'}-{digest}"


def _server_user() -> pwd.struct_passwd | None:
    """As root, the servers run as the `postgres` system user (PostgreSQL refuses to run as root).
    A machine without PostgreSQL packages has no such user: create it, as Debian's package would, so
    that `pip install` and `pglab up` are the whole set-up."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    try:
        subprocess.run([useradd, "--system", "--user-group", "--no-create-home", "--home-dir", "/var/lib/postgresql",
                        "--shell", "/usr/sbin/nologin", "--comment", "PostgreSQL servers of pglab", "postgres"],
                       check=True, capture_output=True, text=True, timeout=60)
        log.warning("created the system user `postgres` to run the servers (PostgreSQL refuses to run as root)")
        return pwd.getpwnam("postgres")
    except (OSError, subprocess.SubprocessError, KeyError) as e:
        raise RuntimeUnavailable("running as root but there is no `postgres` system user to run the servers, "
                                 f"and creating one failed ({e})",
                                 "create one (useradd --system postgres) or run pglab as a normal user") from None


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_port(taken: set[int]) -> int:
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in taken and port_free(port):
            return port
    raise RuntimeUnavailable("could not find a free TCP port on 127.0.0.1", "free some ports and retry")


class LocalRuntime:
    kind = "local"

    def __init__(self, lab: str, lab_dir: Path, data: dict | None = None, *,
                 server: servers.Server | None = None, netns_mode: bool = False):
        data = data or {}
        self.lab = lab
        self.dir = Path(lab_dir)
        self.user = _server_user()
        # when the lab was made (down releases the segments of its killed servers made since)
        self.since: float = data.get("since") or time.time()
        if data.get("bindir"):
            self.bindir, self.version = data["bindir"], data.get("version", "")
        else:
            chosen = servers.for_user(server or servers.find(), self.user)
            self.bindir, self.version = chosen.bindir, chosen.version
        self.netns = bool(data.get("netns", netns_mode))
        self.net: dict = data.get("net", {})
        if self.netns and os.geteuid() != 0:
            raise Unsupported("per-node network namespaces need root",
                              "run as root, or drop netns from the topology (partitions and throttling then are unavailable)")

    # ---- setup -------------------------------------------------------------
    def prepare(self, nodes: tuple[NodeSpec, ...], template: str | None = None) -> dict[str, NodeAddr]:
        # `template` unused: a local copy is one cp, started right after this returns
        taken: set[int] = set()
        for n in nodes:
            if n.port:
                if not port_free(n.port):
                    raise InvalidInput(f"port {n.port} (node {n.name}) is in use on 127.0.0.1",
                                       "choose another port in the topology, or leave it out to let the lab pick")
                taken.add(n.port)
        if self.netns:
            self.net = netns.create_lab_network(self.lab)
        addrs = {}
        for n in nodes:
            addrs[n.name] = self.add_node(n, taken)
            taken.add(addrs[n.name].port)
        return addrs

    def add_node(self, node: NodeSpec, taken: set[int] | None = None) -> NodeAddr:
        home = self.dir / node.name
        home.mkdir(mode=0o700, exist_ok=True)
        self._chown(home)
        if self.netns:
            ip = netns.add_node(self.net, self.lab, node.name)
            port = node.port or 5432
            return NodeAddr(ip, port, ip, port)
        port = node.port or pick_port(taken or set())
        return NodeAddr("127.0.0.1", port, "127.0.0.1", port)

    def _chown(self, path: Path) -> None:
        if self.user:
            os.chown(path, self.user.pw_uid, self.user.pw_gid)

    def paths(self, node: str) -> NodePaths:
        h = str(self.dir / node)
        return NodePaths(home=h, data=f"{h}/data", log=f"{h}/server.log", socket_dir=h)

    def listen_address(self, node: str) -> str:
        return netns.node_ip(self.net, node) if self.netns else "127.0.0.1"

    def probe_address(self, node: str, addr: NodeAddr) -> tuple[str, int] | None:
        return addr.host, addr.port    # the server's own socket: 127.0.0.1 or its namespace's address

    def hba_networks(self) -> list[str]:
        return [self.net["subnet"]] if self.netns else ["127.0.0.1/32"]

    def runtime_data(self) -> dict:
        return {"bindir": self.bindir, "version": self.version, "netns": self.netns, "net": self.net,
                "since": self.since}

    # ---- cold clones -------------------------------------------------------
    def data_from_template(self, nodes: list[str], recipe: str, build: Callable[[str], None]) -> bool:
        """Copy the cached template for (this server, recipe) into each node's data directory, all
        at once. On first use, build(nodes[0]) makes it in the first node, and a copy is kept."""
        owner = (self.user.pw_uid, self.user.pw_gid) if self.user else None
        tpl = cache.area("templates", owner) / templates_key(self.bindir, self.version, recipe)
        todo = list(nodes)
        if not tpl.is_dir():
            with cache.locked(tpl.name):
                if not tpl.is_dir():
                    first = todo.pop(0)
                    build(first)
                    staging = cache.staging_path(tpl)
                    self.run(first, ["cp", "-a", "--", self.paths(first).data, str(staging)])
                    cache.publish(staging, tpl)
        if todo:
            with ThreadPoolExecutor(max_workers=len(todo)) as ex:
                list(ex.map(lambda n: self.run(n, ["cp", "-a", "--", str(tpl), self.paths(n).data]), todo))
        return True

    def services(self) -> LocalServices:
        return LocalServices(self)

    # ---- commands and files ------------------------------------------------
    def _program(self, name: str) -> str:
        p = os.path.join(self.bindir, name)
        return p if os.access(p, os.X_OK) else (shutil.which(name) or name)

    def run(self, node: str, argv: list[str], *, env: dict[str, str] | None = None,
            timeout: float = 120, check: bool = True) -> CommandResult:
        home = self.paths(node).home
        full_env = {"PATH": f"{self.bindir}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": home, "LC_ALL": "C.UTF-8",
                    "PGHOST": self.paths(node).socket_dir, **(env or {})}
        cmd = [self._program(argv[0]), *argv[1:]]
        kwargs: dict = {}
        if self.netns:
            # `ip netns exec` needs root, so drop to the server user after entering the namespace
            prefix = ["ip", "netns", "exec", netns.ns_name(self.lab, node)]
            if self.user:
                prefix += ["setpriv", f"--reuid={self.user.pw_uid}", f"--regid={self.user.pw_gid}", "--clear-groups"]
            cmd = prefix + cmd
        elif self.user:
            kwargs = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        try:
            p = subprocess.run(cmd, env=full_env, cwd=home, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, text=True, errors="replace", timeout=timeout, **kwargs)
        except subprocess.TimeoutExpired as e:
            raise NodeFailed(f"{argv[0]} on {node} did not finish within {timeout:.0f}s",
                             details=(e.stdout or "") if isinstance(e.stdout, str) else None) from None
        res = CommandResult(p.returncode, p.stdout)
        if check and p.returncode != 0:
            raise NodeFailed(f"{argv[0]} failed on {node} (exit {p.returncode})", details=p.stdout[-2000:])
        return res

    def write_file(self, node: str, path: str, text: str, mode: int = 0o600) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        self._chown(Path(path))

    def write_files(self, node: str, files: Mapping[str, str], mode: int = 0o600) -> None:
        for path, text in files.items():
            self.write_file(node, path, text, mode)

    def read_file(self, node: str, path: str) -> str | None:
        try:
            return Path(path).read_text(errors="replace")
        except OSError:
            return None

    def remove_path(self, node: str, path: str) -> None:
        p = Path(path)
        if p.is_dir():
            sysv.release(p)   # a data directory (a re-clone): its killed server's segment goes too
            shutil.rmtree(p, ignore_errors=True)
        elif p.exists():
            p.unlink()

    # ---- faults ------------------------------------------------------------
    def _postmaster_pid(self, node: str) -> int | None:
        return _lock_pid(Path(self.paths(node).data) / "postmaster.pid")

    def postmaster_running(self, node: str) -> bool:
        pid = self._postmaster_pid(node)
        return bool(pid and procs.alive(pid))

    def kill(self, node: str) -> None:
        pid = self._postmaster_pid(node)
        if not pid or not procs.alive(pid):
            return
        children = procs.tree(pid)
        os.kill(pid, signal.SIGKILL)
        # A paused (SIGSTOPped) node: its children cannot notice the postmaster's death while
        # frozen and would hold its shared memory forever. Let them run, as after a real crash.
        for c in children[1:]:
            try:
                os.kill(c, signal.SIGCONT)
            except ProcessLookupError:
                pass
        # The children notice the postmaster's death by themselves; wait for them so that
        # "killed" means the port is closed when we return.
        procs.wait_dead(children)
        parent = procs.parent(pid)
        if parent is not None and (parent <= 1 or not procs.alive(parent)):
            # A dead postmaster that nobody has reaped yet (a zombie) still "exists" for
            # kill(pid, 0), and a new postmaster would refuse to start over its postmaster.pid.
            # Every process of the old server is gone, so the lock file is stale: remove it.
            # Not when its parent lives: that is a supervisor (a pg_auto_failover keeper) that
            # reaps it and starts the next server at once, whose lock files these soon are. A
            # server whose postmaster.pid is gone shuts itself down at its next check (once a
            # minute); the keeper then reports PostgreSQL not running and the monitor fails over
            # a primary that had come back.
            self.remove_stale_locks(node, pid)

    def remove_stale_locks(self, node: str, pid: int) -> list[str]:
        """Remove the node's lock files (postmaster.pid, the sockets' .lock) that name `pid`, a
        dead postmaster, and its segment; a newer server's are left alone. Returns what went."""
        p = self.paths(node)
        gone = []
        if self._postmaster_pid(node) == pid:
            sysv.release(p.data)   # the lock file is what finds it later
            self.remove_path(node, f"{p.data}/postmaster.pid")
            gone.append(f"{p.data}/postmaster.pid")
        for lock in Path(p.socket_dir).glob(".s.PGSQL.*.lock"):
            if _lock_pid(lock) == pid:
                lock.unlink(missing_ok=True)
                gone.append(str(lock))
        return gone

    def pause(self, node: str) -> None:
        pid = self._postmaster_pid(node)
        if not pid or not procs.alive(pid):
            raise NodeFailed(f"node {node} is not running", "start it first")
        procs.signal_tree(pid, signal.SIGSTOP)

    def resume(self, node: str) -> None:
        pid = self._postmaster_pid(node)
        if pid:
            procs.signal_tree(pid, signal.SIGCONT)

    def _need_netns(self, what: str) -> None:
        if not self.netns:
            raise Unsupported(f"{what} on the local runtime needs per-node network namespaces",
                              "bring the lab up with --netns (as root), or use --runtime docker")

    def partition(self, node: str) -> None:
        self._need_netns("a partition")
        netns.link(self.net, node, up=False)

    def heal_partition(self, node: str) -> None:
        self._need_netns("a partition")
        netns.link(self.net, node, up=True)

    def isolate(self, node: str) -> None:
        self._need_netns("isolating a node from its peers")
        netns.isolate(self.net, self.lab, node, True)

    def unisolate(self, node: str) -> None:
        self._need_netns("isolating a node from its peers")
        netns.isolate(self.net, self.lab, node, False)

    def reach(self, node: str, other, other_addr: NodeAddr) -> tuple[str, int, list[str]]:
        if self.netns or getattr(other, "netns", False) or other.kind != "local":
            raise Unsupported("connecting two labs needs both on the local runtime without network namespaces "
                              "(or both on Docker)", "bring both labs up the same way")
        return other_addr.host, other_addr.port, []

    def throttle(self, node: str, rate: str) -> None:
        self._need_netns("a bandwidth throttle")
        netns.throttle(self.net, self.lab, node, rate)

    def unthrottle(self, node: str) -> None:
        self._need_netns("a bandwidth throttle")
        netns.unthrottle(self.net, self.lab, node)

    def host_data_dir(self, node: str) -> str | None:
        return self.paths(node).data

    def client_program(self, name: str) -> str | None:
        return client_program(name, self.bindir)

    def delay(self, node: str, latency: str) -> None:
        # the kernel first: without netem, namespaces would not help either
        missing = netns.netem_probe(node)
        if missing:
            raise missing
        self._need_netns("added latency")
        netns.delay(self.net, self.lab, node, latency)

    def undelay(self, node: str) -> None:
        self._need_netns("added latency")
        netns.undelay(self.net, self.lab, node)

    # ---- teardown ----------------------------------------------------------
    def _wait_gone(self, servers_: set[int], node_dirs: list[Path]) -> None:
        """Return once every process of the lab is dead. A SIGKILLed process lingers until the
        kernel has torn it down, and a server may have forked a child (an archive command, a
        backend) after the snapshot was taken: such late ones are killed too. Bounded: a
        process stuck in the kernel is reported by `leftovers`, not waited on for ever."""
        # a loop of its own, not lab.wait: that would import psycopg, and `down` stays light
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            snap = procs.Snapshot()
            left = {p for p in servers_ if snap.alive(p)} | set(snap.matching(str(self.dir) + "/"))
            for d in node_dirs:
                left.update(snap.titled(cluster_name(self.lab, d.name)))
            if not left:
                return
            procs.kill_now(left)
            time.sleep(0.02)

    def destroy(self) -> list[str]:
        # supervisors first: a failover manager's agent would start a killed server again
        removed = self.services().destroy()
        snap = procs.Snapshot()
        node_dirs = sorted(p for p in self.dir.iterdir() if p.is_dir()) if self.dir.exists() else []
        servers_: set[int] = set()
        for d in node_dirs:
            pid = self._postmaster_pid(d.name)
            if pid and snap.alive(pid):
                servers_.update(snap.tree(pid))
                removed.append(f"server {d.name} (pid {pid})")
        # anything else still working in the lab's directory (a clone, a rewind), and server
        # processes whose postmaster is gone (found by their title, which names the lab and node)
        stray = set(snap.matching(str(self.dir) + "/"))
        for d in node_dirs:
            stray.update(snap.titled(cluster_name(self.lab, d.name)))
        stray -= servers_
        # SIGKILL, not a shutdown: the lab's data goes with it, so nothing needs to be flushed
        procs.kill_now(servers_ | stray)
        if stray:
            removed.append(f"{len(stray)} other process(es)")
        self._wait_gone(servers_, node_dirs)
        for d in node_dirs:
            sysv.release(d / "data")   # the killed servers' segments would outlive the lab
        sysv.release_orphans(self.user.pw_uid if self.user else os.getuid(), self.since)
        if self.netns or self.net:
            removed += netns.destroy_lab_network(self.net, self.lab)
        self._discard(node_dirs)
        return removed

    def _discard(self, node_dirs: list[Path]) -> None:
        """Move the node directories out of the lab at once and delete them in the background:
        unlinking a lab's few thousand files takes longer than all the rest of `down`. The trash
        lies beside the labs (a name no lab can have); `pglab prune` removes any left there."""
        if not node_dirs:
            return
        trash = self.dir.parent / f"{TRASH_PREFIX}{self.lab}-{os.getpid()}-{time.monotonic_ns()}"
        try:
            trash.mkdir(mode=0o700)
            for d in node_dirs:
                os.rename(d, trash / d.name)
        except OSError:
            shutil.rmtree(trash, ignore_errors=True)
            return   # the caller removes the lab directory with whatever is still in it
        # a killed server may still be writing its last file: retry once after a moment
        subprocess.Popen(["sh", "-c", 'rm -rf -- "$1" 2>/dev/null || { sleep 1; rm -rf -- "$1"; }', "sh", str(trash)],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)


def _lock_pid(path: Path) -> int | None:
    """The pid on the first line of a PostgreSQL lock file (postmaster.pid, a socket's .lock)."""
    try:
        with open(path) as f:
            return int(f.readline().strip())
    except (OSError, ValueError):
        return None
