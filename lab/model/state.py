"""Where a lab keeps what it knows about itself, and how it is found again.

Each lab has a directory <home>/<name>/ holding state.json (mode 0600: it holds
the generated passwords), a libpq password file for client DSNs, and, for the
local runtime, one directory per node. <home> is $PGLAB_HOME or
/tmp/pglab-<uid>; it is mode 0711 so that the unprivileged server user can reach
its node directories when the lab runs as root.
"""
from __future__ import annotations

import json
import os
import shutil
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lab.errors import LabExists, LabNotFound
from lab.model.names import check_name
from lab.model.passwords import pgpass_line


# what `down` discards is renamed to <home>/.trash-… and deleted in the background; a lab name
# cannot start with a dot, so it is never taken for a lab
TRASH_PREFIX = ".trash-"


def home() -> Path:
    base = os.environ.get("PGLAB_HOME") or f"/tmp/pglab-{os.getuid()}"
    p = Path(base)
    p.mkdir(mode=0o711, parents=True, exist_ok=True)
    return p


@dataclass
class NodeAddr:
    host: str          # where clients on this machine connect
    port: int
    peer_host: str     # where other nodes of the lab connect
    peer_port: int


@dataclass
class LabState:
    name: str
    runtime: str
    topology: dict[str, Any]
    superuser_password: str
    replication_password: str
    nodes: dict[str, NodeAddr] = field(default_factory=dict)
    primary: str = ""
    created: float = 0.0
    runtime_data: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    faults: dict[str, list[str]] = field(default_factory=dict)   # node -> faults in force
    ha: dict[str, Any] = field(default_factory=dict)   # what the failover manager remembers (lab.ha)

    @property
    def dir(self) -> Path:
        return lab_dir(self.name)

    @property
    def pgpass_path(self) -> Path:
        return self.dir / "pgpass"

    @property
    def standbys(self) -> list[str]:
        """Every node but the one the lab last made primary, in topology order."""
        return [n for n in self.nodes if n != self.primary]

    def node_of(self, walsender: str) -> str:
        """The node a walsender's application_name or a slot's name stands for: the node's own name,
        unless a failover manager names them its own way (pg_auto_failover: pgautofailover_standby_<id>)."""
        return self.ha.get("walsenders", {}).get(walsender, walsender)

    def save(self) -> None:
        # Two threads of one process may save at once (a monitor failing over while a drill heals
        # a node): each writes its own temporary file, and the last rename wins whole.
        _replace(self.dir / "state.json", json.dumps(asdict(self), indent=1))
        self._write_pgpass()

    def _write_pgpass(self) -> None:
        # Clients get DSNs with passfile= instead of password=, so a DSN printed
        # to a terminal or a CI log carries no secret. Replaced atomically, and only when it
        # changes: a client reading it meanwhile must never find it empty.
        line = pgpass_line("postgres", self.superuser_password)
        try:
            if self.pgpass_path.read_text() == line:
                return
        except OSError:
            pass
        _replace(self.pgpass_path, line)


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def lab_dir(name: str) -> Path:
    return home() / name


def create_lab_dir(name: str) -> Path:
    check_name(name, "lab name")
    d = lab_dir(name)
    try:
        d.mkdir(mode=0o711)
    except FileExistsError:
        raise LabExists(f"a lab named {name!r} already exists",
                        f"use another --name, or remove it with `pglab down --name {name}`") from None
    os.chmod(d, 0o711)  # umask may have narrowed it
    return d


def load(name: str) -> LabState:
    check_name(name, "lab name")
    f = lab_dir(name) / "state.json"
    if not f.exists():
        raise LabNotFound(f"no lab named {name!r}", "start one with `pglab up` or list labs with `pglab ls`")
    d = json.loads(f.read_text())
    d["nodes"] = {k: NodeAddr(**v) for k, v in d.get("nodes", {}).items()}
    return LabState(**d)


def exists(name: str) -> bool:
    return (lab_dir(name) / "state.json").exists()


def list_labs() -> list[str]:
    return sorted(p.parent.name for p in home().glob("*/state.json"))


def remove_lab_dir(name: str) -> bool:
    d = lab_dir(name)
    if d.exists():
        shutil.rmtree(d, ignore_errors=True)
        return True
    return False


# ---- the primary's last sampled WAL position ----------------------------------------------------
# Whenever pglab reads the primary's pg_current_wal_lsn() (status, the monitor's health check, the
# lag recorder) it keeps the position and the time in <lab dir>/primary_seen.json. After the
# primary failed, that is the best a real operator knows of how far it had got: the failover's
# data-loss guard compares the candidates with it. A separate small file, replaced atomically,
# so that a frequent reader never rewrites (and never races) state.json.
SEEN_FILE = "primary_seen.json"


@dataclass(frozen=True)
class PrimarySeen:
    node: str
    lsn: str                 # pg_current_wal_lsn() as the primary reported it
    timeline: int | None
    t: float                 # unix time the question was sent: the primary was at least here then
    source: str              # who read it: status, monitor, lag recorder


def record_primary_seen(name: str, seen: PrimarySeen) -> None:
    """Keep `seen` unless a newer sighting is already recorded. Never raises: a reader of the
    primary must not fail because the lab directory went away under it."""
    try:
        d = lab_dir(name)
        if not d.is_dir():
            return
        old = primary_seen(name)
        if old is not None and old.t > seen.t:
            return
        tmp = d / f"{SEEN_FILE}.{os.getpid()}.{threading.get_ident()}.tmp"
        tmp.write_text(json.dumps(asdict(seen)))
        os.replace(tmp, d / SEEN_FILE)
    except OSError:
        pass


def primary_seen(name: str) -> PrimarySeen | None:
    try:
        return PrimarySeen(**json.loads((lab_dir(name) / SEEN_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None
