"""Recording every standby's lag over time (bytes and seconds; write, flush, replay) at up to 10 Hz.

Why everything comes from ONE connection, to the primary: pg_stat_replication is the standbys'
own feedback (their write/flush/replay positions), and pg_replication_slots still knows where a
standby that went away stopped. Asking the primary alone therefore (1) adds no connection or
query load on the standbys being measured, and (2) never hangs on a standby that is paused or
partitioned. The one statement is prepared once (psycopg prepare=True) and runs once per tick.

Seconds of lag are computed by the recorder, the way PostgreSQL's own lag tracker does it: we
remember when the primary's WAL reached each position (one (time, LSN) pair per tick) and a
standby at position R lags by "how long ago the primary was at R". PostgreSQL's replay_lag stops
moving when a standby stops reporting (its last value is repeated), which hides exactly the
stalls we want to see; its value is kept beside ours as pg_replay_lag_s.
"""
from __future__ import annotations

import bisect
import csv
import json
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import psycopg

from lab.model import lsn as lsnmod
from lab.model import state as lab_state
from lab.cluster.context import Ctx
from lab.model.conninfo import role_dsn
from lab.errors import InvalidInput
from lab.model.syncspec import slot_name

MAX_HZ = 10.0
# A streaming standby replies within milliseconds of receiving WAL, and at least every
# wal_receiver_status_interval (1 s) when idle. Lag is taken "as of its last reply" (so an idle,
# caught-up standby doesn't seem to fall behind between replies), unless WAL it has not even
# written is waiting and its last reply is older than this: then it is stalled, count until now.
STALE_REPLY_S = 0.3

_SAMPLE_SQL = """
SELECT pg_current_wal_lsn()::text,
       (SELECT json_agg(json_build_array(application_name, state, sync_state, write_lsn::text,
                                         flush_lsn::text, replay_lsn::text,
                                         extract(epoch FROM replay_lag)::float8,
                                         extract(epoch FROM reply_time)::float8))
        FROM pg_stat_replication),
       (SELECT json_agg(json_build_array(slot_name, restart_lsn::text))
        FROM pg_replication_slots WHERE slot_type = 'physical')
"""

FIELDS = ("t", "node", "connected", "sync_state", "write_lag_bytes", "flush_lag_bytes", "replay_lag_bytes",
          "write_lag_s", "flush_lag_s", "replay_lag_s", "pg_replay_lag_s")


@dataclass(frozen=True)
class LagSample:
    t: float                      # unix time of the sample (this machine's clock)
    node: str
    connected: bool               # streaming from the primary at that moment
    sync_state: str | None
    write_lag_bytes: int | None
    flush_lag_bytes: int | None
    replay_lag_bytes: int | None
    write_lag_s: float | None
    flush_lag_s: float | None
    replay_lag_s: float | None
    pg_replay_lag_s: float | None = None   # PostgreSQL's own figure, for comparison


@dataclass(frozen=True)
class Overhead:
    samples: int
    errors: int                   # ticks with no answer from the primary (failover, paused primary)
    achieved_hz: float
    sample_ms_mean: float         # wall time of one sample (the query round trip and parsing)
    sample_ms_max: float
    cpu_percent: float            # CPU of the sampling thread, as % of one core
    connections: int = 1          # connections opened to the lab (reconnects count)


@dataclass(frozen=True)
class LagRecording:
    lab: str
    interval: float
    started: float
    ended: float
    standbys: tuple[str, ...]
    samples: tuple[LagSample, ...]
    events: tuple[dict, ...]      # the lab's timeline events within the recording (faults, failovers)
    overhead: Overhead

    def series(self, node: str) -> list[LagSample]:
        return [s for s in self.samples if s.node == node]

    def max(self, node: str, what: str = "replay_lag_bytes") -> float | None:
        vals = [getattr(s, what) for s in self.series(node) if getattr(s, what) is not None]
        return max(vals) if vals else None

    def to_dict(self) -> dict:
        return {"lab": self.lab, "interval": self.interval, "started": self.started, "ended": self.ended,
                "standbys": list(self.standbys), "overhead": asdict(self.overhead),
                "events": list(self.events), "samples": [asdict(s) for s in self.samples]}


class _Tracker:
    """When did the primary's WAL reach a position? (time, LSN) pairs, one per tick."""

    def __init__(self) -> None:
        self.ts: list[float] = []
        self.lsns: list[int] = []

    def add(self, t: float, pos: int) -> None:
        if self.lsns and pos < self.lsns[-1]:
            pos = self.lsns[-1]   # a new timeline may restart lower on another node: stay monotonic
        self.ts.append(t)
        self.lsns.append(pos)

    def reached(self, pos: int) -> float | None:
        """The (interpolated) time the primary's WAL first reached pos; None if it has not yet."""
        i = bisect.bisect_left(self.lsns, pos)
        if i >= len(self.lsns):
            return None
        if i == 0:
            return self.ts[0]     # before we started: at least this long ago
        p0, p1, t0, t1 = self.lsns[i - 1], self.lsns[i], self.ts[i - 1], self.ts[i]
        return t0 + (t1 - t0) * (pos - p0) / (p1 - p0) if p1 > p0 else t1


def _lag_s(tracker: _Tracker, head: int, pos: int | None, ref: float) -> float | None:
    if pos is None:
        return None
    if pos >= head:
        return 0.0
    t = tracker.reached(pos)
    return None if t is None else max(0.0, ref - t)


class LagRecorder:
    """Samples in a background thread until stop() or the duration ends:

        with LagRecorder(ctx, interval=0.1) as rec:
            ...  # run a workload, inject faults
        recording = rec.result()
    """

    def __init__(self, ctx: Ctx, *, interval: float = 0.1, duration: float | None = None,
                 on_sample: Callable[[list[LagSample]], None] | None = None):
        if interval < 1 / MAX_HZ - 1e-9:
            raise InvalidInput(f"--interval {interval} is below {1 / MAX_HZ:.1f}s",
                               f"sample at most {MAX_HZ:.0f} times per second")
        self.ctx = ctx
        self.interval = interval
        self.duration = duration
        self.on_sample = on_sample
        self.standbys = ctx.state.standbys
        self._nodes = {f"{a.host}:{a.port}": n for n, a in ctx.state.nodes.items()}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._samples: list[LagSample] = []
        self._times: list[float] = []
        self._errors = 0
        self._conns = 0
        self._cpu = 0.0
        self.started = self.ended = 0.0

    # the primary, whoever it is now: a failover during the recording moves the connection along
    def _dsn(self) -> str:
        return role_dsn(self.ctx.state, "primary")

    def _connect(self) -> psycopg.Connection:
        self._conns += 1
        conn = psycopg.connect(self._dsn() + " application_name=pglab-lagrec", autocommit=True)
        return conn

    def sample_once(self, conn: psycopg.Connection, tracker: _Tracker) -> list[LagSample]:
        asked = time.time()
        head_s, repl, slots = conn.execute(_SAMPLE_SQL, prepare=True).fetchone()
        now = time.time()
        self._saw_primary(conn, head_s, asked)
        head = lsnmod.parse(head_s) or 0
        tracker.add(now, head)
        by_name = {r[0]: r for r in (repl or [])}
        restart = {s[0]: s[1] for s in (slots or [])}
        out = []
        for node in self.standbys:
            r = by_name.get(node)
            if r and r[1] == "streaming":
                w, f, rp = (lsnmod.parse(x) for x in (r[3], r[4], r[5]))
                stalled = r[7] is None or (now - r[7] > STALE_REPLY_S and (w or 0) < head)
                reply = now if stalled else r[7]
                out.append(LagSample(now, node, True, r[2], lsnmod.diff(head, w), lsnmod.diff(head, f),
                                     lsnmod.diff(head, rp), _lag_s(tracker, head, w, reply),
                                     _lag_s(tracker, head, f, reply), _lag_s(tracker, head, rp, reply),
                                     r[6] if r[6] is not None or rp is None or rp < head else 0.0))
            else:
                # away: the slot says where it stopped (no slot: we know nothing)
                pos = lsnmod.parse(restart.get(slot_name(node)))
                b = lsnmod.diff(head, pos)
                s = _lag_s(tracker, head, pos, now)
                out.append(LagSample(now, node, False, r[2] if r else None, b, b, b, s, s, s, None))
        return out

    def _saw_primary(self, conn: psycopg.Connection, head: str | None, asked: float) -> None:
        # the failover's data-loss guard uses the primary's last sampled position (lab.model.state)
        node = self._nodes.get(f"{conn.info.host}:{conn.info.port}")
        if head and node:
            lab_state.record_primary_seen(self.ctx.name, lab_state.PrimarySeen(node, head, None, asked, "the lag recorder"))

    def _run(self) -> None:
        tracker = _Tracker()
        conn: psycopg.Connection | None = None
        cpu0 = time.thread_time()
        end = self.started + self.duration if self.duration else None
        next_tick = time.monotonic()
        try:
            while not self._stop.is_set() and (end is None or time.time() < end):
                t0 = time.perf_counter()
                try:
                    if conn is None or conn.closed:
                        conn = self._connect()
                    batch = self.sample_once(conn, tracker)
                    self._samples.extend(batch)
                    self._times.append(time.perf_counter() - t0)
                    if self.on_sample:
                        self.on_sample(batch)
                except psycopg.Error:
                    self._errors += 1
                    if conn is not None:
                        conn.close()
                    conn = None
                next_tick += self.interval
                delay = next_tick - time.monotonic()
                if delay < 0:   # fell behind (slow answer): skip ticks rather than burst
                    next_tick = time.monotonic()
                    delay = 0
                self._stop.wait(delay)
        finally:
            self._cpu = time.thread_time() - cpu0
            if conn is not None:
                conn.close()

    def start(self) -> "LagRecorder":
        self.started = time.time()
        self._thread = threading.Thread(target=self._run, name="pglab-lagrec", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.join()

    def join(self, timeout: float | None = None) -> None:
        if self._thread:
            self._thread.join(timeout)
        self.ended = self.ended or time.time()

    def __enter__(self) -> "LagRecorder":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def result(self) -> LagRecording:
        ended = self.ended or time.time()
        wall = max(1e-9, ended - self.started)
        n = len(self._times)
        # faults and failovers are recorded by whichever process made them: read the saved state again
        try:
            events = lab_state.load(self.ctx.name).events
        except Exception:  # noqa: BLE001 - a lab removed meanwhile still leaves a valid recording
            events = self.ctx.state.events
        events = tuple(e for e in events if self.started - 0.5 <= e.get("t", 0) <= ended + 0.5)
        ov = Overhead(samples=n, errors=self._errors, achieved_hz=n / wall,
                      sample_ms_mean=1000 * sum(self._times) / n if n else 0.0,
                      sample_ms_max=1000 * max(self._times) if n else 0.0,
                      cpu_percent=100 * self._cpu / wall, connections=self._conns)
        return LagRecording(self.ctx.name, self.interval, self.started, ended, tuple(self.standbys),
                            tuple(self._samples), events, ov)


def record(ctx: Ctx, *, interval: float = 0.1, duration: float,
           on_sample: Callable[[list[LagSample]], None] | None = None) -> LagRecording:
    """Record for `duration` seconds (blocking)."""
    rec = LagRecorder(ctx, interval=interval, duration=duration, on_sample=on_sample).start()
    try:
        rec.join()
    except KeyboardInterrupt:
        rec.stop()
    return rec.result()


# ---- files ----------------------------------------------------------------------------------------
def save(rec: LagRecording, path: str | Path) -> Path:
    """JSON (.json) keeps everything; CSV (anything else) has one row per sample, then one row per
    event (the `event` column set), so one file carries both."""
    p = Path(path)
    if p.suffix == ".json":
        p.write_text(json.dumps(rec.to_dict(), indent=1))
        return p
    with p.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*FIELDS, "event"])
        for s in rec.samples:
            w.writerow([*("" if v is None else v for v in (getattr(s, k) for k in FIELDS)), ""])
        for e in rec.events:
            w.writerow([e.get("t"), e.get("node") or "", *[""] * (len(FIELDS) - 2), e.get("kind")])
    return p


def load(path: str | Path) -> LagRecording:
    p = Path(path)
    if not p.is_file():
        raise InvalidInput(f"no lag recording at {p}", "record one with `pglab lag record --out FILE`")
    if p.suffix == ".json":
        d = json.loads(p.read_text())
        samples = tuple(LagSample(**s) for s in d["samples"])
        return LagRecording(d["lab"], d["interval"], d["started"], d["ended"], tuple(d["standbys"]), samples,
                            tuple(d["events"]), Overhead(**d["overhead"]))
    samples, events = [], []
    with p.open() as f:
        for row in csv.DictReader(f):
            if row.get("event"):
                events.append({"t": float(row["t"]), "node": row["node"] or None, "kind": row["event"]})
                continue
            kw = {k: _num(row.get(k, "")) for k in FIELDS if k not in ("node", "connected", "sync_state")}
            kw["node"] = row["node"]
            kw["connected"] = row["connected"] == "True"
            kw["sync_state"] = row["sync_state"] or None
            samples.append(LagSample(**kw))
    t = [s.t for s in samples] or [0.0]
    nodes = tuple(dict.fromkeys(s.node for s in samples))
    return LagRecording(p.stem, 0.0, min(t), max(t), nodes, tuple(samples), tuple(events),
                        Overhead(len(samples), 0, 0.0, 0.0, 0.0, 0.0))


def _num(v: str):
    if v == "":
        return None
    try:
        return int(v)
    except ValueError:
        return float(v)
