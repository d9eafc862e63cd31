"""The System V shared memory segment a local PostgreSQL server leaves behind when it is killed.

Every postmaster makes one small segment (56 bytes) as an interlock: a new postmaster on the
same data directory refuses to start while an old backend is still attached to it. A clean
shutdown removes it; SIGKILL cannot. PostgreSQL recycles the segment when a server starts
again on the same data directory, but a lab that is torn down, or a node that is re-cloned,
deletes the directory, and the segment then stays in the kernel until reboot. Enough of them
(kernel.shmmni, 4096 by default) and no server on the machine can start: initdb fails with
"could not create shared memory segment: No space left on device".

So the local runtime releases a node's segment before it deletes the node's data directory.
The segment is found from `postmaster.pid` (its 7th line holds the key and id) and removed
only while no process is attached, which is exactly when PostgreSQL would recycle it itself.
Its header names the server's dynamic shared memory, which goes with it (see dsm.py).
Docker containers need none of this: each has its own IPC namespace, gone with the container.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys
from pathlib import Path

from lab.runtime import dsm, procs

_IPC_RMID = 0
_SHM_RDONLY = 0o10000
_PG_SHMEM_MAGIC = 679834894   # PGShmemMagic, the header's first field
_PROC = Path("/proc/sysvipc/shm")


def segment_of(data_dir: str | Path) -> tuple[int, int] | None:
    """(key, shmid) that the server of `data_dir` recorded, or None when there is none."""
    try:
        lines = (Path(data_dir) / "postmaster.pid").read_text().splitlines()
    except OSError:
        return None
    if len(lines) < 7:
        return None
    fields = lines[6].split()
    if len(fields) != 2 or not all(f.isdigit() for f in fields):
        return None
    return int(fields[0]), int(fields[1])


def segments() -> dict[int, tuple[int, int, int]]:
    """shmid -> (key, attached processes, owner uid) for every segment the kernel lists."""
    found: dict[int, tuple[int, int, int]] = {}
    try:
        rows = _PROC.read_text().splitlines()[1:]
    except OSError:
        return found
    for row in rows:
        f = row.split()
        if len(f) >= 8:
            found[int(f[1])] = (int(f[0]), int(f[6]), int(f[7]))
    return found


def unattached(uid: int) -> set[int]:
    """Ids of segments owned by `uid` that no process is attached to."""
    return {shmid for shmid, (_key, nattch, owner) in segments().items() if owner == uid and nattch == 0}


def release(data_dir: str | Path) -> bool:
    """Remove the segment of the (stopped or killed) server of `data_dir`, if it is still there
    and nobody is attached. True when a segment was removed."""
    seg = segment_of(data_dir)
    if seg is None:
        return False
    key, shmid = seg
    now = segments().get(shmid)
    # the id may have been reused by another program since: the key must match too
    if now is None or now[0] != key or now[1] != 0:
        return False
    return _rmid(shmid)


def release_orphans(uid: int, since: float) -> int:
    """Remove the segments of `uid` made at or after `since` (epoch seconds) that no process is
    attached to and whose creator has exited: those of killed servers whose data directory is
    gone where release() cannot look (a failover manager re-cloned the node, or moved its old
    directory away). PostgreSQL itself removes such a segment when it finds one, so this never
    takes one that a server still needs. Returns how many went."""
    try:
        rows = _PROC.read_text().splitlines()[1:]
    except OSError:
        return 0
    gone = 0
    for row in rows:
        f = row.split()
        # the kernel keeps whole seconds: a segment made in the lab's first second counts too
        if len(f) < 14 or int(f[7]) != uid or int(f[6]) != 0 or int(f[13]) < int(since):
            continue
        if procs.alive(int(f[4])):
            continue   # its creator still runs (a zombie does not)
        gone += _rmid(int(f[1]))
    return gone


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.shmat.restype = ctypes.c_void_p
    libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
    libc.shmdt.argtypes = [ctypes.c_void_p]
    return libc


def dsm_control_of(shmid: int) -> int | None:
    """The dynamic shared memory control handle in a PostgreSQL segment's header, or None when
    the segment cannot be read or is not PostgreSQL's. The header (PGShmemHeader): int32 magic,
    pid_t creator, two size_t, then the uint32 handle at byte 24; unchanged since 9.4."""
    libc = _libc()
    addr = libc.shmat(shmid, None, _SHM_RDONLY)
    if addr is None or addr == ctypes.c_void_p(-1).value:
        return None
    try:
        head = ctypes.string_at(addr, 28)
    finally:
        libc.shmdt(ctypes.c_void_p(addr))
    magic = int.from_bytes(head[0:4], sys.byteorder, signed=True)
    handle = int.from_bytes(head[24:28], sys.byteorder)
    return handle if magic == _PG_SHMEM_MAGIC and handle else None


def _rmid(shmid: int) -> bool:
    # the server is dead (nobody is attached): its dynamic shared memory goes first, or nothing
    # would ever find it again
    control = dsm_control_of(shmid)
    if control is not None:
        dsm.release(control)
    return _libc().shmctl(ctypes.c_int(shmid), ctypes.c_int(_IPC_RMID), None) == 0
