"""Bring-up of a primary with two streaming standbys: the raw commands vs `pglab up` (local runtime).

Both are timed in the same run, alternately, several times, on the same PostgreSQL; the script
prints medians and ratios: pglab up against the floor (target <= 0.5x), `pglab status`, and
`pglab down` (target <= 0.5 s). The first `pglab up` of a server build makes its template
(initdb once); it is run and reported separately, before the timed rounds.

    python bench/bench_up.py [--repeat 5] [--pg 18]
"""
from __future__ import annotations

import argparse
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from lab.runtime import servers  # noqa: E402
from lab.runtime.local import pick_port  # noqa: E402

BIN = ""   # set in main(): the same installation pglab uses, readable by the server user


def as_pg(argv: list[str], **kw) -> subprocess.CompletedProcess:
    """What a person types as root: the server programs run as the postgres user."""
    extra = {}
    if os.geteuid() == 0:
        u = pwd.getpwnam("postgres")
        extra = {"user": u.pw_uid, "group": u.pw_gid, "extra_groups": []}
    return subprocess.run([os.path.join(BIN, argv[0]), *argv[1:]], check=True, capture_output=True, text=True,
                          cwd="/tmp", **extra, **kw)


def floor_once() -> float:
    base = tempfile.mkdtemp(prefix="pglab-floor-")
    os.chmod(base, 0o777)
    ports = [pick_port(set()) for _ in range(3)]
    dirs = [f"{base}/{n}" for n in ("p1", "s1", "s2")]
    t0 = time.monotonic()
    try:
        as_pg(["initdb", "-D", dirs[0], "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"])
        with open(f"{dirs[0]}/postgresql.auto.conf", "a") as f:
            f.write(f"port = {ports[0]}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{base}'\n"
                    "wal_log_hints = on\n")
        as_pg(["pg_ctl", "-D", dirs[0], "-l", f"{base}/p1.log", "-w", "start"])

        def clone(i: int) -> None:
            as_pg(["pg_basebackup", "-D", dirs[i], "-h", "127.0.0.1", "-p", str(ports[0]), "-U", "postgres",
                   "-X", "stream", "-c", "fast", "-C", "-S", f"s{i}", "-R"])
            with open(f"{dirs[i]}/postgresql.auto.conf", "a") as f:
                f.write(f"port = {ports[i]}\nprimary_slot_name = 's{i}'\n")
            as_pg(["pg_ctl", "-D", dirs[i], "-l", f"{base}/s{i}.log", "-w", "start"])

        with ThreadPoolExecutor(2) as ex:
            list(ex.map(clone, [1, 2]))
        while True:
            out = as_pg(["psql", "-h", "127.0.0.1", "-p", str(ports[0]), "-U", "postgres", "-Atc",
                         "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"]).stdout
            if out.strip() == "2":
                break
            time.sleep(0.05)
        return time.monotonic() - t0
    finally:
        for d in dirs:
            if os.path.exists(f"{d}/postmaster.pid"):
                subprocess.run([os.path.join(BIN, "pg_ctl"), "-D", d, "-m", "immediate", "stop"],
                               capture_output=True, **({"user": "postgres"} if os.geteuid() == 0 else {}))
        shutil.rmtree(base, ignore_errors=True)


def floor_with_retry(tries: int = 3) -> float:
    """The raw commands fail now and then on a loaded machine (pg_basebackup); say why and retry."""
    for attempt in range(1, tries + 1):
        try:
            return floor_once()
        except subprocess.CalledProcessError as e:
            print(f"floor attempt {attempt} failed: {' '.join(e.cmd[:1])}: {(e.stderr or '').strip()[-300:]}",
                  file=sys.stderr)
    raise SystemExit("the raw commands failed repeatedly; no floor to compare with")


# This machine sets PYTHONDONTWRITEBYTECODE=1, which makes every CLI start compile the whole
# package again; a user's environment caches bytecode. Time pglab as users run it.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(argv: list[str]) -> float:
    t0 = time.monotonic()
    subprocess.run(argv, check=True, capture_output=True, env=ENV)
    return time.monotonic() - t0


def main() -> None:
    global BIN
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--pg", type=int, default=None, help="PostgreSQL major (default: pglab's default)")
    args = ap.parse_args()
    user = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
    server = servers.for_user(servers.find(args.pg), user)
    BIN = server.bindir
    pglab = [sys.executable, "-m", "lab"]
    pg = ["--pg", str(server.major)]
    subprocess.run(pglab + ["--help"], capture_output=True, env=ENV)   # warm the bytecode cache
    first = f"bench-up-{os.getpid()}-first"
    first_up = timed(pglab + ["up", "--name", first, "--runtime", "local", *pg])   # makes the template if missing
    timed(pglab + ["down", "--name", first])
    floors, ups, statuses, downs, starts = [], [], [], [], []
    for i in range(args.repeat):
        floors.append(floor_with_retry())
        starts.append(timed(pglab + ["down", "--help"]))   # the CLI's own start, for comparison
        name = f"bench-up-{os.getpid()}-{i}"
        ups.append(timed(pglab + ["up", "--name", name, "--runtime", "local", *pg]))
        statuses.append(timed(pglab + ["status", "--name", name]))
        downs.append(timed(pglab + ["down", "--name", name]))
    med = statistics.median
    print(f"runs: {args.repeat}  (PostgreSQL {server.version}, {server.source}, programs in {BIN})")
    print(f"floor (initdb, start, 2 parallel pg_basebackup -C -S, start, streaming): median {med(floors):.2f} s  "
          f"[{min(floors):.2f}-{max(floors):.2f}]")
    print(f"pglab up --runtime local (same topology, CLI process included):       median {med(ups):.2f} s  "
          f"[{min(ups):.2f}-{max(ups):.2f}]")
    print(f"first pglab up of this run (template made if it was missing):        {first_up:.2f} s")
    print(f"ratio up/floor: {med(ups) / med(floors):.2f}x  (target <= 0.5x)")
    print(f"pglab status: median {med(statuses):.2f} s, {med(statuses) / med(floors):.2f}x the floor")
    print(f"pglab down:   median {med(downs):.2f} s, {med(downs) / med(floors):.2f}x the floor (target <= 0.5 s)")
    print(f"pglab down --help (the CLI starting, no work): median {med(starts):.2f} s; "
          f"down's own work about {med(downs) - med(starts):.2f} s")


if __name__ == "__main__":
    main()
