"""Helper processes of a lab that run detached (the background failover monitor).

Each has a pid file in the lab's directory; `down` stops every one, so none outlives its lab.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from pathlib import Path

from lab.model import state as lab_state
from lab.runtime import process_alive

log = logging.getLogger(__name__)


def _pid_file(lab: str, what: str) -> Path:
    return lab_state.lab_dir(lab) / f"{what}.pid"


def pid(lab: str, what: str) -> int | None:
    """The pid of the lab's `what` process if it runs."""
    try:
        p = int(_pid_file(lab, what).read_text().strip())
    except (OSError, ValueError):
        return None
    return p if process_alive(p) else None


def start(lab: str, what: str, argv: list[str], out: Path) -> int:
    """Start `argv` in its own session (it survives the command that started it); its output goes
    to `out`."""
    with open(out, "ab") as f:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                             start_new_session=True, close_fds=True, env=os.environ.copy())
    _pid_file(lab, what).write_text(str(p.pid))
    return p.pid


def stop(lab: str, what: str, timeout: float = 10) -> int | None:
    """SIGTERM the process (SIGKILL if it lingers); returns its pid, or None if none ran."""
    p = pid(lab, what)
    if p is None:
        _pid_file(lab, what).unlink(missing_ok=True)
        return None
    try:
        os.kill(p, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    while process_alive(p) and time.monotonic() < deadline:
        time.sleep(0.05)
    if process_alive(p):
        os.kill(p, signal.SIGKILL)
    try:   # reap it if we are its parent (a test that started it in-process)
        os.waitpid(p, os.WNOHANG)
    except ChildProcessError:
        pass
    _pid_file(lab, what).unlink(missing_ok=True)
    return p


def stop_all(lab: str) -> list[str]:
    """For `down`: stop every helper process of the lab. What could not be stopped is said, and
    `down` goes on (its process clean-up by lab directory catches it)."""
    out = []
    for f in sorted(lab_state.lab_dir(lab).glob("*.pid")):
        what = f.stem
        try:
            p = stop(lab, what, timeout=3)
        except OSError as e:
            log.warning("could not stop the %s of lab %s: %s", what, lab, e)
            out.append(f"{what}: not stopped ({e})")
            continue
        if p:
            out.append(f"{what} (pid {p})")
    return out
