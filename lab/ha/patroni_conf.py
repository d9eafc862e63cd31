"""Patroni for a lab: how to run it as the server user, and each node's patroni.yml (pure values).

Patroni comes from PyPI (4.x: PostgreSQL 18 from 4.0.7/4.1.0), installed with `pglab[patroni]`.
It must run as the server user (PostgreSQL refuses root), so that user must be able to execute its
Python and read its packages. A virtualenv made from a Python under root's home (pyenv) is not
readable by it; Debian's /usr/bin/python3 of the same minor version, with the installed packages on
PYTHONPATH, is. pglab checks this before it starts anything and says what to do when it fails.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

from lab.errors import RuntimeUnavailable
from lab.model.conninfo import REPLICATION_USER, SUPERUSER
from lab.model.haspec import HASpec
from lab.model.names import cluster_name
from lab.model.topology import Topology

INSTALL_HINT = "pip install 'pglab[patroni]' (patroni[psycopg3,etcd3] 4.x)"
MIN_VERSION = (4, 0)


def installed() -> tuple[str, str]:
    """(version, site-packages directory holding patroni), or RuntimeUnavailable naming the install."""
    spec = importlib.util.find_spec("patroni")
    if spec is None or not spec.origin:
        raise RuntimeUnavailable("--ha patroni needs Patroni, which is not installed", INSTALL_HINT)
    try:
        version = importlib.metadata.version("patroni")
    except importlib.metadata.PackageNotFoundError:
        version = "0"
    nums = tuple(int(x) for x in version.split(".")[:2] if x.isdigit())
    if nums < MIN_VERSION:
        raise RuntimeUnavailable(f"--ha patroni needs Patroni 4.x; {version} is installed", INSTALL_HINT)
    for mod in ("patroni.dcs.etcd3", "psycopg"):
        if importlib.util.find_spec(mod.split(".")[0]) is None:
            raise RuntimeUnavailable(f"Patroni is installed without {mod}", INSTALL_HINT)
    return version, str(Path(spec.origin).parent.parent)


OVERRIDE = "PGLAB_PATRONI_PYTHON"


def check() -> None:
    """Patroni can be found (before anything is created)."""
    py = os.environ.get(OVERRIDE)
    if py:
        if not os.access(py, os.X_OK):
            raise RuntimeUnavailable(f"{OVERRIDE}={py} is not an executable Python",
                                     "point it at the python of a virtualenv that has patroni[psycopg3,etcd3] 4.x")
        return
    installed()


def runner(as_server_user: bool) -> tuple[list[str], dict[str, str]]:
    """The command (before the config file) and environment that run Patroni: $PGLAB_PATRONI_PYTHON
    (a Python with Patroni that the server user can run), else this installation's Patroni, run by
    Debian's /usr/bin/python3 with this installation's packages on PYTHONPATH when the lab runs as root."""
    py = os.environ.get(OVERRIDE)
    if py:
        return [py, "-m", "patroni"], {}
    _, site = installed()
    if not as_server_user:
        return [sys.executable, "-m", "patroni"], {}
    return ["/usr/bin/python3", "-m", "patroni"], {"PYTHONPATH": site}


def runner_hint() -> str:
    if os.environ.get(OVERRIDE):
        return f"check that the postgres user can run {os.environ[OVERRIDE]} and that it has patroni[psycopg3,etcd3] 4.x"
    _, site = installed()
    return (f"the postgres user must be able to run /usr/bin/python3 (Python {sys.version_info.major}."
            f"{sys.version_info.minor}) and read {site}; else make a virtualenv from /usr/bin/python3 in a "
            f"world-readable directory, pip install 'patroni[psycopg3,etcd3]>=4.0.7' into it, and set "
            f"{OVERRIDE} to its bin/python")


def nosync(topology: Topology) -> set[str]:
    """Standbys Patroni must never make synchronous: [ha] nosync, or else every standby the
    topology's synchronous_standby_names does not name (so s1 is the synchronous one by default)."""
    if topology.ha.nosync is not None:
        return set(topology.ha.nosync)
    names = set(topology.sync.names)
    return {s.name for s in topology.standbys if names and s.name not in names}


def dcs_settings(ha: HASpec, topology: Topology) -> dict[str, Any]:
    sm: Any = {"on": True, "off": False}.get(ha.synchronous_mode, ha.synchronous_mode)
    n_slots = len(topology.nodes) + 4
    params = {
        "wal_level": topology.wal_level, "hot_standby": "on", "wal_log_hints": "on",
        "max_wal_senders": n_slots, "max_replication_slots": n_slots, "wal_keep_size": "128MB",
        "synchronous_commit": topology.synchronous_commit,
        "hot_standby_feedback": "on" if topology.hot_standby_feedback else "off",
        "wal_receiver_status_interval": "1s", "password_encryption": "scram-sha-256",
        "log_line_prefix": "%m [%p] %q%a ", "shared_buffers": "64MB",
        **dict(topology.settings),
    }
    return {
        "ttl": ha.ttl, "loop_wait": ha.loop_wait, "retry_timeout": ha.retry_timeout,
        "maximum_lag_on_failover": ha.maximum_lag_on_failover,
        "synchronous_mode": sm, "synchronous_mode_strict": ha.synchronous_mode_strict,
        "synchronous_node_count": ha.synchronous_node_count, "failsafe_mode": ha.failsafe_mode,
        "postgresql": {"use_pg_rewind": True, "use_slots": True, "parameters": params},
    }


def hba(networks: list[str]) -> list[str]:
    lines = ["local all all peer", "local replication all peer"]
    for net in networks:
        lines += [f"host replication {REPLICATION_USER} {net} scram-sha-256", f"host all all {net} scram-sha-256"]
    return lines


def render(*, lab: str, scope: str, namespace: str, node: str, topology: Topology, rest: tuple[str, int],
           pg: tuple[str, int], home: str, data_dir: str, bin_dir: str, etcd_hosts: list[str],
           networks: list[str], superuser_password: str, replication_password: str,
           rest_listen: str | None = None, pg_listen: str | None = None) -> dict[str, Any]:
    """rest/pg: where the lab's other places reach the node's REST API and server; rest_listen and
    pg_listen: the addresses they bind there (in a container: all of its own, as its address can
    change when a partition is healed), by default the same."""
    spec = topology.node(node)
    return {
        "scope": scope,
        "namespace": namespace,
        "name": node,
        "log": {"level": "INFO", "format": "%(asctime)s %(levelname)s: %(message)s"},
        "restapi": {"listen": f"{rest_listen or rest[0]}:{rest[1]}", "connect_address": f"{rest[0]}:{rest[1]}"},
        "etcd3": {"hosts": etcd_hosts, "protocol": "http"},
        "bootstrap": {
            "dcs": dcs_settings(topology.ha, topology),
            "initdb": [{"encoding": "UTF8"}, {"locale": "C"}, {"auth-local": "peer"}, {"auth-host": "scram-sha-256"}],
        },
        "postgresql": {
            "listen": f"{pg_listen or pg[0]}:{pg[1]}",
            "connect_address": f"{pg[0]}:{pg[1]}",
            "data_dir": data_dir,
            "bin_dir": bin_dir,
            "pgpass": f"{home}/.pgpass_patroni",
            "use_unix_socket": False,
            "authentication": {
                "superuser": {"username": SUPERUSER, "password": superuser_password},
                "replication": {"username": REPLICATION_USER, "password": replication_password},
            },
            "parameters": {"unix_socket_directories": home, "cluster_name": cluster_name(lab, node),
                           **({"recovery_min_apply_delay": spec.apply_delay} if spec.apply_delay else {})},
            "pg_hba": hba(networks),
        },
        "watchdog": {"mode": "off"},
        "tags": {"nosync": node in nosync(topology), "nofailover": spec.priority == 0,
                 "noloadbalance": False, "clonefrom": False},
    }
