"""Finding and signalling processes on this machine: the local runtime's servers, and a Docker node's
when the daemon runs here."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def _ppid_map() -> dict[int, int]:
    out: dict[int, int] = {}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            stat = (p / "stat").read_text()
        except OSError:
            continue
        out[int(p.name)] = int(_fields(stat)[1])
    return out


def _fields(stat: str) -> list[str]:
    """/proc/<pid>/stat after the command name (state, ppid, ...): the name may hold spaces and
    parentheses, so split after the last ')'."""
    return stat[stat.rfind(")") + 2:].split()


def parent(pid: int) -> int | None:
    """The pid's parent, also while it is a zombie; None when the process is gone (reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(_fields(stat)[1])


def tree(pid: int) -> list[int]:
    """pid and all its descendants."""
    ppids = _ppid_map()
    result, todo = [], [pid]
    while todo:
        p = todo.pop()
        result.append(p)
        todo.extend(c for c, pp in ppids.items() if pp == p)
    return result


def descendants(pid: int) -> list[int]:
    """pid and its descendants, read from each process's own children lists: a few small reads,
    not a pass over all of /proc (which a busy machine makes cost tens of milliseconds)."""
    result, todo = [], [pid]
    while todo:
        p = todo.pop()
        result.append(p)
        try:
            tasks = list(Path(f"/proc/{p}/task").iterdir())
        except OSError:
            continue
        for t in tasks:
            try:
                todo.extend(int(c) for c in (t / "children").read_text().split())
            except (OSError, ValueError):
                pass
    return result


def in_pid_namespace_of(pid: int) -> list[int]:
    """Every process in the pid namespace of `pid` (a container's first process): also those that
    are not its descendants, such as what `docker exec` started. A pass over /proc: only when
    `descendants` did not find what was looked for."""
    try:
        ns = os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return []
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if os.readlink(d / "ns" / "pid") == ns:
                    out.append(int(d.name))
            except OSError:
                continue
    return out


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is dead for our purposes
    try:
        state = _fields(Path(f"/proc/{pid}/stat").read_text())[0]
        return state != "Z"
    except (OSError, IndexError):
        return False


def wait_dead(pids: list[int], timeout: float = 5.0, interval: float = 0.005) -> None:
    """Until none of `pids` is alive (a killed postmaster's children notice its death by
    themselves), bounded: a process stuck in the kernel is not waited on for ever."""
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(interval)


def signal_tree(pid: int, sig: int) -> None:
    for p in tree(pid):
        try:
            os.kill(p, sig)
        except (ProcessLookupError, PermissionError):
            pass


def matching(needle: str) -> list[int]:
    """Processes whose command line or title mentions needle (a lab directory or cluster name)."""
    me = os.getpid()
    found = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit() or int(p.name) == me:
            continue
        try:
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in cmd and alive(int(p.name)):
            found.append(int(p.name))
    return found


def kill_matching(needle: str) -> int:
    pids = matching(needle)
    for p in pids:
        try:
            os.kill(p, signal.SIGCONT)
            os.kill(p, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return len(pids)


def titled(cluster_name: str) -> list[int]:
    """A server's processes by their title ("postgres: <cluster_name>: …"): found even when their
    postmaster is gone and they were reparented (e.g. children frozen when it was killed)."""
    prefix = f"postgres: {cluster_name}: "
    return [pid for pid in matching(prefix)
            if cmdline(pid).startswith(prefix)]


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class Snapshot:
    """Every process on the machine, read from /proc once: `down` asks several questions about
    them (a postmaster's children, processes in the lab's directory, server titles) and a pass
    over /proc costs tens of milliseconds on a busy machine."""

    def __init__(self) -> None:
        self.ppid: dict[int, int] = {}
        self.cmdline: dict[int, str] = {}
        me = os.getpid()
        for p in Path("/proc").iterdir():
            if not p.name.isdigit() or int(p.name) == me:
                continue
            try:
                stat = (p / "stat").read_text()
                cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2:].split()
            if fields[0] == "Z":   # a zombie is dead for our purposes
                continue
            self.ppid[int(p.name)] = int(fields[1])
            self.cmdline[int(p.name)] = cmd

    def alive(self, pid: int) -> bool:
        return pid in self.ppid

    def tree(self, pid: int) -> list[int]:
        result, todo = [], [pid]
        while todo:
            p = todo.pop()
            result.append(p)
            todo.extend(c for c, pp in self.ppid.items() if pp == p)
        return result

    def matching(self, needle: str) -> list[int]:
        return [pid for pid, cmd in self.cmdline.items() if needle in cmd]

    def titled(self, cluster_name: str) -> list[int]:
        prefix = f"postgres: {cluster_name}: "
        return [pid for pid, cmd in self.cmdline.items() if cmd.startswith(prefix)]


def kill_now(pids: set[int]) -> None:
    """SIGKILL every pid (after SIGCONT, so that frozen processes die at once, too)."""
    for sig in (signal.SIGCONT, signal.SIGKILL):
        for p in pids:
            try:
                os.kill(p, sig)
            except (ProcessLookupError, PermissionError):
                pass
