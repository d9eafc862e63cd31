"""Per-node network namespaces for the local runtime (root only).

One bridge per lab with a private /24 that the lab picks among unused
10.213.x.0/24 networks; one namespace per node, joined to the bridge by a veth
pair. The namespaces have no default route: nothing in them can reach anything
but the lab's bridge. A partition takes the host side of the node's veth down;
a throttle puts a tbf qdisc on the node's side; a delay a netem qdisc, where the kernel has one.
"""
from __future__ import annotations

import hashlib
import ipaddress
import os
import shutil
import subprocess
from pathlib import Path

from lab.errors import NodeFailed, Unsupported
from lab.runtime import cache
from lab.wait import poll


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and p.returncode != 0:
        raise NodeFailed(f"`ip {' '.join(args)}` failed: {p.stderr.strip()}")
    return p


def _short(lab: str) -> str:
    return hashlib.sha1(lab.encode()).hexdigest()[:6]


def ns_name(lab: str, node: str) -> str:
    return f"pglab-{lab}-{node}"


def _used_subnets() -> set[str]:
    out = _ip("-o", "-4", "addr", "show", check=False).stdout
    nets = set()
    for line in out.splitlines():
        parts = line.split()
        if "inet" in parts:
            nets.add(str(ipaddress.ip_interface(parts[parts.index("inet") + 1]).network))
    return nets


def create_lab_network(lab: str) -> dict:
    bridge = f"plb{_short(lab)}"
    # choosing a free /24 and taking it is one step for every lab on the machine: two labs coming
    # up at once (bench ha --jobs, two shells) otherwise both took the first free one, and the
    # kernel accepts the same gateway address on two bridges, leaving one lab unreachable
    with cache.locked("netns-subnets"):
        used = _used_subnets()
        for x in range(1, 255):
            subnet = f"10.213.{x}.0/24"
            if subnet not in used:
                break
        else:
            raise Unsupported("no free 10.213.x.0/24 network for the lab bridge", "remove some labs with `pglab down`")
        gw = subnet.replace(".0/24", ".1")
        _ip("link", "add", bridge, "type", "bridge")
        _allow_forwarding(lab, bridge, add=True)
        _ip("addr", "add", f"{gw}/24", "dev", bridge)
    _ip("link", "set", bridge, "up")
    return {"bridge": bridge, "subnet": subnet, "gateway": gw, "nodes": {}}


def _iptables_rule(lab: str, bridge: str) -> list[str]:
    return ["FORWARD", "-i", bridge, "-o", bridge, "-m", "comment", "--comment", f"pglab-{lab}", "-j", "ACCEPT"]


def _allow_forwarding(lab: str, bridge: str, add: bool) -> bool:
    """Where Docker runs, br_netfilter sends bridged frames through iptables, whose FORWARD policy
    Docker sets to DROP: traffic between the lab's namespaces would vanish. Accept it on the lab's
    own bridge only, with a rule that names the lab (and goes with `down`)."""
    if not shutil.which("iptables"):
        return False
    p = subprocess.run(["iptables", "-I" if add else "-D", *_iptables_rule(lab, bridge)], capture_output=True, text=True)
    return p.returncode == 0


def forwarding_rules(lab: str) -> list[str]:
    if not shutil.which("iptables"):
        return []
    out = subprocess.run(["iptables", "-S", "FORWARD"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if f'"pglab-{lab}"' in line or f" pglab-{lab} " in line]


def node_ip(net: dict, node: str) -> str:
    return net["nodes"][node]["ip"]


def add_node(net: dict, lab: str, node: str) -> str:
    index = len(net["nodes"]) + 10
    ip = net["subnet"].replace(".0/24", f".{index}")
    ns = ns_name(lab, node)
    host_if = f"plv{_short(lab)}{index}"
    _ip("netns", "add", ns)
    _ip("link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", ns)
    _ip("link", "set", host_if, "master", net["bridge"], "up")
    _ip("-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
    _ip("-n", ns, "link", "set", "eth0", "up")
    _ip("-n", ns, "link", "set", "lo", "up")
    net["nodes"][node] = {"ip": ip, "host_if": host_if, "ns": ns}
    return ip


def link(net: dict, node: str, up: bool) -> None:
    dev = net["nodes"][node]["host_if"]
    _ip("link", "set", dev, "up" if up else "down")
    if up:
        # `ip link set up` returns before the veth has carrier and its bridge port forwards;
        # a connection made in between fails. Wait (briefly) until traffic can flow.
        def forwarding() -> bool:
            oper = Path(f"/sys/class/net/{dev}/operstate").read_text().strip()
            state = Path(f"/sys/class/net/{dev}/brport/state").read_text().strip()
            return oper == "up" and state == "3"   # 3 = BR_STATE_FORWARDING
        poll(forwarding, timeout=3, interval=0.01)


def isolate(net: dict, lab: str, node: str, on: bool) -> None:
    """Blackhole routes in the node's namespace to every other node: peers can no longer talk
    with it, the host (the lab's clients, through the bridge address) still can."""
    ns = ns_name(lab, node)
    if not on:
        _ip("-n", ns, "route", "flush", "type", "blackhole", check=False)
        return
    for other, info in net["nodes"].items():
        if other != node:
            _ip("-n", ns, "route", "replace", "blackhole", f"{info['ip']}/32")


def _tc(prefix: list[str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, "tc", "qdisc", *args], capture_output=True, text=True)


def throttle(net: dict, lab: str, node: str, rate: str) -> None:
    """Limit the node's link both ways: the namespace side shapes what it sends, the host side of
    its veth shapes what it receives (for a standby: the WAL stream). tbf only: this kernel has no
    netem, so no added latency or loss."""
    inside = ["ip", "netns", "exec", ns_name(lab, node)]
    for prefix, dev in ((inside, "eth0"), ([], net["nodes"][node]["host_if"])):
        p = _tc(prefix, "replace", "dev", dev, "root", "tbf", "rate", rate, "burst", "32kbit", "latency", "400ms")
        if p.returncode != 0:
            raise NodeFailed(f"could not throttle {node}: {p.stderr.strip()}",
                             "is tc (iproute2) installed, and is the rate valid (e.g. 1mbit, 512kbit)?")


def unthrottle(net: dict, lab: str, node: str) -> None:
    _tc(["ip", "netns", "exec", ns_name(lab, node)], "del", "dev", "eth0", "root")
    _tc([], "del", "dev", net["nodes"][node]["host_if"], "root")


# what tc says when the kernel has no sch_netem (module absent and not built in)
NETEM_UNKNOWN = ("qdisc kind is unknown", "Unknown qdisc")


def netem_refused(node: str, tc_output: str) -> Unsupported | None:
    """The error for a tc that could not add netem because the kernel lacks it (else None)."""
    if not any(m in tc_output for m in NETEM_UNKNOWN):
        return None
    said = next((ln.strip() for ln in tc_output.splitlines() if any(m in ln for m in NETEM_UNKNOWN)), "")
    return Unsupported(f"cannot add latency to {node}: this kernel has no netem qdisc (tc: {said!r})",
                       f"limit bandwidth instead (`pglab fault throttle {node} --rate 1mbit`), "
                       "or run the lab on a kernel with sch_netem")


def netem_probe(node: str) -> Unsupported | None:
    """Try netem in a scratch namespace (root only): the error saying this kernel has none, or None
    when it has it or this cannot be checked here (not root, no `ip`/`tc`)."""
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("tc"):
        return None
    ns = f"pglab-netem-probe-{os.getpid()}"
    if _ip("netns", "add", ns, check=False).returncode != 0:
        return None
    try:
        _ip("-n", ns, "link", "set", "lo", "up", check=False)
        p = _tc(["ip", "netns", "exec", ns], "add", "dev", "lo", "root", "netem", "delay", "1ms")
        return netem_refused(node, p.stderr + p.stdout) if p.returncode != 0 else None
    finally:
        _ip("netns", "del", ns, check=False)


def delay(net: dict, lab: str, node: str, latency: str) -> None:
    """Everything the node sends waits `latency` (netem on its side of the veth)."""
    p = _tc(["ip", "netns", "exec", ns_name(lab, node)], "replace", "dev", "eth0", "root", "netem", "delay", latency)
    if p.returncode != 0:
        raise netem_refused(node, p.stderr) or NodeFailed(f"could not delay {node}: {p.stderr.strip()}")


def undelay(net: dict, lab: str, node: str) -> None:
    _tc(["ip", "netns", "exec", ns_name(lab, node)], "del", "dev", "eth0", "root")


def destroy_lab_network(net: dict, lab: str) -> list[str]:
    removed = []
    for node, info in net.get("nodes", {}).items():
        if _ip("netns", "del", info["ns"], check=False).returncode == 0:
            removed.append(f"namespace {info['ns']}")
    # namespaces of this lab that the state did not record (an interrupted `up`)
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        ns = line.split()[0] if line.split() else ""
        if ns.startswith(f"pglab-{lab}-") and ns[len(f"pglab-{lab}-"):].find("-") == -1:
            if _ip("netns", "del", ns, check=False).returncode == 0:
                removed.append(f"namespace {ns}")
    bridge = net.get("bridge") or f"plb{_short(lab)}"
    if _ip("link", "del", bridge, check=False).returncode == 0:
        removed.append(f"bridge {bridge}")
    while forwarding_rules(lab) and _allow_forwarding(lab, bridge, add=False):
        removed.append("iptables rule")
    return removed
