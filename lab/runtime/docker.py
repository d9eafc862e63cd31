"""Docker runtime: one container per node on a user-defined bridge network per lab.

Names: network `pglab-<lab>`, container and volume `pglab-<lab>-<node>`; each carries the labels
pglab.lab=<lab> (and pglab.node=<node>), which is how `down` and `prune` find exactly what is
ours. A node's home (data directory, log, socket, passfile) lives in its named volume, so
stopping or killing the server keeps its data and `down` removes it.

Containers run a sleeper as PID 1 under docker-init (which reaps the postmaster that pg_ctl
leaves behind); initdb, pg_ctl and pg_basebackup run through `exec` as the image's `postgres`
user. Nothing depends on an image's entrypoint, so the official postgres:<major> images and the
lab's own (lab.runtime.images) both work: only PATH and the postgres user are needed.
"""
from __future__ import annotations

import io
import os
import signal
import subprocess
import shutil
import re
import tarfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping

import docker
import docker.errors

from lab.model import state as lab_state
from lab.errors import InvalidInput, NodeFailed, RuntimeUnavailable, Unsupported
from lab.model.state import NodeAddr
from lab.model.topology import NodeSpec, Topology
from lab.runtime.base import CommandResult, NodePaths
from lab.runtime import netns, procs
from lab.runtime.local import pick_port
from lab.runtime.programs import client_program
from lab.runtime.dockerapi import client
from lab.runtime.docker_services import DockerServices
from lab.runtime import docker_templates as templates, images

LABEL = "pglab.lab"
NODE_LABEL = "pglab.node"
HOME_LABEL = "pglab.home"   # the lab home ($PGLAB_HOME) whose state owns the resource
HOME = "/var/lib/postgresql/pglab"
PG_PORT = 5432
#: PID 1's child in every node container; a module constant so a test can make it crash
SLEEPER = ["sleep", "infinity"]
RATE_RE = re.compile(r"^\d+(\.\d+)?(bit|kbit|mbit|gbit|bps|kbps|mbps|gbps)$")

@contextmanager
def _not_interrupted() -> Iterator[None]:
    """Ctrl-C waits until the daemon has answered. A request abandoned half-way still completes in
    the daemon, after the clean-up of the interrupted `up` has looked for what to remove (a
    network was left behind that way). The node containers need no such care: they are made in
    worker threads, which the interrupted main thread waits for before it cleans up."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)   # a Ctrl-C that came meanwhile is raised now


def _filters(name: str) -> dict:
    return {"label": f"{LABEL}={name}"}


def labelled(name: str) -> list[str]:
    """Everything that still carries the label of lab `name` (containers, networks, volumes)."""
    c = client()
    found = [f"container {x.name}" for x in c.containers.list(all=True, filters=_filters(name))]
    found += [f"network {x.name}" for x in c.networks.list(filters=_filters(name))]
    found += [f"volume {x.name}" for x in c.volumes.list(filters=_filters(name))]
    return found


def labs_with_resources() -> set[str]:
    """Names of labs of this lab home ($PGLAB_HOME) that own a container, network or volume here
    (for `pglab prune`). Labs of another home have their state elsewhere: not ours to judge."""
    c = client()
    flt = {"label": [LABEL, f"{HOME_LABEL}={lab_state.home()}"]}
    items = [*c.containers.list(all=True, filters=flt), *c.networks.list(filters=flt), *c.volumes.list(filters=flt)]
    return {(x.attrs.get("Labels") or x.attrs.get("Config", {}).get("Labels") or {}).get(LABEL, "")
            for x in items} - {""}


def remove_labelled(name: str) -> list[str]:
    """Remove every container, volume and network of lab `name` (found by label); idempotent."""
    c = client()

    def rm(kind: str, x, **kw) -> str | None:
        try:
            x.remove(**kw)
            return f"{kind} {x.name}"
        except docker.errors.NotFound:
            return None
        except docker.errors.APIError as e:
            if "already in progress" in str(e):   # a concurrent down/cleanup is removing it
                return None
            raise

    removed: list[str] = []
    # each container, then its volume (named alike), all nodes in parallel: a volume's removal
    # deletes its files (0.2-0.5 s here) and overlaps with the other containers' removal; then
    # any other volume of the lab, then the network. SIGKILL (force): the lab is going away, a
    # clean shutdown buys nothing; v=True: also the anonymous volumes an image declares (the
    # official one has VOLUME /var/lib/postgresql/data)
    containers = c.containers.list(all=True, filters=_filters(name))
    volumes = {v.name: v for v in c.volumes.list(filters=_filters(name))}

    def node(x) -> list[str | None]:
        out = [rm("container", x, force=True, v=True)]
        vol = volumes.pop(x.name, None)
        return out + ([rm("volume", vol, force=True)] if vol is not None else [])
    if containers:
        with ThreadPoolExecutor(max_workers=len(containers)) as ex:
            removed += [r for rs in ex.map(node, containers) for r in rs if r]
    for kind, todo, kw in (("volume", list(volumes.values()), {"force": True}),
                           ("network", c.networks.list(filters=_filters(name)), {})):
        if todo:
            with ThreadPoolExecutor(max_workers=len(todo)) as ex:
                removed += [r for r in ex.map(lambda x: rm(kind, x, **kw), todo) if r]
    return removed


def choose_image(topology: Topology | None) -> str:
    major = (topology.pg_version if topology else None) or images.DEFAULT_MAJOR
    c = client()
    if topology and topology.ha.manager == "patroni":
        return images.ha_image(topology.pg_version)
    if topology and topology.ha.manager in ("repmgr", "pg_auto_failover"):
        # the lab's own image (or the topology's), which must hold the manager: never the official one
        return images.manager_image(topology.ha.manager, major, topology.image)
    if topology and topology.image:
        try:
            c.images.get(topology.image)
            return topology.image
        except docker.errors.ImageNotFound:
            raise RuntimeUnavailable(f"image {topology.image!r} (set in the topology) is not here",
                                     f"pull or build it, or remove `image` from [postgres]; {images.build_hint(major)}") from None
    for name in (images.image_name(major), images.official_name(major)):
        try:
            c.images.get(name)
            return name
        except docker.errors.ImageNotFound:
            continue
    raise RuntimeUnavailable(f"no PostgreSQL {major} image here (looked for {images.image_name(major)} and "
                             f"{images.official_name(major)})", images.build_hint(major))


class DockerRuntime:
    kind = "docker"

    def __init__(self, lab: str, lab_dir: Path, data: dict | None = None, *, topology: Topology | None = None):
        self.lab = lab
        self.dir = Path(lab_dir)
        self.client = client()
        data = data or {}
        self.image: str = data.get("image") or choose_image(topology)
        self.network: str = data.get("network") or f"pglab-{lab}"
        self.subnet: str = data.get("subnet", "")
        self.uid: int | None = data.get("uid")
        self.gid: int | None = data.get("gid")
        self.bindir: str = data.get("bindir") or self._image_bindir()
        self._containers: dict = {}
        self._services = None
        self._host_template: Path | None = None    # see prepare
        self._prefilled: set[str] = set()

    def _image_bindir(self) -> str:
        """The server's programs in the image: the first entry of its PATH (how the lab's images are made)."""
        try:
            env = self.client.images.get(self.image).attrs.get("Config", {}).get("Env") or []
        except docker.errors.DockerException:
            return ""
        path = next((e.split("=", 1)[1] for e in env if e.startswith("PATH=")), "")
        first = path.split(":")[0]
        return first if "postgres" in first else ""

    def sleeper(self) -> list[str]:
        return SLEEPER

    # ---- names -------------------------------------------------------------
    def cname(self, node: str) -> str:
        return f"pglab-{self.lab}-{node}"

    def _labels(self, node: str | None = None) -> dict[str, str]:
        return {LABEL: self.lab, HOME_LABEL: str(lab_state.home()), **({NODE_LABEL: node} if node else {})}

    def container(self, node: str):
        if node not in self._containers:
            try:
                self._containers[node] = self.client.containers.get(self.cname(node))
            except docker.errors.NotFound:
                raise NodeFailed(f"the container of node {node} ({self.cname(node)}) is gone",
                                 f"remove the lab with `pglab down --name {self.lab}` and bring it up again") from None
        return self._containers[node]

    # ---- setup -------------------------------------------------------------
    def _check_names(self, nodes: tuple[NodeSpec, ...]) -> None:
        """A container, volume or network with one of our names but without our label belongs to
        someone else: refuse, and leave it alone (destroy only removes what carries our label)."""
        checks, leftovers = [(self.client.networks, self.network)], False
        for n in nodes:
            checks += [(self.client.containers, self.cname(n.name)), (self.client.volumes, self.cname(n.name))]
        for coll, name in checks:
            try:
                obj = coll.get(name)
            except docker.errors.NotFound:
                continue
            labels = obj.attrs.get("Labels") or obj.attrs.get("Config", {}).get("Labels") or {}
            if labels.get(LABEL) != self.lab:
                what = type(obj).__name__.lower()
                raise InvalidInput(f"a {what} named {name} already exists and does not belong to lab {self.lab}",
                                   f"use another --name, or remove that {what} yourself (pglab leaves it untouched)")
            leftovers = True
        if leftovers:
            # ours by label, from an earlier lab of this name whose state is gone (`up` only gets
            # here when there is no lab directory): remove it, as `pglab prune` would
            remove_labelled(self.lab)

    def prepare(self, nodes: tuple[NodeSpec, ...], template: str | None = None) -> dict[str, NodeAddr]:
        self._check_names(nodes)
        self._host_template = self._template_on_host(template) if template else None
        with _not_interrupted():
            net = self.client.networks.create(self.network, driver="bridge", labels=self._labels(),
                                              check_duplicate=True)
        net.reload()
        self.subnet = net.attrs["IPAM"]["Config"][0]["Subnet"]
        with ThreadPoolExecutor(max_workers=len(nodes)) as ex:
            futures = [ex.submit(self.add_node, n) for n in nodes]
            results = [f.exception() or f.result() for f in futures]
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]
        return {n.name: r for n, r in zip(nodes, results)}

    def _template_on_host(self, recipe: str) -> Path | None:
        """The template's directory as this machine sees it, when we are root and the daemon keeps
        its volumes here: then each node's copy is made on the host while its container is being
        created and started (about as long as the copy), instead of by an exec afterwards."""
        if os.geteuid() != 0:
            return None
        try:
            mount = self.client.volumes.get(templates.VOLUME).attrs.get("Mountpoint") or ""
        except docker.errors.DockerException:
            return None
        key = templates.key(self.client.images.get(self.image).id, recipe)
        tpl = Path(mount) / key / "data"
        # a remote daemon's mountpoint is not this machine's: the template is only found where
        # it really is (a node container wrote it there)
        return tpl if mount and tpl.is_dir() else None

    def _prefill(self, node: str, volume) -> None:
        """Copy the template into the node's new volume from the host, as the node's own copy
        would (cp -a: the template's owner and mode), and give the volume's root to that owner."""
        tpl = self._host_template
        root = Path(volume.attrs.get("Mountpoint") or "")
        if tpl is None or not root.is_dir() or any(root.iterdir()):
            return
        st = tpl.stat()
        subprocess.run(["cp", "-a", "--", str(tpl), str(root / "data")], check=True, capture_output=True, timeout=120)
        os.chown(root, st.st_uid, st.st_gid)
        os.chmod(root, 0o700)
        self.uid, self.gid = st.st_uid, st.st_gid
        self._prefilled.add(node)

    def data_from_template(self, nodes: list[str], recipe: str, build) -> bool:
        """Each node's data directory copied from a template in the templates volume, which every
        node container mounts (lab.runtime.docker_templates); on first use build(nodes[0])
        initialises the first node and a copy of its data becomes the template. Nodes whose
        volume `prepare` filled from the host already have theirs."""
        todo = [n for n in nodes if n not in self._prefilled]
        if not todo:
            return True
        key = templates.key(self.client.images.get(self.image).id, recipe)
        data = self.paths(todo[0]).data
        with templates.locked(key):
            if self._exec(todo[0], ["test", "-d", templates.path(key)]).rc != 0:
                first = todo.pop(0)
                build(first)
                self._exec(first, ["sh", "-c", templates.publish_script(key, data)], user="root", check=True)
        if todo:
            with ThreadPoolExecutor(max_workers=len(todo)) as ex:
                list(ex.map(lambda n: self._exec(n, ["sh", "-c", templates.copy_script(key, data)], check=True), todo))
        return True

    def add_node(self, node: NodeSpec) -> NodeAddr:
        name = self.cname(node.name)
        labels = self._labels(node.name)
        volume = self.client.volumes.create(name, labels=labels)
        # the template's copy runs while the daemon creates and starts the container
        filling = None
        if self._host_template is not None:
            filler = ThreadPoolExecutor(max_workers=1)
            filling = filler.submit(self._prefill, node.name, volume)
            filler.shutdown(wait=False)
        try:
            port, c = self._create_container(node, name, labels)
        finally:
            if filling is not None:
                # wait for the copy either way: none may run on into a volume that a failed `up`
                # is about to remove. One that failed leaves the node out of _prefilled, and
                # data_from_template makes its copy the usual way.
                filling.exception()
        self._containers[node.name] = c
        if node.name in self._prefilled:
            return NodeAddr("127.0.0.1", port, name, PG_PORT)
        # the volume starts out root's: give it to the server user, and learn that user's ids
        out = self._exec(node.name, ["sh", "-c", f"chown postgres:postgres {HOME} && chmod 700 {HOME} && "
                                                 "id -u postgres && id -g postgres"], user="root", check=True)
        ids = out.out.split()
        self.uid, self.gid = int(ids[-2]), int(ids[-1])
        return NodeAddr("127.0.0.1", port, name, PG_PORT)

    def _create_container(self, node: NodeSpec, name: str, labels: dict[str, str]) -> tuple[int, object]:
        # A fixed host port, not one Docker picks: Docker picks a new one whenever the node is
        # reconnected to the network (heal of a partition), and clients would lose it.
        for attempt in range(8):
            port = node.port or pick_port(set())
            try:
                c = self.client.containers.create(
                    self.image, entrypoint=SLEEPER, command=[], name=name, hostname=node.name, labels=labels,
                    init=True, detach=True, network=self.network, environment={"LANG": "C.UTF-8"},
                    volumes={name: {"bind": HOME, "mode": "rw"}, **templates.mount(self.client)},
                    # clients on this machine only: published on the loopback address, never 0.0.0.0
                    ports={f"{PG_PORT}/tcp": ("127.0.0.1", port)},
                    cap_add=["NET_ADMIN"],   # tc, for the throttle fault
                )
            except docker.errors.APIError as e:
                raise NodeFailed(f"could not create the container of node {node.name}: {e.explanation or e}") from None
            try:
                c.start()
                return port, c
            except docker.errors.APIError as e:
                c.remove(force=True)
                taken = "already allocated" in str(e) or "address already in use" in str(e)
                if taken and node.port:
                    raise InvalidInput(f"port {node.port} (node {node.name}) is in use on 127.0.0.1",
                                       "choose another port in the topology, or leave it out to let the lab pick") from None
                if not taken or attempt == 7:
                    raise NodeFailed(f"could not start the container of node {node.name}: {e.explanation or e}") from None
        raise AssertionError("unreachable: the last attempt raises")

    def paths(self, node: str) -> NodePaths:
        return NodePaths(home=HOME, data=f"{HOME}/data", log=f"{HOME}/server.log", socket_dir=HOME)

    def listen_address(self, node: str) -> str:
        return "*"   # inside the container; only the lab network and the published loopback port reach it

    def probe_address(self, node: str, addr: NodeAddr) -> tuple[str, int] | None:
        # the published loopback port goes through docker-proxy, which accepts even when the
        # server is gone: probe the container's own address on the lab network instead
        try:
            c = self.container(node)
            c.reload()
        except (docker.errors.DockerException, NodeFailed):
            return None
        ip = ((c.attrs.get("NetworkSettings", {}).get("Networks") or {}).get(self.network) or {}).get("IPAddress")
        return (ip, addr.peer_port) if ip else None

    def hba_networks(self) -> list[str]:
        # peers come from the lab network; clients on this machine arrive through the published
        # port from the network's gateway, which is inside the same subnet
        return [self.subnet]

    def runtime_data(self) -> dict:
        return {"image": self.image, "network": self.network, "subnet": self.subnet, "uid": self.uid,
                "gid": self.gid, "bindir": self.bindir}

    # ---- commands and files ------------------------------------------------
    def _exited(self, node: str, doing: str) -> NodeFailed:
        c = self.container(node)
        try:
            c.reload()
            st = c.attrs.get("State", {})
            logs = c.logs(tail=20).decode(errors="replace").strip()
        except docker.errors.NotFound:
            return NodeFailed(f"the container of node {node} vanished while {doing}")
        why = f"exit {st.get('ExitCode')}" + (", out of memory" if st.get("OOMKilled") else "")
        return NodeFailed(f"the container of node {node} ({c.name}) is {st.get('Status')} ({why}) while {doing}",
                          "its last log lines are below", details=logs or "(no output)")

    def _exec(self, node: str, argv: list[str], *, user: str = "postgres", env: dict | None = None,
              check: bool = False) -> CommandResult:
        c = self.container(node)
        try:
            rc, out = c.exec_run(argv, user=user, workdir=HOME, environment=env or {})
        except docker.errors.APIError as e:
            if e.status_code == 409 or "is not running" in str(e):
                raise self._exited(node, f"running {argv[0]}") from None
            raise NodeFailed(f"{argv[0]} on {node}: {e.explanation or e}") from None
        res = CommandResult(rc, out.decode(errors="replace") if out else "")
        if check and rc != 0:
            raise NodeFailed(f"{argv[0]} failed on {node} (exit {rc})", details=res.out[-2000:])
        return res

    def run(self, node: str, argv: list[str], *, env: dict[str, str] | None = None,
            timeout: float = 120, check: bool = True) -> CommandResult:
        p = self.paths(node)
        full_env = {"HOME": p.home, "LC_ALL": "C.UTF-8", "PGHOST": p.socket_dir, **(env or {})}
        # coreutils' timeout bounds the command inside the container (exit 124 when it fires)
        res = self._exec(node, ["timeout", str(int(timeout)), *argv], env=full_env)
        if res.rc == 124:
            raise NodeFailed(f"{argv[0]} on {node} did not finish within {timeout:.0f}s", details=res.out[-2000:])
        if check and res.rc != 0:
            raise NodeFailed(f"{argv[0]} failed on {node} (exit {res.rc})", details=res.out[-2000:])
        return res

    def write_file(self, node: str, path: str, text: str, mode: int = 0o600) -> None:
        self.write_files(node, {path: text}, mode)

    def write_files(self, node: str, files: Mapping[str, str], mode: int = 0o600) -> None:
        # through the archive API, not a command line: secrets never show in `docker inspect`/ps;
        # one archive for all, unpacked in their common directory (a request each cost 15-300 ms)
        if not files:
            return
        top = os.path.commonpath([os.path.dirname(p) for p in files])
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for path, text in files.items():
                data = text.encode()
                info = tarfile.TarInfo(os.path.relpath(path, top))
                info.size, info.mode, info.mtime = len(data), mode, int(time.time())
                info.uid, info.gid = self.uid or 0, self.gid or 0
                tar.addfile(info, io.BytesIO(data))
        try:
            ok = self.container(node).put_archive(top, buf.getvalue())
        except docker.errors.NotFound:
            ok = False
        if not ok:
            raise NodeFailed(f"could not write {', '.join(files)} on node {node}", "does its directory exist?")

    def read_file(self, node: str, path: str) -> str | None:
        try:
            stream, _ = self.container(node).get_archive(path)
            raw = b"".join(stream)
        except docker.errors.NotFound:
            return None
        with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
            m = tar.next()
            f = tar.extractfile(m) if m and m.isfile() else None
            return f.read().decode(errors="replace") if f else None

    def _path_exists(self, node: str, path: str) -> bool:
        # HEAD of the archive endpoint stats the path: a few ms, where an exec costs ~60 ms
        api = self.client.api
        r = api.head(api._url("/containers/{0}/archive", self.container(node).id), params={"path": path})
        return r.status_code != 404

    def remove_path(self, node: str, path: str) -> None:
        if self._path_exists(node, path):
            self._exec(node, ["rm", "-rf", "--", path], check=True)

    # ---- faults ------------------------------------------------------------
    _PID = f'pid=$(head -n 1 {HOME}/data/postmaster.pid 2>/dev/null) && [ -n "$pid" ]'

    def _status(self, node: str) -> str:
        c = self.container(node)
        c.reload()
        return c.status

    def postmaster_running(self, node: str) -> bool:
        try:
            return self._exec(node, ["sh", "-c", f'{self._PID} && kill -0 "$pid"']).rc == 0
        except NodeFailed:
            if self._status(node) == "paused":   # frozen, not gone: the lock file tells
                return self.read_file(node, f"{HOME}/data/postmaster.pid") is not None
            return False

    def _server_processes(self, node: str) -> int:
        procs = self.container(node).top(ps_args="-o pid,comm").get("Processes") or []
        return sum(1 for p in procs if p[-1].startswith("postgres") or p[-1].startswith("postmaster"))

    def _host_postmaster(self, node: str) -> tuple[bool, int | None]:
        """(whether the node's processes are visible on this machine, the postmaster's pid here).
        The Engine names the container's first process; it is ours to signal when it runs here,
        in a cgroup named after the container (a remote daemon's pids mean nothing here), and we
        are root. Then a kill costs a look at /proc instead of an exec (50-100 ms, more on a busy
        machine), which a fail-stop failover pays twice: the fault and the fencing."""
        if os.geteuid() != 0:
            return False, None
        c = self.container(node)           # its attrs are fresh: the caller has just asked _status
        init = (c.attrs.get("State") or {}).get("Pid")
        try:
            if not init or c.id not in Path(f"/proc/{init}/cgroup").read_text():
                return False, None
        except OSError:
            return False, None
        data = f" -D {HOME}/data "

        def postmaster(pids: list[int]) -> int | None:
            for pid in pids:
                cmd = procs.cmdline(pid)
                if cmd.split(" ", 1)[0].endswith("postgres") and data in f"{cmd} ":
                    return pid
            return None
        # pg_ctl's postmaster is reparented to the first process; one a supervisor started through
        # `docker exec` (pg_autoctl) is that supervisor's child, outside the first process's tree
        pid = postmaster(procs.descendants(init))
        return True, pid if pid is not None else postmaster(procs.in_pid_namespace_of(init))

    def kill(self, node: str) -> None:
        if self._status(node) == "paused":
            self._kill_frozen(node)
        here, pid = self._host_postmaster(node)
        if here:
            if pid is None:
                return   # not running
            family = procs.descendants(pid)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                return
            procs.wait_dead(family)   # "killed" means the port is closed
            return
        if self._exec(node, ["sh", "-c", f'{self._PID} && kill -KILL "$pid"']).rc != 0:
            return   # not running
        # the children notice the postmaster's death by themselves; "killed" means the port is closed
        deadline = time.monotonic() + 5
        while self._server_processes(node) and time.monotonic() < deadline:
            time.sleep(0.02)

    def _kill_frozen(self, node: str) -> None:
        """Kill the postmaster of a paused (frozen) container: nothing can be exec'd there, so
        signal it from the host (the daemon is local), then thaw. A frozen process acts on a
        pending SIGKILL before anything else, so the old primary never runs again: a fence that
        holds (STONITH), not a race."""
        c = self.container(node)
        try:
            top = c.top(ps_args="-o pid,args")
            for row in top.get("Processes") or []:
                pid, cmd = int(row[0]), row[-1]
                if " -D " in cmd and cmd.split()[0].endswith("postgres"):
                    os.kill(pid, signal.SIGKILL)
        except (docker.errors.APIError, ValueError, ProcessLookupError, PermissionError):
            pass   # not this machine's daemon: the exec below kills it once thawed
        c.unpause()

    def pause(self, node: str) -> None:
        if self._status(node) != "paused":
            self.container(node).pause()

    def resume(self, node: str) -> None:
        if self._status(node) == "paused":
            self.container(node).unpause()

    def _net(self):
        return self.client.networks.get(self.network)

    def partition(self, node: str) -> None:
        try:
            self._net().disconnect(self.container(node))
        except docker.errors.APIError as e:
            if "is not connected" not in str(e):
                raise
        self._containers.pop(node, None)

    def heal_partition(self, node: str) -> None:
        c = self.container(node)
        c.reload()
        if self.network not in (c.attrs.get("NetworkSettings", {}).get("Networks") or {}):
            # the container name resolves again on the lab network; the node name too (alias)
            self._net().connect(c, aliases=[node])

    def reach(self, node: str, other, other_addr: NodeAddr) -> tuple[str, int, list[str]]:
        """Two labs, two networks: the node's container joins the other lab's network and uses the
        other node's name there. Host clients may then arrive through that network's gateway."""
        if not isinstance(other, DockerRuntime):
            raise Unsupported("a Docker node can reach only another Docker lab", "bring both labs up with --runtime docker")
        net = self.client.networks.get(other.network)
        net.reload()
        cname = self.cname(node)
        if cname not in {c.name for c in net.containers}:
            net.connect(cname)
        return other_addr.peer_host, other_addr.peer_port, [other.subnet]

    def isolate(self, node: str) -> None:
        """Blackhole routes inside the container to every other node's address on the lab network;
        the host (clients through the published port, arriving from the gateway) still gets in."""
        if self._exec(node, ["sh", "-c", "command -v ip"], user="root").rc != 0:
            raise Unsupported(f"the image {self.image} has no `ip` (iproute2), so it cannot isolate a node",
                              "use the lab's image (`pglab image build`), which includes it")
        net = self._net()
        net.reload()
        me = self.container(node).id
        for cid, info in (net.attrs.get("Containers") or {}).items():
            ip = (info.get("IPv4Address") or "").split("/")[0]
            if cid != me and ip:
                res = self._exec(node, ["ip", "route", "replace", "blackhole", f"{ip}/32"], user="root")
                if res.rc != 0:
                    raise NodeFailed(f"could not isolate node {node}", details=res.out[-500:])

    def unisolate(self, node: str) -> None:
        self._exec(node, ["ip", "route", "flush", "type", "blackhole"], user="root")

    # the interface of the lab network: eth0 at first, another name after a partition is healed
    _TC = ('dev=$(ip -o -4 route show default | sed -n "s/.* dev \\([^ ]*\\).*/\\1/p" | head -n 1); '
           '[ -n "$dev" ] || exit 3; ')

    def _tc(self, node: str, script: str, *args: str) -> CommandResult:
        if self._exec(node, ["sh", "-c", "command -v tc"], user="root").rc != 0:
            raise Unsupported(f"the image {self.image} has no `tc` (iproute2), so it cannot throttle",
                              "use the lab's image (`pglab image build`), which includes it")
        # the rate travels as $1, not inside the script text
        return self._exec(node, ["sh", "-c", self._TC + script, "sh", *args], user="root")

    def throttle(self, node: str, rate: str) -> None:
        if not RATE_RE.match(rate):
            raise InvalidInput(f"invalid rate {rate!r}", "use tc units, e.g. 512kbit or 1mbit")
        res = self._tc(node, 'tc qdisc replace dev "$dev" root tbf rate "$1" burst 32kbit latency 400ms', rate)
        if res.rc != 0:
            raise NodeFailed(f"tc could not throttle node {node} (exit {res.rc})", details=res.out[-1000:])
        # Inside the container tbf shapes only what the node sends; what it receives (for a
        # standby: the WAL stream) leaves the host side of its veth. Shape that side too.
        host_if = self._host_veth(node)
        if host_if:
            subprocess.run(["tc", "qdisc", "replace", "dev", host_if, "root", "tbf", "rate", rate, "burst", "32kbit",
                            "latency", "400ms"], capture_output=True)

    def unthrottle(self, node: str) -> None:
        self._tc(node, 'tc qdisc del dev "$dev" root 2>/dev/null; true')
        host_if = self._host_veth(node)
        if host_if:
            subprocess.run(["tc", "qdisc", "del", "dev", host_if, "root"], capture_output=True)

    def delay(self, node: str, latency: str) -> None:
        res = self._tc(node, 'tc qdisc replace dev "$dev" root netem delay "$1"', latency)
        if res.rc != 0:
            raise netns.netem_refused(node, res.out) or NodeFailed(
                f"tc could not delay node {node} (exit {res.rc})", details=res.out[-1000:])

    def undelay(self, node: str) -> None:
        self._tc(node, 'tc qdisc del dev "$dev" root 2>/dev/null; true')

    def _host_veth(self, node: str) -> str | None:
        """The host end of the node's lab interface (None when the daemon is not on this machine)."""
        res = self._exec(node, ["sh", "-c", self._TC + 'cat "/sys/class/net/$dev/iflink"'], user="root")
        if res.rc != 0 or not res.out.strip().isdigit() or not shutil.which("tc"):
            return None
        for d in Path("/sys/class/net").iterdir():
            try:
                if (d / "ifindex").read_text().strip() == res.out.strip():
                    return d.name
            except OSError:
                continue
        return None

    # ---- teardown ----------------------------------------------------------
    def host_data_dir(self, node: str) -> str | None:
        return None   # a named volume, reached through the container

    def client_program(self, name: str) -> str | None:
        # the servers' programs live in the image; clients run on this machine
        return client_program(name)

    def services(self) -> DockerServices:
        if self._services is None:
            self._services = DockerServices(self)
        return self._services

    def destroy(self) -> list[str]:
        services = self.services().destroy()
        self._containers.clear()
        return services + remove_labelled(self.lab)
