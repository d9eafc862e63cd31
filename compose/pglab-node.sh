#!/bin/sh
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
