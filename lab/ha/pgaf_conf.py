"""pg_auto_failover for a lab: what must be installed, the timing profiles, each node's shape and the
environment its keeper runs in (pure values, plus the one look at the installation).

Debian packages pg_auto_failover 2.0 for PostgreSQL 15 only (postgresql-15-auto-failover: the
monitor's extension; pg-auto-failover-cli: pg_autoctl), so a pg_auto_failover lab runs PostgreSQL 15:
this machine's packages (local runtime) or the same packages in the lab's 15 image (Docker).
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from lab.errors import RuntimeUnavailable, Unsupported
from lab.model.passwords import pgpass_line
from lab.model.topology import Topology

MAJOR = 15
INSTALL_HINT = f"apt-get install -y postgresql-{MAJOR}-auto-failover pg-auto-failover-cli"
# the roles pg_auto_failover makes: keepers -> monitor, monitor -> nodes (health checks), standbys -> primary
ROLES = ("autoctl_node", "pgautofailover_monitor", "pgautofailover_replicator")

# The monitor's settings (SIGHUP: ALTER SYSTEM + pg_reload_conf), in ms, and the keepers'
# timeout.network_partition_timeout in s (a primary that sees neither the monitor nor a standby for
# that long demotes itself: it must stay below primary_demote_timeout, or a partitioned old primary
# could still take writes when the monitor promotes another).
PROFILES: dict[str, dict[str, int]] = {
    # pg_auto_failover 2.0's own defaults
    "default": {"health_check_period": 5000, "health_check_timeout": 5000, "health_check_max_retries": 2,
                "health_check_retry_delay": 2000, "node_considered_unhealthy_timeout": 20000,
                "primary_demote_timeout": 30000, "startup_grace_period": 10000, "network_partition_timeout": 20},
    # the smallest sensible: the GUCs accept 1 ms, but a keeper reports to the monitor about once a
    # second, so a node silent for less than ~3 s is not yet gone; checks every second, one retry
    "fast": {"health_check_period": 1000, "health_check_timeout": 1000, "health_check_max_retries": 1,
             "health_check_retry_delay": 500, "node_considered_unhealthy_timeout": 3000,
             "primary_demote_timeout": 5000, "startup_grace_period": 3000, "network_partition_timeout": 3},
}
KEEPER_KEYS = ("network_partition_timeout",)


def monitor_settings(profile: str) -> dict[str, int]:
    return {k: v for k, v in PROFILES[profile].items() if k not in KEEPER_KEYS}


def shape(topology: Topology) -> dict[str, tuple[bool, int]]:
    """node -> (replication quorum, candidate priority). The primary and the standbys that the
    topology's synchronous_standby_names names (s1 by default) are in the write quorum and may be
    promoted (priority 50, pg_auto_failover's default; a topology priority below 50 is kept);
    the others (s2) are asynchronous and never promoted (quorum false, priority 0), as Patroni's
    nosync tag makes them."""
    sync = set(topology.sync.names)
    out = {topology.primary.name: (True, min(50, topology.primary.priority))}
    for s in topology.standbys:
        out[s.name] = (True, min(50, s.priority)) if s.name in sync else (False, 0)
    return out


def keeper_env(home: str, bindir: str, sockets: str, passfile: str) -> dict[str, str]:
    """pg_autoctl keeps its configuration and state under XDG directories of $HOME; as root-started
    processes of the postgres user they must point inside the lab (pg_auto_failover#1058)."""
    return {"HOME": home, "XDG_CONFIG_HOME": f"{home}/xdg/config", "XDG_DATA_HOME": f"{home}/xdg/share",
            "XDG_RUNTIME_DIR": f"{home}/xdg/run", "PGHOST": sockets, "PGPASSFILE": passfile,
            "PATH": f"{bindir}:/usr/sbin:/usr/bin:/sbin:/bin"}


def passfile_text(password: str) -> str:
    """pg_auto_failover's roles all get the lab's generated password (scram-sha-256); libpq reads it
    from here (pg_autoctl, pg_basebackup, the walreceiver and the monitor's health checks)."""
    return "".join(pgpass_line(r, password) for r in ROLES)


def pg_autoctl() -> str:
    path = shutil.which("pg_autoctl")
    if path is None:
        raise RuntimeUnavailable("--ha pg_auto_failover needs pg_autoctl, which is not installed", INSTALL_HINT)
    return path


def sharedir(bindir: str) -> Path:
    pg_config = os.path.join(bindir, "pg_config")
    try:
        out = subprocess.run([pg_config, "--sharedir"], capture_output=True, text=True, timeout=10,
                             check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out = ""
    return Path(out) if out else Path(bindir).parent.parent.parent.parent / "share" / "postgresql" / str(MAJOR)


def check_major(major: int) -> None:
    if major != MAJOR:
        raise RuntimeUnavailable(f"--ha pg_auto_failover needs PostgreSQL {MAJOR} (the only version Debian packages "
                                 f"it for); this lab would run {major}", f"add --pg {MAJOR}")


def check_netns(topology: Topology) -> None:
    if topology.netns:
        raise Unsupported("--ha pg_auto_failover runs on 127.0.0.1 only, not in per-node network namespaces",
                          "drop --netns")


def check(topology: Topology, server_bindir: str, server_major: int) -> None:
    """Everything a pg_auto_failover lab on this machine needs, before anything is created (one
    line each). On Docker the image is checked instead (lab.ha.pgaf.check_available)."""
    check_netns(topology)
    check_major(server_major)
    pg_autoctl()
    if not (sharedir(server_bindir) / "extension" / "pgautofailover.control").exists():
        raise RuntimeUnavailable(f"PostgreSQL {MAJOR} has no pgautofailover extension (the monitor needs it)",
                                 INSTALL_HINT)
