"""pytest plugin: a file of 20 tests that each write and read through a module-scoped cluster,
against one bring-up and tear-down of the same lab (target: <= 2 s beyond it).

    python bench/bench_plugin.py [--runtime local] [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TESTS = '''
import pytest

@pytest.fixture(scope="module", autouse=True)
def schema(pglab_cluster):
    with pglab_cluster.connect() as c:
        c.execute("CREATE TABLE IF NOT EXISTS notes (id serial PRIMARY KEY, body text)")

@pytest.mark.parametrize("i", range(20))
def test_write_then_read(pglab, i):
    with pglab.connect() as c:
        c.execute("INSERT INTO notes (body) VALUES (%s)", (f"note {i}",))
    pglab.wait_caught_up()
    with pglab.connect("s1") as c:
        assert c.execute("SELECT count(*) FROM notes").fetchone()[0] == 1
'''


def timed(argv: list[str], cwd: str | None = None) -> float:
    t0 = time.monotonic()
    subprocess.run(argv, check=True, capture_output=True, cwd=cwd)
    return time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runtime", default="local")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    d = tempfile.mkdtemp(prefix="pglab-bench-plugin-")
    Path(d, "test_twenty.py").write_text(TESTS)
    py = sys.executable
    floors, suites = [], []
    for i in range(args.repeat):
        name = f"bench-plugin-{os.getpid()}-{i}"
        # one bring-up and tear-down, plus an empty pytest session: what 20 tests may not exceed by 2 s
        t_up = timed([py, "-m", "lab", "up", "--name", name, "--runtime", args.runtime])
        t_down = timed([py, "-m", "lab", "down", "--name", name])
        t_empty = timed([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--co", d])
        floors.append(t_up + t_down + t_empty)
        suites.append(timed([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--pglab-runtime={args.runtime}", d]))
    med = statistics.median
    print(f"runtime {args.runtime}, {args.repeat} runs")
    print(f"one bring-up + tear-down + pytest start: median {med(floors):.2f} s")
    print(f"20 tests on a module-scoped cluster:      median {med(suites):.2f} s")
    print(f"beyond one bring-up: {med(suites) - med(floors):.2f} s (target <= 2 s); "
          f"{(med(suites) - med(floors)) / 20 * 1000:.0f} ms per test")


if __name__ == "__main__":
    main()
