"""HAProxy in front of a Patroni lab, as production runs it (Debian's haproxy).

Two TCP listeners on 127.0.0.1: read-write, whose health check is Patroni's `GET /primary` (200
only on the leader), and read-only, checked with `GET /replica`. Checks every second, a server is
down after 2 failed checks and its sessions are cut (`on-marked-down shutdown-sessions`), so
clients of a dead primary reconnect to the new one. A stats socket in the lab directory tells the
lab which servers HAProxy holds up.
"""
from __future__ import annotations

import ipaddress
import os
import shutil
import socket

from lab.errors import RuntimeUnavailable
from lab.ha.base import Component

SERVICE = "haproxy"


def binary() -> str:
    exe = shutil.which("haproxy") or ("/usr/sbin/haproxy" if os.access("/usr/sbin/haproxy", os.X_OK) else None)
    if not exe:
        raise RuntimeUnavailable("haproxy is not installed", "install Debian's haproxy: apt-get install -y haproxy")
    return exe


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def render(*, rw_port: int, ro_port: int, servers: list[tuple[str, str, int, str, int]], stats_socket: str,
           bind: str = "127.0.0.1", where: str | None = None) -> str:
    """servers: (name, pg host, pg port, REST host, REST port); `bind`: the address it listens on
    (where: the lab host it runs on, None for this machine). Servers given by name (containers on a
    Docker network) are resolved through the network's DNS again and again, not once at start:
    a node's address changes when a partition of it is healed."""
    by_name = any(not _is_ip(h) for _, h, _, rh, _ in servers for h in (h, rh))
    dns = " resolvers lab init-addr last,libc,none" if by_name else ""

    def backend(title: str, port: int, check: str) -> list[str]:
        lines = [f"listen {title}", f"    bind {bind}:{port}", "    option httpchk",
                 f"    http-check send meth GET uri {check}", "    http-check expect status 200",
                 f"    default-server inter 1s fall 2 rise 1 on-marked-down shutdown-sessions{dns}"]
        for name, host, pport, rhost, rport in servers:
            addr = "" if rhost == host else f" addr {rhost}"
            lines.append(f"    server {name} {host}:{pport} check port {rport}{addr}")
        return lines

    out = ["# Written by pglab for this lab.", "global", "    maxconn 200",
           f"    stats socket {stats_socket} mode 600 level admin", "defaults", "    mode tcp", "    log global",
           "    timeout connect 2s", "    timeout client 30m", "    timeout server 30m", "    timeout check 1s", ""]
    if by_name:
        out += ["resolvers lab", "    parse-resolv-conf", "    hold valid 1s", "    timeout resolve 1s",
                "    timeout retry 1s", ""]
    out += backend("primary", rw_port, "/primary") + [""] + backend("replicas", ro_port, "/replica")
    return "\n".join(out) + "\n"


def show_stat(stats_socket: str, timeout: float = 1.0) -> list[dict[str, str]]:
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(timeout)
            s.connect(stats_socket)
            s.sendall(b"show stat\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    except OSError:
        return []
    lines = data.decode(errors="replace").splitlines()
    if not lines or not lines[0].startswith("#"):
        return []
    head = lines[0].lstrip("# ").split(",")
    return [dict(zip(head, ln.split(","))) for ln in lines[1:] if ln]


def up_servers(stats_socket: str, listener: str) -> list[str]:
    return [r["svname"] for r in show_stat(stats_socket)
            if r.get("pxname") == listener and r.get("svname") not in ("FRONTEND", "BACKEND")
            and r.get("status", "").startswith("UP")]


def components(running: bool, rw_port: int, ro_port: int, stats_socket: str) -> list[Component]:
    if not running:
        return [Component("haproxy", "primary", f"127.0.0.1:{rw_port}", "down"),
                Component("haproxy", "replicas", f"127.0.0.1:{ro_port}", "down")]
    rw, ro = up_servers(stats_socket, "primary"), up_servers(stats_socket, "replicas")
    return [Component("haproxy", "primary", f"127.0.0.1:{rw_port}", "up", f"routes to {', '.join(rw) or 'nothing'}"),
            Component("haproxy", "replicas", f"127.0.0.1:{ro_port}", "up", f"routes to {', '.join(ro) or 'nothing'}")]
