"""Choosing and building a runtime. Only this package knows there are two.

Code outside `lab.runtime` uses what this module exports and the `Runtime` protocol
(`lab.runtime.base`); it never imports a runtime module itself.
"""
from __future__ import annotations

from pathlib import Path

from lab.errors import InvalidInput
from lab.model.topology import Topology
from lab.runtime import procs, sysv
from lab.runtime.base import CommandResult, NodePaths, Runtime, ServerOffer
from lab.runtime.procs import alive as process_alive
from lab.runtime.programs import client_program

KINDS = ("auto", "local", "docker")

__all__ = ["KINDS", "CommandResult", "NodePaths", "Runtime", "ServerOffer", "choose", "client_program",
           "destroy_orphans", "docker_answers", "find_leftovers", "labs_with_docker_resources", "make",
           "process_alive", "remove_docker_resources", "versions"]


def find_leftovers(name: str) -> list[str]:
    """What a lab left behind on this machine (directory, processes, namespaces, containers, networks)."""
    from lab.runtime.leftovers import leftovers  # lazy: it asks Docker, which most callers never need
    return leftovers(name)


def docker_answers() -> bool:
    """True when a Docker daemon answers here (checked quickly, without raising)."""
    try:
        from lab.runtime.dockerapi import daemon_answers  # lazy: the Docker SDK takes ~0.3 s to import
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
        from lab.runtime.local import LocalRuntime  # lazy: only the runtime in use is loaded
        from lab.runtime import servers  # lazy: as above
        server = None
        if not data and topology is not None:
            server = servers.find(topology.pg_version, topology.bindir)
        return LocalRuntime(lab, lab_dir, data, server=server, netns_mode=bool(topology and topology.netns))
    if kind == "docker":
        from lab.runtime.docker import DockerRuntime  # lazy: the Docker SDK is slow to import
        return DockerRuntime(lab, lab_dir, data, topology=topology)
    raise InvalidInput(f"unknown runtime {kind!r}", f"use one of: {', '.join(KINDS[1:])}")


def destroy_orphans(lab: str, lab_dir: Path) -> list[str]:
    """What a lab whose state file is gone left behind, found by its name on every runtime, removed."""
    removed: list[str] = []
    if lab_dir.exists():
        n = procs.kill_matching(str(lab_dir) + "/")
        if n:
            removed.append(f"{n} process(es)")
        for d in lab_dir.iterdir():
            sysv.release(d / "data")   # killed servers' segments would outlive the lab
    return removed + remove_docker_resources(lab)


def labs_with_docker_resources() -> set[str]:
    """Names of labs that have labelled Docker resources (containers, networks, volumes)."""
    if not docker_answers():
        return set()
    from lab.runtime.docker import labs_with_resources  # lazy: the Docker SDK is slow to import
    return labs_with_resources()


def remove_docker_resources(lab: str) -> list[str]:
    if not docker_answers():
        return []
    from lab.runtime.docker import remove_labelled  # lazy: the Docker SDK is slow to import
    return remove_labelled(lab)


def remove_docker_templates() -> list[str]:
    """The Docker runtime's cluster templates (a cache, like the local one), when no container uses them."""
    if not docker_answers():
        return []
    from lab.runtime import docker_templates  # lazy: the Docker SDK is slow to import
    from lab.runtime.dockerapi import client  # lazy: as above
    return docker_templates.remove_unused(client())


def versions() -> list[ServerOffer]:
    """Every PostgreSQL this machine can run, and where it comes from: the embedded server and
    the system's packages (local runtime), and PostgreSQL images (Docker runtime, when a daemon
    answers). The local runtime's default comes first."""
    from lab.runtime import servers  # lazy: runs `postgres --version` per installation
    offers = [ServerOffer(s.version, "local", s.source, s.bindir, default=(i == 0))
              for i, s in enumerate(_default_first(servers.installed(), servers.find))]
    if docker_answers():
        from lab.runtime.images import list_images  # lazy: the Docker SDK is slow to import
        offers += [ServerOffer(i.pg, "docker", "image", i.name) for i in list_images()]
    return offers


def _default_first(found: list, find) -> list:
    if not found:
        return []
    default = find()
    return [default] + [s for s in found if s != default]
