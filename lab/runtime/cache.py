"""pglab's cache on this machine: server files the server user can read, and initialised clusters
to copy nodes from. Entries are made once, under a lock, in a temporary directory renamed into
place, so a concurrent first use never sees half an entry, and then never change.

The cache is $PGLAB_CACHE, else /var/cache/pglab when running as root, else
$XDG_CACHE_HOME/pglab (~/.cache/pglab). As root it is world-readable (0755): the `postgres`
user runs the servers from it.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def root() -> Path:
    configured = os.environ.get("PGLAB_CACHE")
    if configured:
        base = Path(configured)
    elif os.geteuid() == 0:
        base = Path("/var/cache/pglab")
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pglab"
    return base


def area(name: str, owner: tuple[int, int] | None = None) -> Path:
    """A subdirectory of the cache (made 0755; owned by `owner` when given, so that the server user
    can write its own entries there)."""
    d = root() / name
    if not d.is_dir():
        d.mkdir(mode=0o755, parents=True, exist_ok=True)
        os.chmod(root(), 0o755)
        os.chmod(d, 0o755)   # umask may have narrowed both
    if owner and (d.stat().st_uid, d.stat().st_gid) != owner:
        os.chown(d, *owner)
    return d


@contextmanager
def locked(key: str) -> Iterator[None]:
    """Hold the cache's lock for key (across processes and threads: one flock per open file)."""
    d = area("locks")
    fd = os.open(d / f"{key}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)   # closing releases the lock


def staging_path(final: Path) -> Path:
    """A temporary sibling of final: on the same file system, so publishing is a rename."""
    return final.with_name(f".tmp-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def publish(staging: Path, final: Path) -> None:
    """Move a complete entry into place. The caller holds the lock, so final does not exist yet."""
    try:
        os.rename(staging, final)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not final.exists():
            raise
