"""Start-up of the commands that only look: `pglab dsn`, `status`, `ls`, `lag` vs their floor.

The floor of a command is what it cannot avoid: starting Python (`python3 -c pass`) and, for the
commands that ask the servers, one `psql -c 'select 1'` per node, run in parallel as `status` does.
Both are timed in the same run, alternately; the script prints medians and ratios.
Targets (issue 11): `pglab dsn` <= 0.25 s, `pglab status` <= 0.35 s.

    python bench/bench_cli.py [--repeat 15] [--runtime local]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# A user's environment caches bytecode; this machine sets PYTHONDONTWRITEBYTECODE=1, which would
# make every start compile the package again. Time pglab as users run it.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
PGLAB = str(Path(sys.executable).with_name("pglab"))


def timed(argv: list[str]) -> float:
    t0 = time.monotonic()
    subprocess.run(argv, check=True, capture_output=True, env=ENV)
    return time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--runtime", default="local")
    args = ap.parse_args()
    name = f"bench-cli-{os.getpid()}"
    subprocess.run([PGLAB, "up", "--name", name, "--runtime", args.runtime], check=True, capture_output=True,
                   env=ENV)
    try:
        from lab import Lab
        lab = Lab.open(name)
        psql = lab.client_program("psql")
        dsns = [lab.dsn(n) for n in lab.nodes]

        def psql_all() -> None:
            with ThreadPoolExecutor(len(dsns)) as ex:
                list(ex.map(lambda d: subprocess.run([psql, d, "-Atc", "select 1"], check=True, capture_output=True),
                            dsns))
        for _ in range(2):   # warm the bytecode and page caches
            timed([PGLAB, "status", "--name", name])
        times: dict[str, list[float]] = {k: [] for k in ("python", "psql", "dsn", "status", "ls", "lag")}
        for _ in range(args.repeat):
            times["python"].append(timed([sys.executable, "-c", "pass"]))
            t0 = time.monotonic()
            psql_all()
            times["psql"].append(time.monotonic() - t0)
            times["dsn"].append(timed([PGLAB, "dsn", "--name", name]))
            times["status"].append(timed([PGLAB, "status", "--name", name]))
            times["ls"].append(timed([PGLAB, "ls"]))
            times["lag"].append(timed([PGLAB, "lag", "--name", name]))
    finally:
        subprocess.run([PGLAB, "down", "--name", name], capture_output=True, env=ENV)
    med = {k: statistics.median(v) for k, v in times.items()}
    floor_look = med["python"]
    floor_ask = med["python"] + med["psql"]
    print(f"runs: {args.repeat}, runtime {args.runtime}, load average {os.getloadavg()[0]:.1f}")
    print(f"floor: python3 -c pass                 median {med['python']:.3f} s")
    print(f"floor: + psql -c 'select 1' per node   median {floor_ask:.3f} s (psql alone {med['psql']:.3f} s)")
    for cmd, floor, target in (("dsn", floor_look, 0.25), ("ls", floor_look, None),
                               ("status", floor_ask, 0.35), ("lag", floor_ask, None)):
        v = times[cmd]
        print(f"pglab {cmd:7} median {med[cmd]:.3f} s [{min(v):.3f}-{max(v):.3f}]  {med[cmd] / floor:.2f}x its floor"
              + (f"  (target <= {target:.2f} s: {'met' if med[cmd] <= target else 'NOT met'})" if target else ""))


if __name__ == "__main__":
    main()
