"""The Docker daemon's client, in one place: "no daemon" and "permission denied" become one clear line."""
from __future__ import annotations

import os

import docker

from lab.errors import RuntimeUnavailable

_clients: dict[str, docker.DockerClient] = {}
_answers: dict[str, bool] = {}


def _unavailable(e: BaseException) -> RuntimeUnavailable:
    where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    text = str(e)
    if isinstance(e, PermissionError) or "Permission denied" in text or "PermissionError" in text:
        return RuntimeUnavailable(f"permission denied on the Docker socket ({where})",
                                  "run as root, add your user to the `docker` group (then log in again), "
                                  "or use --runtime local")
    return RuntimeUnavailable(f"no Docker daemon answers at {where}",
                              "start it (as root: `setsid dockerd >/var/log/dockerd.log 2>&1 &`, or "
                              "`systemctl start docker`), or use --runtime local")


def client() -> docker.DockerClient:
    """A client of the daemon ($DOCKER_HOST or the default socket), or RuntimeUnavailable."""
    key = os.environ.get("DOCKER_HOST", "")
    if key not in _clients:
        try:
            # long timeout: an exec's HTTP call lasts as long as its command (pg_basebackup);
            # commands are bounded by `timeout` inside the container instead
            c = docker.from_env(version="auto", timeout=900)
        except docker.errors.DockerException as e:
            raise _unavailable(e) from None
        _clients[key] = c
    return _clients[key]


def daemon_answers() -> bool:
    """A quick ping with a short timeout; never raises. Cached per process and DOCKER_HOST."""
    key = os.environ.get("DOCKER_HOST", "")
    if key not in _answers:
        try:
            docker.from_env(version="auto", timeout=3).ping()
            _answers[key] = True
        except Exception:  # noqa: BLE001 - any failure means "no"
            _answers[key] = False
    return _answers[key]
