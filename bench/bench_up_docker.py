"""Bring-up of a primary with two streaming standbys in Docker: the raw floor vs `pglab up --runtime docker`.

The floor is what a person would do by hand with the Engine API: a network and three containers
from the same image, `initdb` + start in the first, `pg_basebackup -S <slot> -R` + start in the
other two (in parallel), until the primary sees both standbys streaming. Both are timed in the
same run, alternately, several times; the script prints medians, the ratio (target <= 1.0x, issue 11:
the lab copies a cached cluster template instead of initdb + pg_basebackup)
and `pglab down` (target <= 2 s).

    python bench/bench_up_docker.py [--repeat 5] [--image pglab-postgres:15]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from lab.runtime.images import usable_image  # noqa: E402
from lab.runtime.docker import client  # noqa: E402

DATA = "/var/lib/postgresql/floor"


def sh(c, script: str, user: str = "postgres") -> str:
    rc, out = c.exec_run(["sh", "-c", script], user=user)
    if rc != 0:
        raise RuntimeError(f"{c.name}: exit {rc}: {out.decode(errors='replace')[-500:]}")
    return out.decode()


def floor_once(image: str, tag: str) -> float:
    dc = client()
    label = {"pglab.bench": tag}
    t0 = time.monotonic()
    net = dc.networks.create(f"floor-{tag}", driver="bridge", labels=label)
    try:
        def run(node: str):
            return dc.containers.run(image, name=f"floor-{tag}-{node}", entrypoint=["sleep", "infinity"], init=True,
                                     detach=True, network=net.name, labels=label,
                                     ports={"5432/tcp": ("127.0.0.1", None)})
        with ThreadPoolExecutor(3) as ex:
            p1, s1, s2 = ex.map(run, ["p1", "s1", "s2"])
        sh(p1, f"initdb -D {DATA} -U postgres --auth=trust -E UTF8 --locale=C >/dev/null && "
               f"echo 'host replication all samenet trust' >> {DATA}/pg_hba.conf && "
               f"printf \"listen_addresses = '*'\\nunix_socket_directories = '/tmp'\\n\" >> {DATA}/postgresql.auto.conf && "
               f"pg_ctl -D {DATA} -l /tmp/log -w start >/dev/null && "
               "psql -h /tmp -U postgres -Atc \"SELECT pg_create_physical_replication_slot(s, true) "
               "FROM unnest(ARRAY['s1','s2']) s\" >/dev/null")

        def clone(c, slot: str) -> None:
            sh(c, f"pg_basebackup -D {DATA} -h floor-{tag}-p1 -U postgres -X stream -c fast -S {slot} -R && "
                  f"echo \"unix_socket_directories = '/tmp'\" >> {DATA}/postgresql.auto.conf && "
                  f"pg_ctl -D {DATA} -l /tmp/log -w start >/dev/null")
        with ThreadPoolExecutor(2) as ex:
            list(ex.map(clone, [s1, s2], ["s1", "s2"]))
        while sh(p1, "psql -h /tmp -U postgres -Atc \"SELECT count(*) FROM pg_stat_replication "
                     "WHERE state = 'streaming'\"").strip() != "2":
            time.sleep(0.05)
        return time.monotonic() - t0
    finally:
        for c in dc.containers.list(all=True, filters={"label": f"pglab.bench={tag}"}):
            c.remove(force=True)
        net.remove()


def timed(argv: list[str]) -> float:
    t0 = time.monotonic()
    p = subprocess.run(argv, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed:\n{p.stdout}{p.stderr}")
    return time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--image", default=None, help="default: the image pglab picks (pglab-postgres:15, else postgres:15)")
    args = ap.parse_args()
    image = args.image or usable_image(15)
    if not image:
        sys.exit("no PostgreSQL image: pglab image build --pg 15")
    pglab = [sys.executable, "-m", "lab"]
    floors, ups, downs = [], [], []
    for i in range(args.repeat):
        tag = f"{os.getpid()}-{i}"
        floors.append(floor_once(image, tag))
        name = f"bench-dk-{tag}"
        ups.append(timed(pglab + ["up", "--name", name, "--runtime", "docker"]))
        downs.append(timed(pglab + ["down", "--name", name]))
    med = statistics.median
    print(f"runs: {args.repeat}  (image {image}, {os.cpu_count()} CPUs)")
    print(f"floor (3 containers, initdb, start, 2 parallel pg_basebackup -S, start, streaming): "
          f"median {med(floors):.2f} s  [{min(floors):.2f}-{max(floors):.2f}]")
    print(f"pglab up --runtime docker (same topology, CLI process included):                  "
          f"median {med(ups):.2f} s  [{min(ups):.2f}-{max(ups):.2f}]")
    print(f"ratio up/floor: {med(ups) / med(floors):.2f}x  (target <= 1.0x)")
    print(f"pglab down (3 containers, 3 volumes, network): median {med(downs):.2f} s  "
          f"[{min(downs):.2f}-{max(downs):.2f}]  (target <= 2 s)")


if __name__ == "__main__":
    main()
