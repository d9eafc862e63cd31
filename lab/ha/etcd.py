"""A real etcd cluster for a lab (Debian's etcd-server): members, start, health, leader.

Each member gets a fresh data directory in the lab directory and its own lab host (a namespace of
its own with --netns, else 127.0.0.1 with free ports); the cluster token names the lab and a random
suffix, so two labs never join each other. Health and leadership come from etcd's own HTTP gateway
(POST /v3/maintenance/status), one short request per member.
"""
from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from lab.errors import RuntimeUnavailable
from lab.ha.base import Component
from lab.runtime.base import Services
from lab.wait import wait_until

CLIENT_PORT = 2379
PEER_PORT = 2380


@dataclass(frozen=True)
class EtcdMember:
    name: str
    host: str
    client_port: int
    peer_port: int

    @property
    def service(self) -> str:
        return f"etcd-{self.name}"

    @property
    def client_url(self) -> str:
        return f"http://{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.host}:{self.peer_port}"


def binary() -> str:
    exe = shutil.which("etcd")
    if not exe:
        raise RuntimeUnavailable("etcd is not installed", "install Debian's etcd-server: apt-get install -y etcd-server")
    return exe


def plan(svc: Services, count: int) -> list[EtcdMember]:
    members = []
    for i in range(1, count + 1):
        name = f"e{i}"
        host = svc.host(name)
        members.append(EtcdMember(name, host, svc.port(name, CLIENT_PORT), svc.port(name, PEER_PORT)))
    return members


def to_state(members: list[EtcdMember]) -> list[dict]:
    return [asdict(m) for m in members]


def from_state(rows: list[dict]) -> list[EtcdMember]:
    return [EtcdMember(**r) for r in rows]


def start(svc: Services, members: list[EtcdMember], data_root: str, token: str, log_dir: str) -> None:
    cluster = ",".join(f"{m.name}={m.peer_url}" for m in members)
    exe = svc.program("etcd") or binary()
    for m in members:
        # etcd listens on addresses only; it advertises the member's address (a name on Docker)
        bind = svc.bind_address(m.name)
        svc.start(m.service, [
            exe, "--name", m.name, "--data-dir", f"{data_root}/{m.name}",
            "--listen-client-urls", f"http://{bind}:{m.client_port}", "--advertise-client-urls", m.client_url,
            "--listen-peer-urls", f"http://{bind}:{m.peer_port}", "--initial-advertise-peer-urls", m.peer_url,
            "--initial-cluster", cluster, "--initial-cluster-token", token, "--initial-cluster-state", "new",
            # etcd's defaults (100 ms / 1 s): one machine, no reason to differ
            "--heartbeat-interval", "100", "--election-timeout", "1000", "--logger", "zap",
        ], where=m.name, log=f"{log_dir}/{m.name}.log", env={"ETCD_UNSUPPORTED_ARCH": ""})


def url(svc: Services, m: EtcdMember) -> str | None:
    """The member's client URL as this machine reaches it now (None: cut off)."""
    at = svc.reach(m.name, m.client_port)
    return f"http://{at[0]}:{at[1]}" if at else None


def member_status(svc: Services, m: EtcdMember, timeout: float = 1.0) -> dict | None:
    base = url(svc, m)
    if base is None:
        return None
    req = urllib.request.Request(f"{base}/v3/maintenance/status", data=b"{}", method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def statuses(svc: Services, members: list[EtcdMember]) -> dict[str, dict | None]:
    with ThreadPoolExecutor(max_workers=max(1, len(members))) as ex:
        return dict(zip([m.name for m in members], ex.map(lambda m: member_status(svc, m), members)))


def leader(svc: Services, members: list[EtcdMember]) -> str | None:
    st = statuses(svc, members)
    for name, s in st.items():
        if s and s.get("leader") and s.get("header", {}).get("member_id") == s.get("leader"):
            return name
    return None


def wait_healthy(svc: Services, members: list[EtcdMember], timeout: float = 30, logs=None) -> str:
    """Until every member answers and one is the leader; returns the leader's name."""
    def ready() -> str | None:
        st = statuses(svc, members)
        return leader(svc, members) if all(st.values()) else None
    return wait_until(ready, timeout=timeout, what="the etcd cluster to elect a leader", interval=0.2, logs=logs)


def components(svc: Services, members: list[EtcdMember]) -> list[Component]:
    st = statuses(svc, members)
    out = []
    for m in members:
        s = st[m.name]
        if s is None:
            state = "down" if svc.pid(m.service) is None else "unreachable"
            out.append(Component("etcd", m.name, f"{m.host}:{m.client_port}", state))
            continue
        is_leader = s.get("header", {}).get("member_id") == s.get("leader")
        out.append(Component("etcd", m.name, f"{m.host}:{m.client_port}", "leader" if is_leader else "follower",
                             f"raft term {s.get('raftTerm', '?')}, index {s.get('raftIndex', '?')}"))
    return out
