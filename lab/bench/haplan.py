"""What `pglab bench ha` will run, decided before any lab starts: the options, the labs (one per
manager and profile), and which cells a manager cannot do, with why.

Pure: no lab, no process; the options are checked here so that bad input is one line and exit 2
with nothing started.
"""
from __future__ import annotations

from dataclasses import dataclass

from lab.errors import InvalidInput
from lab.model.haspec import MANAGERS

PROFILES = ("default", "fast")
FAULTS = ("kill", "kill-postgres", "stop", "partition", "isolate", "pause-short", "pause-long")
MODES = ("sync", "async")
RUNTIMES = ("local", "docker")
#: the drill's own fault for each bench fault (pause-short is the bench's own drill; isolate has none)
DRILL_FAULT = {"kill": "kill", "kill-postgres": "kill-postgres", "stop": "stop", "partition": "partition",
               "pause-long": "pause"}
#: the managers whose timing a profile sets; pglab's monitor (and `none`'s drill operator) runs with
#: the drill's interval and timeout whatever the profile, so it has one lab, profile "-"
PROFILED = ("patroni", "pg_auto_failover", "repmgr")
#: faults after which the manager is expected to restart the server in place, not fail over
NO_FAILOVER_EXPECTED = {"patroni": {"kill-postgres"}, "pg_auto_failover": {"kill-postgres"}}
MAX_REPEAT = 20


@dataclass(frozen=True)
class BenchOptions:
    """Unset, every manager, profile, fault and mode: the whole table, which is what the bench is
    for (57 minutes at --repeat 3 here); narrow it with the options for a quicker look."""
    managers: tuple[str, ...] = MANAGERS
    profiles: tuple[str, ...] = PROFILES
    faults: tuple[str, ...] = FAULTS
    modes: tuple[str, ...] = MODES
    repeat: int = 3
    runtime: str = "local"
    # labs of timer-bound managers side by side: 3 ran the whole table with 0 errors on 2 cores
    jobs: int = 3


MAX_JOBS = 4
#: managers whose failover takes a fraction of a second of CPU-bound work: their labs never share the
#: machine with another of the bench's labs (--jobs applies to the others, bound by their timers)
SOLO = ("none", "pglab")


@dataclass(frozen=True)
class Setup:
    """One lab of the bench: a manager with a profile, and how to bring it up."""
    manager: str
    profile: str                 # "-" for managers without profiles
    up: dict                     # Lab.up's keyword arguments (without name)

    @property
    def label(self) -> str:
        return self.manager if self.profile == "-" else f"{self.manager}-{self.profile}"


def parse_list(text: str, allowed: tuple[str, ...], option: str) -> tuple[str, ...]:
    """A comma-separated option: every value known, at least one, duplicates dropped, order kept."""
    vals = [v.strip() for v in text.split(",") if v.strip()]
    if not vals:
        raise InvalidInput(f"{option} is empty", f"use a comma-separated list of: {','.join(allowed)}")
    bad = [v for v in vals if v not in allowed]
    if bad:
        raise InvalidInput(f"{option}: unknown value {bad[0]!r}", f"use a comma-separated list of: {','.join(allowed)}")
    return tuple(dict.fromkeys(vals))


def options(*, managers: str, profiles: str, faults: str, modes: str, repeat: int, runtime: str,
            jobs: int = BenchOptions.jobs) -> BenchOptions:
    if not 1 <= repeat <= MAX_REPEAT:
        raise InvalidInput(f"--repeat {repeat} is out of range", f"use 1 to {MAX_REPEAT}")
    if not 1 <= jobs <= MAX_JOBS:
        raise InvalidInput(f"--jobs {jobs} is out of range", f"use 1 to {MAX_JOBS}")
    if runtime not in RUNTIMES:
        raise InvalidInput(f"--runtime: unknown runtime {runtime!r}", f"use one of: {', '.join(RUNTIMES)}")
    return BenchOptions(parse_list(managers, MANAGERS, "--managers"), parse_list(profiles, PROFILES, "--profiles"),
                        parse_list(faults, FAULTS, "--faults"), parse_list(modes, MODES, "--modes"), repeat, runtime,
                        jobs)


def setups(opts: BenchOptions, *, root: bool) -> list[Setup]:
    """The labs to bring up, in order. `root`: per-node network namespaces are possible (local runtime)."""
    where: dict = {"runtime": opts.runtime}
    if opts.runtime == "local":
        where["netns"] = root
    out = []
    for m in opts.managers:
        kw = {**where, "ha": m}
        if m in ("pg_auto_failover", "repmgr"):
            kw["pg"] = 15            # Debian packages them for PostgreSQL 15 only
        if m == "pg_auto_failover" and opts.runtime == "local":
            kw["netns"] = False      # pg_auto_failover's labs listen on 127.0.0.1 (no per-node namespaces)
        for p in (opts.profiles if m in PROFILED else ("-",)):
            out.append(Setup(m, p, {**kw, **({"ha_profile": p} if p != "-" else {})}))
    return out


def unsupported(setup: Setup, fault: str, mode: str) -> str | None:
    """Why this manager cannot do this cell (as its drill or its lab would refuse it), else None.
    The drill's own refusal (lab.errors.Unsupported) is caught at run time too: this only avoids
    starting what is known to be refused."""
    m, rt = setup.manager, setup.up.get("runtime")
    if fault == "isolate":
        return ("the failover drill has no isolate fault: clients still reach an isolated primary, which makes "
                "it a split-brain test (pglab drill split-brain), not a failover")
    if mode == "async" and fault == "pause-short":
        return "pause-short counts false failovers; it runs in sync mode only"
    if fault == "partition":
        if m == "pg_auto_failover" and rt == "local":
            return ("partition needs per-node network namespaces, which a pg_auto_failover lab on the local runtime "
                    "does not use (on Docker it cuts the node's container off)")
        if rt == "local" and not setup.up.get("netns"):
            return "partition needs per-node network namespaces: run as root (local runtime) or on Docker"
    return None
