"""The real pgbench against a lab: initialise, run for a duration or a count, parse what it says.

Why pgbench itself and not a Python loop: it is the reference everybody knows (its TPS is the
floor the ledger writer is compared with, bench/bench_ledger_vs_pgbench.py) and it produces WAL
at a high rate for lag experiments without costing the lab's Python process any CPU.

Latency percentiles come from pgbench's own per-transaction log (-l), which records every
transaction's latency in microseconds; the summary line only gives an average.
"""
from __future__ import annotations


import glob
import os
import re
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Callable

from lab.model.conninfo import node_dsn
from lab.cluster.context import Ctx
from lab.runtime import client_program
from lab.errors import InvalidInput, NodeFailed, RuntimeUnavailable
from lab.model.stats import percentile
from lab.cluster import sql

BUILTINS = ("tpcb-like", "simple-update", "select-only")
# the single-row insert of the ledger-vs-pgbench benchmark and of `pglab workload pgbench --insert`
INSERT_TABLE = "pglab_pgbench_insert"
INSERT_SCRIPT = (f"\\set id random(1, 2000000000)\n"
                 f"INSERT INTO {INSERT_TABLE} (client, seq) VALUES (:client_id, :id);\n")

_PROGRESS = re.compile(r"progress: ([\d.]+) s, ([\d.]+) tps, lat ([\d.]+|NaN) ms stddev ([\d.]+|NaN)(?:, (\d+) failed)?")


@dataclass(frozen=True)
class Latency:
    count: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    mean_ms: float | None


def summarize(latencies_s: list[float]) -> Latency:
    """Percentiles by nearest rank (no interpolation: every figure is a latency that happened)."""
    if not latencies_s:
        return Latency(0, None, None, None, None, None)
    xs = sorted(latencies_s)
    n = len(xs)

    return Latency(n, *(1000 * percentile(xs, p) for p in (50, 95, 99)), 1000 * xs[-1], 1000 * sum(xs) / n)


@dataclass(frozen=True)
class Progress:
    t: float
    tps: float
    latency_ms: float | None
    failed: int


@dataclass(frozen=True)
class PgbenchResult:
    clients: int
    jobs: int
    duration_s: float              # wall time of the run, measured here
    transactions: int
    failed: int
    tps: float                     # pgbench's own figure (without initial connection time)
    latency_avg_ms: float | None
    latency: Latency               # from the per-transaction log; count 0 when not logged
    progress: tuple[Progress, ...]
    script: str
    node: str
    stopped: bool = False          # ended early by us (stop event or overrun): figures from progress
    tx: tuple[tuple[float, float], ...] = ()   # (completion unix time, latency s) per transaction, if kept

    def acked_between(self, t0: float, t1: float) -> int:
        """Transactions whose COMMIT was acknowledged in [t0, t1) (needs keep_tx=True)."""
        return sum(1 for end, _ in self.tx if t0 <= end < t1)


def find_pgbench(ctx: Ctx | None = None) -> str:
    """The servers' own pgbench where the runtime has it, else any on this machine."""
    path = ctx.rt.client_program("pgbench") if ctx else client_program("pgbench")
    if path:
        return path
    raise RuntimeUnavailable("pgbench is not installed here",
                             "install the PostgreSQL client programs (Debian: apt-get install postgresql-contrib "
                             "or postgresql-15)")


def _dsn(ctx: Ctx, node: str, options: str | None = None) -> str:
    extra = {"options": options} if options else {}
    return node_dsn(ctx.state, node, application_name="pglab-pgbench", **extra)


def init(ctx: Ctx, *, scale: int = 1, node: str | None = None, timeout: float = 300) -> None:
    """pgbench -i: the pgbench_* tables at this scale factor (1 = 100,000 accounts)."""
    node = node or ctx.state.primary
    p = subprocess.run([find_pgbench(ctx), "-i", "-q", "-s", str(scale), _dsn(ctx, node)],
                       capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise NodeFailed(f"pgbench -i on {node} failed", details=p.stderr[-1500:])


def prepare_insert_table(ctx: Ctx, node: str | None = None) -> None:
    sql.query(ctx.state, node or ctx.state.primary,
              f"CREATE TABLE IF NOT EXISTS {INSERT_TABLE} (id bigserial PRIMARY KEY, client int NOT NULL, "
              f"seq bigint NOT NULL, "
              f"at timestamptz NOT NULL DEFAULT now())")


def run(ctx: Ctx, *, clients: int = 4, duration: float | None = 10, transactions: int | None = None,
        builtin: str = "tpcb-like", script: str | None = None, insert: bool = False, do_init: bool = True,
        scale: int = 1, node: str | None = None, jobs: int | None = None, log_latencies: bool = True,
        on_progress: Callable[[Progress], None] | None = None, extra_args: list[str] | None = None,
        stop: threading.Event | None = None, keep_tx: bool = False, options: str | None = None) -> PgbenchResult:
    """Run pgbench against `node` (default: the primary) for `duration` seconds or `transactions`
    per client. `insert=True` runs the single-row INSERT script; `script` runs your own.
    `options` are server options for every session, e.g. '-c synchronous_commit=remote_apply'."""
    if (duration is None) == (transactions is None):
        raise InvalidInput("give a duration or a transaction count, not both", "e.g. --duration 10")
    if builtin not in BUILTINS:
        raise InvalidInput(f"unknown pgbench script {builtin!r}", f"use one of {', '.join(BUILTINS)}")
    if clients < 1:
        raise InvalidInput("--clients must be at least 1", "e.g. --clients 4")
    node = node or ctx.state.primary
    jobs = jobs or max(1, min(clients, os.cpu_count() or 1))
    with tempfile.TemporaryDirectory(prefix="pglab-pgbench-") as tmp:
        args = [find_pgbench(ctx), "-n", "-c", str(clients), "-j", str(jobs), "-P", "1"]
        if insert or script:
            path = os.path.join(tmp, "script.sql")
            with open(path, "w") as f:
                f.write(script or INSERT_SCRIPT)
            args += ["-f", path]
            name = "insert" if insert else "custom"
            if insert:
                prepare_insert_table(ctx, node)
        else:
            if do_init:
                init(ctx, scale=scale, node=node)
            args += ["-b", builtin]
            name = builtin
        args += ["-T", str(max(1, int(round(duration))))] if duration is not None else ["-t", str(transactions)]
        if log_latencies:
            args += ["-l", f"--log-prefix={tmp}/tx"]
        args += list(extra_args or []) + [_dsn(ctx, node, options)]
        t0 = time.monotonic()
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp)
        progress: list[Progress] = []
        err_lines: list[str] = []

        def read_stderr() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                err_lines.append(line)
                m = _PROGRESS.search(line)
                if m:
                    pr = Progress(float(m.group(1)), float(m.group(2)),
                                  None if m.group(3) == "NaN" else float(m.group(3)), int(m.group(5) or 0))
                    progress.append(pr)
                    if on_progress:
                        on_progress(pr)
        reader = threading.Thread(target=read_stderr, daemon=True)
        reader.start()
        # bounded: a run that blocks (e.g. commits waiting for a synchronous standby that is gone)
        # is stopped by us after its time plus a grace period, or when `stop` is set
        limit = (duration or 0) + (300 if transactions else 30)
        stopped = False
        while proc.poll() is None:
            if time.monotonic() - t0 > limit or (stop is not None and stop.is_set()):
                stopped = True
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                break
            time.sleep(0.05)
        out = proc.stdout.read() if proc.stdout else ""
        proc.wait()
        reader.join(5)
        wall = time.monotonic() - t0
        if not stopped and proc.returncode not in (0, 2) and "tps =" not in out:
            raise NodeFailed(f"pgbench failed (exit {proc.returncode})", details=("".join(err_lines) + out)[-1500:])
        tx = _read_log(tmp) if (log_latencies or keep_tx) else []
    done = _int(out, r"actually processed: (\d+)") or len(tx)
    tps = _float(out, r"tps = ([\d.]+) \(without initial connection time\)")
    if tps is None:   # stopped early: no summary from pgbench, count what its log says
        tps = len(tx) / wall if tx else (sum(p.tps for p in progress) / len(progress) if progress else 0.0)
    return PgbenchResult(clients=clients, jobs=jobs, duration_s=wall, transactions=done,
                         failed=_int(out, r"number of failed transactions: (\d+)"), tps=tps,
                         latency_avg_ms=_float(out, r"latency average = ([\d.]+) ms"),
                         latency=summarize([lat for _, lat in tx]), progress=tuple(progress), script=name, node=node,
                         stopped=stopped, tx=tuple(tx) if keep_tx else ())


def _read_log(directory: str) -> list[tuple[float, float]]:
    """Per-transaction log lines: client_id tx_no latency_us script_no end_epoch end_us (PG 15 writes
    'failed' or 'skipped' instead of a latency for those). Returns (completion time, latency s)."""
    out: list[tuple[float, float]] = []
    for f in glob.glob(os.path.join(directory, "tx.*")):
        with open(f) as fh:
            for line in fh:
                parts = line.split()
                if len(parts) >= 6 and parts[2].isdigit():
                    out.append((int(parts[4]) + int(parts[5]) / 1e6, int(parts[2]) / 1e6))
    out.sort()
    return out


def _int(text: str, pattern: str) -> int:
    m = re.search(pattern, text)
    return int(m.group(1)) if m else 0


def _float(text: str, pattern: str) -> float | None:
    m = re.search(pattern, text)
    return float(m.group(1)) if m else None
