"""`pglab compose render`: a compose project that runs a topology without pglab.

Output (runnable with plain `docker-compose up`, 1.29 or the compose plugin):
  docker-compose.yml   one service per node, image ${PGLAB_IMAGE:-postgres:<major>}, ports on 127.0.0.1
  pglab-node.sh        every node's entrypoint: the primary runs initdb and creates the replication
                       role; a standby clones with pg_basebackup -C -S <its slot>; then postgres runs
  conf/<node>.conf     the node's own settings, included from postgresql.conf
  .env                 generated passwords (mode 0600; compose reads it, `down -v` leaves it)
The script needs only what both the official image and the lab's own have: PATH to the server
programs, a `postgres` user and util-linux's setpriv, so the image's entrypoint is not used.
"""
from __future__ import annotations

import os
from pathlib import Path

import yaml

from lab.model.conninfo import replication_conninfo
from lab.model.passwords import generate
from lab.model.pgconf import quote
from lab.model.syncspec import slot_name
from lab.model.topology import DEFAULT_PG, Topology

HOME = "/var/lib/postgresql/pglab"
SCRIPT = "pglab-node.sh"


def node_conf(topo: Topology, node: str) -> str:
    """The settings of one node; standbys get where to stream from and through which slot."""
    n_slots = len(topo.nodes) + 4
    s: dict[str, str] = {
        "listen_addresses": "*", "unix_socket_directories": HOME, "cluster_name": node, "wal_level": topo.wal_level, "wal_log_hints": "on",
        "hot_standby": "on", "max_wal_senders": str(n_slots), "max_replication_slots": str(n_slots),
        "synchronous_commit": topo.synchronous_commit,
        "hot_standby_feedback": "on" if topo.hot_standby_feedback else "off",
        "wal_receiver_status_interval": "1s", "password_encryption": "scram-sha-256",
    }
    if node == topo.primary.name:
        s["synchronous_standby_names"] = topo.sync.render() or ""
    else:
        s["synchronous_standby_names"] = ""
        s["primary_conninfo"] = replication_conninfo(topo.primary.name, 5432, f"{HOME}/.pgpass", node)
        s["primary_slot_name"] = slot_name(node)
        if topo.node(node).apply_delay:
            s["recovery_min_apply_delay"] = topo.node(node).apply_delay or "0"
    s.update(dict(topo.settings))
    return "# Written by `pglab compose render`; included from postgresql.conf.\n" + "".join(
        f"{k} = {quote(v)}\n" for k, v in s.items())


def compose_file(topo: Topology, image: str | None = None) -> str:
    major = topo.pg_version or DEFAULT_PG
    default_image = image or f"postgres:{major}"
    secret = "set it in .env (see README.md)"
    services: dict = {}
    for n in topo.nodes:
        primary = n.name == topo.primary.name
        env = {"PGLAB_ROLE": "primary" if primary else "standby", "PGLAB_NODE": n.name,
               "PGLAB_PRIMARY": topo.primary.name,
               "PGLAB_REPLICATION_PASSWORD": f"${{PGLAB_REPLICATION_PASSWORD:?{secret}}}"}
        if primary:
            env["POSTGRES_PASSWORD"] = f"${{POSTGRES_PASSWORD:?{secret}}}"
            env["PGLAB_SLOTS"] = " ".join(slot_name(s.name) for s in topo.standbys)
        svc = {
            "image": f"${{PGLAB_IMAGE:-{default_image}}}",
            "hostname": n.name,
            "init": True,   # docker-init as PID 1 reaps what postgres's children leave
            "user": "root",  # the script gives the volume to postgres, then drops to it
            "entrypoint": ["/bin/sh", f"/pglab/{SCRIPT}"],
            "environment": env,
            "volumes": [f"./{SCRIPT}:/pglab/{SCRIPT}:ro", f"./conf/{n.name}.conf:/pglab/node.conf:ro",
                        f"{n.name}:{HOME}"],
            # published for clients on this machine only; empty host port = Docker picks one
            "ports": [f"127.0.0.1:${{PGLAB_PORT_{n.name.upper().replace('-', '_')}:-}}:5432"],
            "labels": {"pglab.compose": n.name},
        }
        if not primary:
            svc["depends_on"] = [topo.primary.name]
        services[n.name] = svc
    doc = {"version": "2.4", "services": services, "volumes": {n.name: {} for n in topo.nodes}}
    head = (f"# pglab: {topo.primary.name} primary; standbys {', '.join(s.name for s in topo.standbys) or 'none'}; "
            f"synchronous_standby_names = {topo.sync.render() or 'none'!r}\n"
            f"# Run: PGLAB_IMAGE=pglab-postgres:{major} docker-compose up -d   (default image {default_image})\n"
            f"# Written by `pglab compose render`.\n")
    return head + yaml.safe_dump(doc, sort_keys=False, width=120)


def node_script() -> str:
    return NODE_SCRIPT


def env_file() -> str:
    return f"POSTGRES_PASSWORD={generate()}\nPGLAB_REPLICATION_PASSWORD={generate()}\n"


def render_to(topo: Topology, out: str | os.PathLike, *, image: str | None = None, write_env: bool = True) -> list[Path]:
    out = Path(out)
    (out / "conf").mkdir(parents=True, exist_ok=True)
    files = {out / "docker-compose.yml": compose_file(topo, image), out / SCRIPT: node_script()}
    files.update({out / "conf" / f"{n.name}.conf": node_conf(topo, n.name) for n in topo.nodes})
    for path, text in files.items():
        path.write_text(text)
    written = list(files)
    env = out / ".env"
    if write_env and not env.exists():   # keep passwords of a project that may already have data
        fd = os.open(env, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(env_file())
        written.append(env)
    return written


NODE_SCRIPT = r"""#!/bin/sh
# pglab compose node: the primary (PGLAB_ROLE=primary) or a standby of $PGLAB_PRIMARY.
# Runs as root only long enough to give the volume to postgres; the server runs as postgres.
# Written by `pglab compose render`.
set -eu
HOME_DIR=/var/lib/postgresql/pglab
PGDATA=$HOME_DIR/data
mkdir -p "$HOME_DIR"
chown postgres:postgres "$HOME_DIR"
chmod 700 "$HOME_DIR"
as_pg() { setpriv --reuid=postgres --regid=postgres --init-groups env HOME="$HOME_DIR" "$@"; }
log() { echo "pglab-node $PGLAB_NODE: $*"; }

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  # passwords go through files and the environment, never a command line (ps would show them)
  pw=$(printf '%s' "$PGLAB_REPLICATION_PASSWORD" | sed -e 's/\\/\\\\/g' -e 's/:/\\:/g')
  (umask 077; printf '*:*:*:replicator:%s\n' "$pw" > "$HOME_DIR/.pgpass")
  chown postgres:postgres "$HOME_DIR/.pgpass"
  if [ "$PGLAB_ROLE" = primary ]; then
    log "initdb"
    (umask 077; printf '%s\n' "$POSTGRES_PASSWORD" > "$HOME_DIR/.pwfile")
    chown postgres:postgres "$HOME_DIR/.pwfile"
    as_pg initdb -D "$PGDATA" -U postgres --pwfile="$HOME_DIR/.pwfile" --auth-local=peer \
      --auth-host=scram-sha-256 -E UTF8 --locale=C >/dev/null
    rm -f "$HOME_DIR/.pwfile"
    echo "include_if_exists '/pglab/node.conf'" >> "$PGDATA/postgresql.conf"
    cat > "$PGDATA/pg_hba.conf" <<HBA
# pglab compose: passwords (scram-sha-256) over TCP from the compose network (and the published
# 127.0.0.1 port, which arrives from its gateway), peer on the local socket
local all all peer
local replication all peer
host replication replicator samenet scram-sha-256
host all all samenet scram-sha-256
HBA
    # a server on the socket only, to create the replication role (psql reads the password
    # from the environment with \getenv, so it is in no command line)
    as_pg pg_ctl -D "$PGDATA" -o "-c listen_addresses= -c unix_socket_directories=$HOME_DIR" -w start >/dev/null
    as_pg psql -h "$HOME_DIR" -U postgres -d postgres -v ON_ERROR_STOP=1 -q <<'SQL'
\getenv rpw PGLAB_REPLICATION_PASSWORD
SET synchronous_commit = local;
CREATE ROLE replicator WITH LOGIN REPLICATION PASSWORD :'rpw';
-- every standby's slot, reserving WAL before any clone starts: clones that make their slot
-- themselves (-C) race a concurrent clone's checkpoint for WAL
\getenv slots PGLAB_SLOTS
SELECT count(pg_create_physical_replication_slot(s, true)) AS slots FROM unnest(string_to_array(:'slots', ' ')) s \g /dev/null
SQL
    as_pg pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  else
    log "waiting for $PGLAB_PRIMARY"
    until as_pg pg_isready -q -h "$PGLAB_PRIMARY" -p 5432; do sleep 0.2; done
    # the server came up; the role may still be in the making: retry the clone for a while
    slot=$(echo "$PGLAB_NODE" | tr '-' '_')
    create=
    for i in $(seq 1 50); do
      rm -rf "$PGDATA"
      if out=$(as_pg pg_basebackup -D "$PGDATA" -h "$PGLAB_PRIMARY" -p 5432 -U replicator -w -X stream \
               -c fast $create -S "$slot" 2>&1); then
        break
      fi
      case "$out" in *"does not exist"*) create=-C ;; esac   # a standby the primary was not told of
      log "clone attempt $i failed: $(echo "$out" | tail -n 1)"
      sleep 0.5
    done
    [ -s "$PGDATA/PG_VERSION" ] || { log "could not clone from $PGLAB_PRIMARY"; exit 1; }
    touch "$PGDATA/standby.signal"
    chown postgres:postgres "$PGDATA/standby.signal"
    log "cloned from $PGLAB_PRIMARY through slot $slot"
  fi
fi
log "starting postgres"
exec setpriv --reuid=postgres --regid=postgres --init-groups env HOME="$HOME_DIR" postgres -D "$PGDATA"
"""
