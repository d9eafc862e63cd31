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
    for m in members:
        svc.start(m.service, [
            binary(), "--name", m.name, "--data-dir", f"{data_root}/{m.name}",
            "--listen-client-urls", m.client_url, "--advertise-client-urls", m.client_url,
            "--listen-peer-urls", m.peer_url, "--initial-advertise-peer-urls", m.peer_url,
            "--initial-cluster", cluster, "--initial-cluster-token", token, "--initial-cluster-state", "new",
            # etcd's defaults (100 ms / 1 s): one machine, no reason to differ
            "--heartbeat-interval", "100", "--election-timeout", "1000", "--logger", "zap",
        ], where=m.name, log=f"{log_dir}/{m.name}.log", env={"ETCD_UNSUPPORTED_ARCH": ""})


def member_status(m: EtcdMember, timeout: float = 1.0) -> dict | None:
    req = urllib.request.Request(f"{m.client_url}/v3/maintenance/status", data=b"{}", method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def statuses(members: list[EtcdMember]) -> dict[str, dict | None]:
    with ThreadPoolExecutor(max_workers=max(1, len(members))) as ex:
        return dict(zip([m.name for m in members], ex.map(member_status, members)))


def leader(members: list[EtcdMember]) -> str | None:
    st = statuses(members)
    for name, s in st.items():
        if s and s.get("leader") and s.get("header", {}).get("member_id") == s.get("leader"):
            return name
    return None


def wait_healthy(members: list[EtcdMember], timeout: float = 30, logs=None) -> str:
    """Until every member answers and one is the leader; returns the leader's name."""
    def ready() -> str | None:
        st = statuses(members)
        return leader(members) if all(st.values()) else None
    return wait_until(ready, timeout=timeout, what="the etcd cluster to elect a leader", interval=0.2, logs=logs)


def components(svc: Services, members: list[EtcdMember]) -> list[Component]:
    st = statuses(members)
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
