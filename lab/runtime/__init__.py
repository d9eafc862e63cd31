"""Choosing and building a runtime. Only this module and the runtime modules know there are two."""
from __future__ import annotations

from pathlib import Path

from lab.errors import InvalidInput
from lab.model.topology import Topology
from lab.runtime.base import CommandResult, NodePaths, Runtime, ServerOffer

KINDS = ("auto", "local", "docker")

__all__ = ["KINDS", "CommandResult", "NodePaths", "Runtime", "ServerOffer", "choose", "make", "versions"]


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
        from lab.runtime.local import LocalRuntime  # lazy: docker's SDK and the local runtime load only when used
        from lab.runtime import servers  # lazy: as above
        server = None
        if not data and topology is not None:
            server = servers.find(topology.pg_version, topology.bindir)
        return LocalRuntime(lab, lab_dir, data, server=server, netns_mode=bool(topology and topology.netns))
    if kind == "docker":
        from lab.runtime.docker import DockerRuntime  # lazy: the Docker SDK is slow to import
        return DockerRuntime(lab, lab_dir, data, topology=topology)
    raise InvalidInput(f"unknown runtime {kind!r}", f"use one of: {', '.join(KINDS[1:])}")


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
