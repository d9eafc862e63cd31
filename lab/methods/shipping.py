"""WAL shipping through an archive: the primary archives each finished 16 MB segment
(`archive_command`), a standby with no streaming connection (`primary_conninfo = ''`)
restores them (`restore_command`). Next to it a streaming standby of the same primary.

What it shows:
- a small write does not reach the archive standby until its segment is finished: never,
  on an idle primary, without `archive_timeout` (or a manual pg_switch_wal());
- with archive_timeout the lag is about that timeout, against milliseconds for streaming —
  and each forced switch ships a whole segment file;
- both standbys end up with the same rows as the primary (same row hashes): WAL is physical;
- the coupling: a physical copy only opens with the same major version. With the Docker image
  of another major here, that server is started on a copy of the standby and refuses.

Local runtime only: the archive is a directory that the primary writes and the standby reads.
"""
from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import psycopg

from lab.cluster import nodes as cluster, server
from lab.errors import Unsupported
from lab.methods.statement import table_hash
from lab.model.topology import topology_from_dict
from lab.wait import poll, wait_until
from lab.model.state import lab_dir
from lab.cluster.handle import Cluster
from lab.cluster.bootstrap import down
from lab.runtime import images


def _archive_dir(lab_name: str) -> str:
    # inside the primary's home, which belongs to the server user: both servers run as that user
    return str(lab_dir(lab_name) / "p1" / "archive")


@contextlib.contextmanager
def archive_lab(*, name: str | None = None, runtime: str = "local") -> Iterator:
    """p1 archiving, s1 streaming, a1 restoring from the archive only. Removed afterwards."""
    if runtime != "local":
        raise Unsupported("the archive drill runs on the local runtime",
                          "on Docker the archive would need a volume shared by two containers")
    name = name or f"ar{uuid.uuid4().hex[:6]}"
    arch = _archive_dir(name)
    topo = topology_from_dict({
        "nodes": [{"name": "p1", "role": "primary"}, {"name": "s1"}, {"name": "a1"}],
        "settings": {"archive_mode": "on",
                     "archive_command": f"mkdir -p {arch} && test ! -f {arch}/%f && cp %p {arch}/%f",
                     "wal_retrieve_retry_interval": "100ms"},   # how often a1 asks the archive again
    }, source="archive drill")
    try:
        lab = Cluster.up(topo, name=name, runtime=runtime)
        # a1 was cloned like any standby; now cut its stream: it only restores from the archive
        server.stop(lab.ctx.rt, "a1")
        cluster.write_config(lab.ctx, "a1", upstream="p1", extra={
            "primary_conninfo": "", "primary_slot_name": "", "restore_command": f"cp {arch}/%f %p"})
        server.start(lab.ctx.rt, "a1")
        cluster.drop_slot(lab.ctx, "p1", "a1")      # nobody streams through it any more
        yield lab
    finally:
        down(name)


@dataclass(frozen=True)
class ShippingReport:
    small_write_visible_without_timeout: bool   # within wait_s, on an idle primary
    wait_s: float
    after_switch_wal_s: float                   # pg_switch_wal(), then until a1 shows the row
    archive_timeout: str
    archive_lag_s: tuple[float, ...]            # per small write, with archive_timeout
    streaming_lag_s: tuple[float, ...]          # the same writes on s1
    segments_archived: int
    segment_bytes: int
    hashes_equal: bool
    row_hash: str
    version_check: str                          # what a server of another major says


def _visible_after(conn: psycopg.Connection, key: str, t0: float, timeout: float) -> float | None:
    """Poll (on an open connection: connecting costs more than streaming lag) until `key` shows."""
    seen = poll(lambda: conn.execute("SELECT 1 FROM marks WHERE k = %s", (key,)).fetchone(),
                timeout=t0 + timeout - time.monotonic(), interval=0.002)
    return time.monotonic() - t0 if seen else None


def run(lab, *, archive_timeout: str = "1s", writes: int = 3, wait_s: float = 3.0) -> ShippingReport:
    p, s1, a1 = lab.dsn("p1"), lab.dsn("s1"), lab.dsn("a1")
    with psycopg.connect(p, autocommit=True) as c:
        c.execute("CREATE TABLE marks (k text PRIMARY KEY, at timestamptz DEFAULT now(), pad text)")
        c.execute("SELECT pg_switch_wal()")          # start from a fresh segment
        seg = int(c.execute("SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'").fetchone()[0])
    wait_until(lambda: _has_table(a1), timeout=30, what="a1 to restore the table from the archive")
    with psycopg.connect(s1, autocommit=True) as cs, psycopg.connect(a1, autocommit=True) as ca:
        seen, switched, arch_lag, stream_lag = _measure(p, cs, ca, archive_timeout, writes, wait_s)
    hashes = {}
    for dsn in (p, s1, a1):
        hashes[dsn] = wait_until(lambda d=dsn: _count(d) == writes + 1 and table_hash(d, "marks"), timeout=30,
                                 what="all nodes to have every row")
    arch = Path(_archive_dir(lab.name))
    segments = len([f for f in arch.iterdir() if len(f.name) == 24]) if arch.exists() else 0
    return ShippingReport(seen is not None, wait_s, round(switched, 3), archive_timeout, tuple(arch_lag),
                          tuple(stream_lag), segments, seg, len(set(hashes.values())) == 1, hashes[p],
                          version_check(lab, "a1"))


def _measure(p: str, s1, a1, archive_timeout: str, writes: int, wait_s: float):
    # 1. no archive_timeout: a small write stays in the current, unfinished segment
    with psycopg.connect(p, autocommit=True) as c:
        c.execute("INSERT INTO marks (k) VALUES ('idle')")
        t0 = time.monotonic()
    seen = _visible_after(a1, "idle", t0, wait_s)
    with psycopg.connect(p, autocommit=True) as c:
        c.execute("SELECT pg_switch_wal()")
        t1 = time.monotonic()
    switched = _visible_after(a1, "idle", t1, 30) or -1.0
    # 2. archive_timeout: the primary finishes a segment at least that often when it wrote something
    with psycopg.connect(p, autocommit=True) as c:
        c.execute(f"ALTER SYSTEM SET archive_timeout = '{archive_timeout}'")
        c.execute("SELECT pg_reload_conf()")
    time.sleep(0.2)
    arch_lag, stream_lag = [], []
    for i in range(writes):
        with psycopg.connect(p, autocommit=True) as c:
            c.execute("INSERT INTO marks (k) VALUES (%s)", (f"w{i}",))
            t = time.monotonic()
        stream_lag.append(round(_visible_after(s1, f"w{i}", t, 10) or -1.0, 4))
        arch_lag.append(round(_visible_after(a1, f"w{i}", t, 30) or -1.0, 3))
    with psycopg.connect(p, autocommit=True) as c:
        c.execute("ALTER SYSTEM RESET archive_timeout")
        c.execute("SELECT pg_reload_conf()")
        c.execute("SELECT pg_switch_wal()")
    return seen, switched, arch_lag, stream_lag


def _has_table(dsn: str) -> bool:
    with psycopg.connect(dsn) as c:
        return bool(c.execute("SELECT to_regclass('marks')").fetchone()[0])


def _count(dsn: str) -> int:
    with psycopg.connect(dsn) as c:
        return c.execute("SELECT count(*) FROM marks").fetchone()[0]


def version_check(lab: Cluster, node: str, other_major: int | None = None) -> str:
    """Start a server of another major version on a copy of this standby's data directory
    (with the Docker image of that version, when it is here) and return what it says."""
    data = lab.ctx.rt.host_data_dir(node)
    if data is None:
        return f"{node}'s data directory is not on this machine; the cross-version check needs the local runtime"
    version = (Path(data) / "PG_VERSION").read_text().strip()
    other_major = other_major or (15 if version == "17" else 17)
    with tempfile.TemporaryDirectory(prefix="pglab-version-check-") as tmp:
        # a copy without the node's configuration: a newer major's settings (18's io_method, …)
        # would stop an older server before it even looks at the data files' version
        copy = Path(tmp) / "data"
        shutil.copytree(data, copy, ignore=shutil.ignore_patterns("postmaster.pid", "pg_wal"))
        (copy / "pg_wal").mkdir()
        for conf in ("postgresql.conf", "postgresql.auto.conf", "pglab.conf"):
            (copy / conf).write_text("")
        said = images.start_on_copy(str(copy), other_major)
    if said is None:
        return (f"{node}'s data directory says PG_VERSION {version}; no {images.image_name(other_major)} image "
                f"here to try another major (a physical standby needs the same major: WAL and data files are binary)")
    lines = [ln.strip() for ln in said.splitlines() if "FATAL" in ln or "DETAIL" in ln]
    return " / ".join(lines) or said.strip()[-300:]
