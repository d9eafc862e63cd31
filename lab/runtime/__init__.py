"""Choosing and building a runtime. Only this module and the runtime modules know there are two."""
from __future__ import annotations

from pathlib import Path

from lab.errors import InvalidInput
from lab.model.topology import Topology
from lab.runtime.base import CommandResult, NodePaths, Runtime

KINDS = ("auto", "local", "docker")

__all__ = ["KINDS", "CommandResult", "NodePaths", "Runtime", "choose", "find_leftovers", "make"]


def find_leftovers(name: str) -> list[str]:
    """What a lab left behind on this machine (directory, processes, namespaces, containers, networks)."""
    from lab.runtime.leftovers import leftovers  # lazy: it asks Docker, which most callers never need
    return leftovers(name)


def docker_answers() -> bool:
    """True when a Docker daemon answers here (checked quickly, without raising)."""
    try:
        from lab.runtime.docker import daemon_answers
    except ImportError:
        return False
    return daemon_answers()


def choose(kind: str) -> str:
    """Resolve 'auto': Docker when a daemon answers, else local server processes."""
    if kind not in KINDS:
        raise InvalidInput(f"unknown runtime {kind!r}", f"use one of: {', '.join(KINDS)}")
    if kind == "auto":
        return "docker" if docker_answers() else "local"
    return kind


def make(kind: str, lab: str, lab_dir: Path, data: dict | None = None, topology: Topology | None = None) -> Runtime:
    if kind == "local":
        from lab.runtime.local import LocalRuntime, find_bindir
        bindir = None
        if not data and topology is not None:
            bindir = find_bindir(topology.pg_version, topology.bindir)
        return LocalRuntime(lab, lab_dir, data, bindir=bindir, netns_mode=bool(topology and topology.netns))
    if kind == "docker":
        from lab.runtime.docker import DockerRuntime
        return DockerRuntime(lab, lab_dir, data, topology=topology)
    raise InvalidInput(f"unknown runtime {kind!r}", f"use one of: {', '.join(KINDS[1:])}")
