"""The dynamic shared memory a local PostgreSQL server leaves in /dev/shm when it is killed.

Besides its System V interlock segment (see sysv.py), a server keeps POSIX shared memory
segments, the files /dev/shm/PostgreSQL.<handle>: one control segment that lists the others
(the cumulative statistics' area grows into 1 MB segments, parallel queries make more). A clean
shutdown removes them. SIGKILL cannot, and the next postmaster on the same data directory
removes them only by following the old interlock segment's header to the old control segment.
A lab that is torn down, or a node that is re-cloned, never starts that postmaster: without
this module each killed server left about 1 MB in /dev/shm (memory, not disk) until reboot.

So before the local runtime removes a dead server's interlock segment, it follows the same
chain PostgreSQL follows: the header names the control segment, and the control segment names
every segment still in use. Only those named files go, never a guess by name or age.
Docker containers need none of this: each has its own /dev/shm, gone with the container.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path

SHM_DIR = Path("/dev/shm")
PREFIX = "PostgreSQL."
_CONTROL_MAGIC = 0x9A503D32   # PG_DYNSHMEM_CONTROL_MAGIC
# The control segment: magic, nitems, maxitems (uint32 each), then one item per slot. An item
# starts with its handle and reference count (uint32 each). PostgreSQL 14 added the main
# region's page range to the item, which made it 40 bytes at offset 16 (8 at offset 12 before);
# the segment's size tells which layout it has.
_LAYOUTS = ((16, 40), (12, 8))


def path_of(handle: int) -> Path:
    return SHM_DIR / f"{PREFIX}{handle}"


def listed(control: int) -> list[int] | None:
    """The handles the control segment `control` names as in use, or None when it is not there
    or not a PostgreSQL control segment of a layout known here."""
    try:
        data = path_of(control).read_bytes()
    except OSError:
        return None
    if len(data) < 12:
        return None
    magic, nitems, maxitems = struct.unpack_from("=III", data)
    if magic != _CONTROL_MAGIC or nitems > maxitems:
        return None
    for offset, size in _LAYOUTS:
        if len(data) == offset + size * maxitems:
            break
    else:
        return None
    handles = []
    for i in range(nitems):
        handle, refcnt = struct.unpack_from("=II", data, offset + size * i)
        # a count of 0 is a free slot; an odd handle lives in the main shared memory, not a file
        if refcnt and not handle & 1:
            handles.append(handle)
    return handles


def release(control: int) -> int:
    """Remove the control segment `control` of a dead server and every segment it names, as the
    server's next start would. Returns how many files went."""
    handles = listed(control)
    if handles is None:
        return 0
    gone = 0
    for handle in [*handles, control]:
        try:
            path_of(handle).unlink()
            gone += 1
        except OSError:
            pass
    return gone


def orphans(uid: int) -> set[str]:
    """Names of the PostgreSQL segments in /dev/shm owned by `uid` that no running server owns:
    none of its processes maps them, and no mapped control segment names them. This is the
    independent check (by scan) of what release() does (by following the header)."""
    present = set()
    try:
        entries = list(os.scandir(SHM_DIR))
    except OSError:
        return set()
    for e in entries:
        try:
            if e.name.startswith(PREFIX) and e.stat().st_uid == uid:
                present.add(e.name)
        except OSError:
            continue
    if not present:
        return set()
    mapped = _mapped()
    live = set(mapped)
    for name in mapped:
        handle = name[len(PREFIX):]
        if handle.isdigit():
            live.update(f"{PREFIX}{h}" for h in listed(int(handle)) or [])
    # a server may have removed some since the scan began
    return {name for name in present - live if (SHM_DIR / name).exists()}


def _mapped() -> set[str]:
    """Names of /dev/shm PostgreSQL segments some process has mapped."""
    names: set[str] = set()
    marker = f"{SHM_DIR}/{PREFIX}"
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/maps") as f:
                for line in f:
                    at = line.find(marker)
                    if at >= 0:
                        names.add(line[at + len(str(SHM_DIR)) + 1:].split()[0])
        except OSError:
            continue
    return names
