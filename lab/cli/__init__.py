"""The `pglab` command: a thin layer over the `lab` API.

Each command parses its options, calls one API function and renders the result (a rich table, or
JSON with --json). Command modules register themselves on the root app (`lab.cli.root`).

Start-up is part of the interface: `pglab status` and `pglab dsn` must answer in a fraction of a
second. So `main()` imports only the module that defines the command being run (Typer builds a
parameter converter for every option of every command it knows), and command modules import the
library inside their functions. `lab.cli.app` is the whole command tree (for tests and --help).
"""
from __future__ import annotations

import importlib
import os
import signal
import sys
from typing import Any

#: command (first word after `pglab`) -> the modules that define it; the order is --help's order
COMMANDS: dict[str, tuple[str, ...]] = {
    "up": ("core",), "down": ("core",), "ls": ("core",), "status": ("core",), "dsn": ("core",), "psql": ("core",),
    "versions": ("core",),
    "fault": ("faults",), "heal": ("faults",),
    "scenario": ("scenario",),
    "image": ("images",), "compose": ("images",), "prune": ("images",),
    "bench": ("bench", "benchha"), "lag": ("lagcmd",), "node": ("node",), "sync": ("node",), "workload": ("workload",),
    "lab": ("consistency",),
    "promote": ("failover",), "switchover": ("failover",), "failover": ("failover",), "rejoin": ("failover",),
    "monitor": ("failover",), "drill": ("failover", "node"),
    "learn": ("learn",), "top": ("top",), "chaos": ("chaos",),
}
MODULES = tuple(dict.fromkeys(m for mods in COMMANDS.values() for m in mods))


def load(modules: tuple[str, ...] = MODULES) -> Any:
    """Import command modules (each registers its commands on the root app); the root app."""
    for m in modules:
        importlib.import_module(f"lab.cli.{m}")
    return importlib.import_module("lab.cli.root").app


def __getattr__(name: str) -> Any:
    if name == "app":
        return load()
    raise AttributeError(f"module 'lab.cli' has no attribute {name!r}")


#: commands that only look: they hold no file, process or lab to finish when they end
LOOK_ONLY = frozenset({"status", "dsn", "ls", "lag", "versions"})


def _terminated(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> None:
    # `kill <pid>` (a CI step's timeout, a supervisor) cleans up as Ctrl-C does. It is also the
    # only way to interrupt pglab run as a background job of a script, which starts with SIGINT
    # ignored. A command that needs SIGTERM for itself (the foreground monitor) sets its own.
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminated)
    word = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
    try:
        code = load(COMMANDS.get(word, MODULES))()
    except SystemExit as e:
        code = e.code
    looked_only = word in LOOK_ONLY and not {"record", "plot", "--watch", "-w"} & set(sys.argv[1:])
    if looked_only:
        # The interpreter's own teardown (collecting every module, joining the status probes'
        # pool) took about 30 ms of `pglab status`'s 0.35 s here; a command that only looked has
        # nothing to finalise once its output is out.
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (BrokenPipeError, ValueError):   # a reader that went away (`| head`), a closed stream
                pass
        os._exit(code if isinstance(code, int) else (0 if code is None else 1))
    sys.exit(code)
