"""Scenario files: load, validate (errors name file, line and field), and describe.

A scenario is YAML with four sections:

    # What it demonstrates and what you should see (the first comment is the description).
    topology: {...}            # as a topology file, inline; or a path to one (relative to the scenario)
    runtime: local             # optional: auto, local, docker
    manager: patroni           # optional: the failover manager (none, pglab, patroni, …), or a
                               # mapping like a topology's [ha] section: {manager: patroni, profile: fast}
    steps:                     # run in order; each has one action, an optional name and timeout
      - workload: ledger       # start a background workload (ledger, reader, pgbench)
        id: writes
        clients: 4
      - fault: kill
        node: p1
      - wait: primary is s1
        timeout: 10
    expect:                    # checked at the end against the figures the lab measured
      - lost_writes == 0
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lab.errors import InvalidInput
from lab.model.haspec import ha_from_dict
from lab.model.topology import Topology, check_ha, load_topology, topology_from_dict
from lab.scenario.conditions import Expectation, parse_condition, parse_expectation
from lab.scenario.benchstep import bench_options
from lab.cluster.faults import parse_fault

COMMON_KEYS = {"name", "timeout"}
# action -> (allowed extra keys, required extra keys, what it does)
ACTIONS: dict[str, tuple[set[str], set[str], str]] = {
    "workload": ({"id", "clients", "duration", "node", "mode", "rate", "scale", "policy", "count"}, set(),
                 "start a background workload: ledger, reader or pgbench"),
    "stop": (set(), set(), "stop a workload by id and collect its figures"),
    "check": (set(), set(), "check a workload's ledger against what survives (lost_writes, unexpected, …)"),
    "fault": ({"node", "rate"}, {"node"}, "inject a fault: stop, kill, pause, partition, isolate, throttle"),
    "heal": ({"kind"}, set(), "undo the faults on a node (or only `kind:` one of them; a stopped one is started)"),
    "restart": (set(), set(), "restart a node's server (pg_ctl restart -m fast): its port is closed for a moment"),
    "wait": (set(), set(), "wait until a condition holds: 'primary is s2', 'standby s1 lag_bytes < 1MB'"),
    "sleep": (set(), set(), "sleep this many seconds"),
    "sql": ({"node", "expect", "figure"}, set(),
            "run SQL on a node (default: the primary), optionally checking the result or keeping it as a figure"),
    "promote": (set(), set(), "promote a standby by hand and reconfigure the others"),
    "switchover": (set(), set(), "planned change of leader to a node (or the best standby)"),
    "failover": ({"to", "allow_data_loss", "fence", "force"}, set(),
                 "elect and promote after the primary failed (force: even though it still answers)"),
    "rejoin": (set(), set(), "bring an old primary back as a standby (pg_rewind, else re-clone)"),
    "reclone": (set(), set(), "rebuild a standby from the primary"),
    "set_sync": (set(), set(), "change synchronous_standby_names live"),
    "monitor": ({"interval", "timeout", "fence", "fast_path", "confirm"}, set(),
                "start or stop the automatic failover monitor (fast_path: false for the timeout only)"),
    "mark": (set(), set(), "put an event on the timeline"),
    "chaos": ({"seed", "faults", "mode", "timeout", "fast_path"}, set(),
              "a seeded fault soak of this many seconds under its own monitor (pglab chaos); figures chaos_*"),
    "drill": ({"node", "fault", "outage", "remedy", "clients", "other"}, set(),
              "a built-in follower drill: catchup, noslot or sync_failure (its figures become results)"),
    "parallel": (set(), set(), "run a list of steps at the same time"),
    # lessons (pglab learn): narration, questions, and the reads/methods drills on the lesson's lab
    "say": ({"pause"}, set(), "narrate what is about to happen and what to watch ({figure} = a measured value)"),
    "ask": ({"answer", "tolerance", "explain"}, {"answer"},
            "ask a question whose answer is a measured figure; the learner's answer is checked against it"),
    "consistency": ({"follower", "delay"}, set(),
                    "a reading-from-followers drill on this lab: read-after-write, monotonic or prefix"),
    "methods": ({"seconds"}, set(), "statement vs WAL vs logical shipping, measured (brings its own labs)"),
    "measure": (set(), set(), "read the lab's status now: figures primaries, primary, timeline"),
    "bench": ({"managers", "profiles", "faults", "modes", "repeat", "runtime"}, set(),
              "bench: ha, the failover managers side by side on labs of their own (pglab bench ha); "
              "figures bench.<manager_profile>.<fault>.<mode>.rto_median_s, lost, … and bench.floor_s"),
}


@dataclass(frozen=True)
class Step:
    action: str
    arg: Any
    options: dict[str, Any]
    name: str
    timeout: float | None
    line: int
    children: tuple["Step", ...] = ()

    def describe(self) -> str:
        opts = " ".join(f"{k}={v}" for k, v in self.options.items())
        arg = "" if self.arg in (None, {}, "") else f" {self.arg}"
        if self.action == "parallel":
            return "parallel: " + " | ".join(c.describe() for c in self.children)
        return f"{self.action}{arg}" + (f" ({opts})" if opts else "")


@dataclass(frozen=True)
class Scenario:
    path: str
    name: str
    description: str
    topology: Topology
    runtime: str | None
    steps: tuple[Step, ...]
    expect: tuple[Expectation, ...]
    meta: dict[str, Any] = field(default_factory=dict)


class _LineLoader(yaml.SafeLoader):
    """Remembers the line of every mapping, so errors can say where."""

    def construct_mapping(self, node, deep=False):  # type: ignore[override]
        mapping = super().construct_mapping(node, deep=deep)
        mapping["__line__"] = node.start_mark.line + 1
        return mapping


def _strip(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k != "__line__"}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _description(text: str) -> str:
    lines = []
    for line in text.splitlines():
        if line.startswith("#"):
            lines.append(line.lstrip("#").strip())
        elif line.strip():
            break
    return " ".join(x for x in lines if x)


def load_scenario(path: str | Path) -> Scenario:
    p = Path(path)
    if not p.is_file():
        raise InvalidInput(f"scenario file {p} does not exist", "give the path of a .yaml scenario")
    text = p.read_text()
    try:
        data = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise InvalidInput(f"{p}:{mark.line + 1 if mark else '?'}: malformed YAML: {getattr(e, 'problem', e)}",
                           "fix the syntax at that line") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{p}: a scenario is a mapping", "with sections topology, runtime, steps, expect")
    allowed = {"topology", "runtime", "manager", "steps", "expect", "name", "description", "__line__"}
    for k in data:
        if k not in allowed:
            raise InvalidInput(f"{p}: unknown section {k!r}",
                               "allowed: topology, runtime, manager, steps, expect, name, description")
    topo = data.get("topology")
    if isinstance(topo, str):
        topology = load_topology(p.parent / topo)
    elif isinstance(topo, dict):
        topology = topology_from_dict(_strip(topo), source=f"{p}:{topo['__line__']} (topology)")
    else:
        raise InvalidInput(f"{p}: no topology", "add `topology:` with nodes, or a path to a topology file")
    if data.get("manager") is not None:
        topology = _with_manager(p, topology, data["manager"])
    runtime = data.get("runtime")
    if runtime is not None and runtime not in ("auto", "local", "docker"):
        raise InvalidInput(f"{p}: runtime {runtime!r} is not allowed", "use auto, local or docker")
    nodes = topology.node_names
    raw_steps = data.get("steps") or []
    if not isinstance(raw_steps, list) or not raw_steps:
        raise InvalidInput(f"{p}: `steps` must be a non-empty list", "each step is a mapping with one action")
    steps = tuple(_step(p, s, nodes, i + 1) for i, s in enumerate(raw_steps))
    raw_expect = data.get("expect") or []
    if not isinstance(raw_expect, list):
        raise InvalidInput(f"{p}: `expect` must be a list", "e.g. - lost_writes == 0")
    expect = []
    for e in raw_expect:
        try:
            expect.append(parse_expectation(str(e)))
        except InvalidInput as err:
            raise InvalidInput(f"{p}: expect: {err.message}", err.hint) from None
    return Scenario(str(p), str(data.get("name") or p.stem), str(data.get("description") or _description(text)),
                    topology, runtime, steps, tuple(expect))


def _with_manager(p: Path, topology: Topology, manager: Any) -> Topology:
    """`manager: patroni`, or a mapping like the topology's [ha] section (`manager: {manager:
    patroni, profile: fast}`): the same scenario drilled against another failover manager."""
    if isinstance(manager, str):
        manager = {"manager": manager}
    elif isinstance(manager, dict):
        manager = _strip(manager)
    else:
        raise InvalidInput(f"{p}: `manager` is a name or a mapping",
                           "e.g. manager: patroni, or manager: {manager: patroni, profile: fast}")
    if topology.ha.manager != "none":
        raise InvalidInput(f"{p}: both `manager` and the topology's [ha] name a failover manager",
                           "keep one of them")
    source = f"{p} (manager)"
    spec = check_ha(ha_from_dict(manager, source), [s.name for s in topology.standbys], source)
    return topology.with_changes(ha=spec)


def _step(p: Path, raw: Any, nodes: list[str], index: int) -> Step:
    if not isinstance(raw, dict):
        raise InvalidInput(f"{p}: step {index} must be a mapping", f"start it with one action: {', '.join(ACTIONS)}")
    line = raw.get("__line__", 0)
    where = f"{p}:{line}: step {index}"
    actions = [k for k in raw if k in ACTIONS]
    if len(actions) != 1:
        unknown = [k for k in raw if k not in ACTIONS and k not in COMMON_KEYS and k != "__line__"]
        what = f"unknown action {unknown[0]!r}" if unknown and not actions else f"{len(actions)} actions"
        raise InvalidInput(f"{where}: {what}", f"a step has exactly one of: {', '.join(ACTIONS)}")
    action = actions[0]
    extra, required, _ = ACTIONS[action]
    for k in raw:
        if k not in extra and k not in COMMON_KEYS and k != action and k != "__line__":
            raise InvalidInput(f"{where}: unknown field {k!r} for {action}",
                               f"allowed: {', '.join(sorted(extra | COMMON_KEYS)) or 'name, timeout'}")
    for k in required:
        if k not in raw:
            raise InvalidInput(f"{where}: {action} needs {k!r}", f"e.g. {action}: ... with {k}: ...")
    arg = _strip(raw[action])
    options = {k: _strip(v) for k, v in raw.items() if k in extra}
    timeout = raw.get("timeout")
    if timeout is not None and not isinstance(timeout, (int, float)):
        raise InvalidInput(f"{where}: timeout must be a number of seconds", "e.g. timeout: 10")
    node = options.get("node")
    if node is not None and node not in nodes:
        raise InvalidInput(f"{where}: node {node!r} is not in the topology", f"nodes are: {', '.join(nodes)}")
    children: tuple[Step, ...] = ()
    if action == "wait":
        try:
            parse_condition(str(arg), nodes)
        except InvalidInput as err:
            raise InvalidInput(f"{where}: {err.message}", err.hint) from None
    elif action == "fault":
        try:
            parse_fault(str(arg))
        except InvalidInput as err:
            raise InvalidInput(f"{where}: {err.message}", err.hint) from None
    elif action in ("promote", "rejoin", "reclone", "heal") and arg not in nodes:
        raise InvalidInput(f"{where}: {action} names {arg!r}, which is not a node", f"nodes are: {', '.join(nodes)}")
    elif action == "workload" and arg not in ("ledger", "reader", "pgbench"):
        raise InvalidInput(f"{where}: workload {arg!r} is not known", "use ledger, reader or pgbench")
    elif action == "drill" and arg not in ("catchup", "noslot", "sync_failure"):
        raise InvalidInput(f"{where}: drill {arg!r} is not known", "use catchup, noslot or sync_failure")
    elif action == "bench":
        if arg != "ha":
            raise InvalidInput(f"{where}: bench {arg!r} is not known", "use bench: ha")
        try:
            bench_options(options)
        except InvalidInput as err:
            raise InvalidInput(f"{where}: {err.message}", err.hint) from None
    elif action == "monitor" and arg not in ("start", "stop"):
        raise InvalidInput(f"{where}: monitor {arg!r}", "use monitor: start or monitor: stop")
    elif action in ("say", "ask") and not isinstance(arg, str):
        raise InvalidInput(f"{where}: {action} takes text", f"e.g. {action}: \"What do you expect?\"")
    elif action == "consistency" and arg not in ("read-after-write", "monotonic", "prefix"):
        raise InvalidInput(f"{where}: consistency drill {arg!r} is not known", "use read-after-write, monotonic or prefix")
    elif action == "sleep" and not isinstance(arg, (int, float)):
        raise InvalidInput(f"{where}: sleep takes seconds", "e.g. sleep: 1.5")
    elif action == "parallel":
        if not isinstance(raw[action], list) or not raw[action]:
            raise InvalidInput(f"{where}: parallel takes a list of steps", "e.g. parallel: [{sleep: 1}, {fault: kill, node: s1}]")
        children = tuple(_step(p, c, nodes, index) for c in raw[action])
        arg = None
    name = str(raw.get("name") or f"{index}. {action}")
    return Step(action, arg, options, name, float(timeout) if timeout is not None else None, line, children)
