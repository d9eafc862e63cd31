"""Topology: which nodes a lab has and how they replicate, as frozen values.

A topology comes from the defaults (a primary, one synchronous and one
asynchronous standby), from `pglab up` options, or from a TOML/YAML file:

    [postgres]
    version = 18                      # major: 18 (embedded), or 15/17 (system packages, Docker images);
                                      # or bindir = "/usr/lib/postgresql/15/bin"

    [replication]
    synchronous_standby_names = "FIRST 1 (s1)"
    synchronous_commit = "on"
    hot_standby_feedback = false

    [settings]                        # any PostgreSQL parameter, checked against the server
    wal_keep_size = "64MB"

    [ha]                              # the failover manager (lab.model.haspec): none, pglab, patroni,
                                      # pg_auto_failover, repmgr
    manager = "none"

    [[nodes]]                         # without any [[nodes]]: p1, s1 (sync), s2 (async)
    name = "p1"
    role = "primary"

    [[nodes]]
    name = "s1"                       # role defaults to "standby"
    priority = 100                    # election tie-break: higher wins
    apply_delay = "0"                 # recovery_min_apply_delay
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any


from lab.errors import InvalidInput, one_of
from lab.model.haspec import HASpec, ha_from_dict
from lab.model.names import check_name
from lab.model.syncspec import SyncSpec, parse_sync

SYNC_COMMIT_LEVELS = ("off", "local", "remote_write", "on", "remote_apply")
WAL_LEVELS = ("replica", "logical")
# Settings the lab owns: a topology may not override them, since the lab's own
# logic (addresses, clones, rewind) depends on them.
RESERVED_SETTINGS = frozenset({
    "port", "listen_addresses", "unix_socket_directories", "hot_standby",
    "wal_log_hints", "primary_conninfo", "primary_slot_name", "cluster_name",
    "synchronous_standby_names", "synchronous_commit", "hot_standby_feedback", "wal_level",
})


#: the PostgreSQL major a lab runs when neither the topology nor --pg names one, on both runtimes
#: (the local runtime's embedded server, and the Docker image built from the same files)
DEFAULT_PG = 18

@dataclass(frozen=True)
class NodeSpec:
    name: str
    priority: int = 100
    apply_delay: str | None = None
    port: int | None = None


@dataclass(frozen=True)
class Topology:
    primary: NodeSpec
    standbys: tuple[NodeSpec, ...]
    sync: SyncSpec
    synchronous_commit: str = "on"
    hot_standby_feedback: bool = False
    wal_level: str = "replica"
    pg_version: int | None = None
    bindir: str | None = None
    image: str | None = None
    netns: bool = False
    settings: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    source: str | None = None
    ha: HASpec = field(default_factory=HASpec)

    @property
    def nodes(self) -> tuple[NodeSpec, ...]:
        return (self.primary, *self.standbys)

    @property
    def node_names(self) -> list[str]:
        return [n.name for n in self.nodes]

    def node(self, name: str) -> NodeSpec:
        for n in self.nodes:
            if n.name == name:
                return n
        raise InvalidInput(f"no node {name!r} in this lab", f"nodes are: {', '.join(self.node_names)}")

    def with_changes(self, **kw: Any) -> "Topology":
        return replace(self, **kw)

    def to_dict(self) -> dict[str, Any]:
        nodes = [{"name": self.primary.name, "role": "primary", **_node_extra(self.primary)}]
        nodes += [{"name": s.name, **_node_extra(s)} for s in self.standbys]
        pg: dict[str, Any] = {}
        for key in ("pg_version", "bindir", "image"):
            if getattr(self, key) is not None:
                pg["version" if key == "pg_version" else key] = getattr(self, key)
        d: dict[str, Any] = {
            "postgres": pg,
            "replication": {
                "synchronous_standby_names": self.sync.render() or "none",
                "synchronous_commit": self.synchronous_commit,
                "hot_standby_feedback": self.hot_standby_feedback,
                "wal_level": self.wal_level,
            },
            "settings": dict(self.settings),
            "nodes": nodes,
        }
        if self.netns:
            d["network"] = {"netns": True}
        if self.ha.manager != "none":
            d["ha"] = self.ha.to_dict()
        return d


def _node_extra(n: NodeSpec) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if n.priority != 100:
        out["priority"] = n.priority
    if n.apply_delay:
        out["apply_delay"] = n.apply_delay
    if n.port:
        out["port"] = n.port
    return out


def default_topology(standbys: int = 2, sync: str | None = None) -> Topology:
    """p1 primary; s1..sN standbys; by default s1 synchronous (FIRST 1 (s1)), the rest async."""
    if standbys < 0 or standbys > 9:
        raise InvalidInput(f"--standbys {standbys} is out of range", "use 0 to 9 standbys")
    names = [f"s{i}" for i in range(1, standbys + 1)]
    if sync is None:
        sync = f"FIRST 1 ({names[0]})" if names else "none"
    return Topology(
        primary=NodeSpec("p1"),
        standbys=tuple(NodeSpec(n) for n in names),
        sync=parse_sync(sync, names),
    )


_TOP_KEYS = {"postgres", "replication", "settings", "nodes", "network", "name", "description", "ha"}
_PG_KEYS = {"version", "bindir", "image"}
_REPL_KEYS = {"synchronous_standby_names", "synchronous_commit", "hot_standby_feedback", "wal_level"}
_NODE_KEYS = {"name", "role", "priority", "apply_delay", "port"}


def load_topology(path: str | Path) -> Topology:
    """Read a topology file (.toml, .yaml/.yml); errors name the file and the line or field."""
    p = Path(path)
    if not p.is_file():
        raise InvalidInput(f"topology file {p} does not exist", "give the path of a .toml or .yaml file")
    text = p.read_text()
    if p.suffix not in (".yaml", ".yml"):
        try:
            return topology_from_dict(tomllib.loads(text), source=str(p))
        except tomllib.TOMLDecodeError as e:
            raise InvalidInput(f"{p}: malformed TOML: {e}", "fix the syntax at that line") from None
    import yaml  # lazy: 13 ms of every command's start-up, and only YAML topology files need it
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "unknown line"
        raise InvalidInput(f"{p}: malformed YAML at {where}: {getattr(e, 'problem', e)}", "fix the syntax at that line") from None
    return topology_from_dict(data, source=str(p))


def _check_keys(d: Any, allowed: set[str], where: str, source: str) -> dict:
    if not isinstance(d, dict):
        raise InvalidInput(f"{source}: {where} must be a table/mapping", f"allowed keys: {', '.join(sorted(allowed))}")
    unknown = set(d) - allowed
    if unknown:
        raise InvalidInput(
            f"{source}: unknown key {sorted(unknown)[0]!r} in {where}",
            f"allowed keys: {', '.join(sorted(allowed))}",
        )
    return d


def topology_from_dict(data: dict, source: str = "topology") -> Topology:
    _check_keys(data, _TOP_KEYS, "the top level", source)
    pg = _check_keys(data.get("postgres", {}), _PG_KEYS, "[postgres]", source)
    repl = _check_keys(data.get("replication", {}), _REPL_KEYS, "[replication]", source)
    net = _check_keys(data.get("network", {}), {"netns"}, "[network]", source)
    settings = data.get("settings", {}) or {}
    if not isinstance(settings, dict):
        raise InvalidInput(f"{source}: [settings] must be a table of parameter = value", "e.g. wal_keep_size = \"64MB\"")
    raw_nodes = data.get("nodes")
    default_shape = raw_nodes is None
    if default_shape:
        # a file that only picks a version or settings gets the default shape: p1, s1 sync, s2 async
        raw_nodes = [{"name": "p1", "role": "primary"}, {"name": "s1"}, {"name": "s2"}]
    if not raw_nodes or not isinstance(raw_nodes, list):
        raise InvalidInput(f"{source}: no [[nodes]]", "list at least one node; the first (or role = \"primary\") is the primary")
    nodes: list[tuple[NodeSpec, str]] = []
    for i, rn in enumerate(raw_nodes):
        rn = _check_keys(rn, _NODE_KEYS, f"node #{i + 1}", source)
        name = check_name(str(rn.get("name", "")), f"node name in {source} (node #{i + 1})")
        role = rn.get("role", "standby")
        if role not in ("primary", "standby"):
            raise InvalidInput(f"{source}: node {name}: role {role!r} is not allowed", "use \"primary\" or \"standby\"")
        try:
            spec = NodeSpec(name, int(rn.get("priority", 100)),
                            str(rn["apply_delay"]) if rn.get("apply_delay") else None,
                            int(rn["port"]) if rn.get("port") else None)
        except (TypeError, ValueError):
            raise InvalidInput(f"{source}: node {name}: priority and port must be integers", "e.g. priority = 100") from None
        nodes.append((spec, role))
    names = [n.name for n, _ in nodes]
    if len(set(names)) != len(names):
        raise InvalidInput(f"{source}: node names repeat", "give every node its own name")
    primaries = [n for n, r in nodes if r == "primary"]
    if len(primaries) > 1:
        raise InvalidInput(f"{source}: {len(primaries)} nodes have role = \"primary\"", "a lab has exactly one primary")
    primary = primaries[0] if primaries else nodes[0][0]
    standbys = tuple(n for n, _ in nodes if n is not primary)
    sc = one_of(str(repl.get("synchronous_commit", "on")), SYNC_COMMIT_LEVELS, f"{source}: synchronous_commit is not one of the levels:")
    wl = one_of(str(repl.get("wal_level", "replica")), WAL_LEVELS, f"{source}: wal_level is not one of the levels:")
    reserved = sorted(set(settings) & RESERVED_SETTINGS)
    if reserved:
        raise InvalidInput(f"{source}: [settings] sets {reserved[0]}, which the lab manages",
                           "use [replication] for replication settings; addresses and ports are chosen by the lab")
    version = pg.get("version")
    if version is not None and (isinstance(version, bool) or not str(version).isdigit()):
        raise InvalidInput(f"{source}: [postgres] version = {version!r} is not a major version",
                           "give the major as a number, e.g. version = 18 (see `pglab versions`)")
    return Topology(
        primary=primary,
        standbys=standbys,
        sync=parse_sync(repl.get("synchronous_standby_names", "FIRST 1 (s1)" if default_shape else "none"),
                        [s.name for s in standbys]),
        synchronous_commit=sc,
        hot_standby_feedback=bool(repl.get("hot_standby_feedback", False)),
        wal_level=wl,
        pg_version=int(version) if version is not None else None,
        bindir=pg.get("bindir"),
        image=pg.get("image"),
        netns=bool(net.get("netns", False)),
        settings=tuple((str(k), _setting_value(v)) for k, v in settings.items()),
        source=source,
        ha=check_ha(ha_from_dict(data.get("ha"), source), [s.name for s in standbys], source),
    )


def check_ha(ha: HASpec, standbys: list[str], source: str) -> HASpec:
    for n in ha.nosync or ():
        if n not in standbys:
            raise InvalidInput(f"{source}: [ha] nosync names {n!r}, which is not a standby", f"standbys are: {', '.join(standbys)}")
    return ha


def _setting_value(v: Any) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    return str(v)
