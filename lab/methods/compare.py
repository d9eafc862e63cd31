"""Three ways to ship changes, side by side, from one real run (`pglab lab methods`).

- statement-based: the teaching replicator of lab.stmtrepl (SQL text re-executed);
- physical WAL: streaming (s1) and archive shipping (a1) of one primary (lab.methods.shipping);
- logical (row-based): publication/subscription between two labs (lab.methods.logical), 15 -> 17
  when the Docker runtime and both images are here, else 15 -> 15 on local processes.
"""
from __future__ import annotations

from dataclasses import dataclass

from lab.methods import logical, shipping, statement as stmtrepl
from lab.runtime import docker_answers
from lab.runtime.images import usable_image


@dataclass(frozen=True)
class MethodRow:
    method: str
    determinism: str
    cross_version: str
    lag: str
    overhead: str


@dataclass(frozen=True)
class MethodsReport:
    methods: tuple[MethodRow, ...]
    statement: stmtrepl.StatementReport
    shipping: shipping.ShippingReport
    logical: logical.LogicalReport
    statement_tps: tuple[float, float, float]
    notes: tuple[str, ...]


def _docker_cross_version() -> bool:
    if not docker_answers():
        return False
    return usable_image(15) is not None and usable_image(17) is not None


def compare(*, runtime: str = "local", seconds: float = 2.0) -> MethodsReport:
    with shipping.archive_lab() as lab:
        ship = shipping.run(lab)
        stmt = stmtrepl.run(lab.dsn("p1"))
        stps = stmtrepl.throughput(lab.dsn("p1"), seconds=min(seconds, 1.0))
    cross = runtime == "docker" and _docker_cross_version()
    with logical.lab_pair(15 if cross else None, 17 if cross else None,
                          runtime="docker" if cross else "local") as (pub, sub):
        lg = logical.run(pub, sub, seconds=seconds)
    stream_ms = 1000 * max(ship.streaming_lag_s)
    by = {s.scenario: s for s in stmt.scenarios}
    rows = (
        MethodRow("statement-based (teaching model)",
                  f"{stmt.diverged_plain} rows diverged as written; {stmt.diverged_rewritten} with calls rewritten "
                  f"(left: serial order {by['serial, concurrent inserts'].diverged_rewritten}, "
                  f"UPDATE…WHERE order {by['UPDATE … WHERE, concurrent'].diverged_rewritten})",
                  "SQL text: any version that runs the same SQL the same way",
                  f"{stps[2]:.2f} ms to re-execute a shipped transaction",
                  f"{stps[0]:.0f} -> {stps[1]:.0f} tx/s (each statement runs twice, shipped synchronously)"),
        MethodRow("physical WAL, streaming",
                  "0 diverged (row hashes equal on p1 and s1)" if ship.hashes_equal else "row hashes differ!",
                  "no: same major only", f"{stream_ms:.0f} ms (max of {len(ship.streaming_lag_s)} writes, visible on s1)",
                  "one walsender per standby; WAL is written anyway"),
        MethodRow("physical WAL, archive (16 MB segments)",
                  "0 diverged (row hashes equal on p1 and a1)" if ship.hashes_equal else "row hashes differ!",
                  "no: " + ("PG 17 refuses the 15 data directory" if "incompatible" in ship.version_check
                            else "same major only"),
                  f"{max(ship.archive_lag_s):.2f} s with archive_timeout={ship.archive_timeout}; "
                  + ("never on an idle primary without it" if not ship.small_write_visible_without_timeout
                     else "arrived without it"),
                  f"{ship.segments_archived} segments x {ship.segment_bytes // 2**20} MB archived for "
                  f"{len(ship.archive_lag_s) + 1} small writes"),
        MethodRow("logical (row-based)",
                  "0 diverged (row hashes equal)" if lg.hashes_equal else "row hashes differ!",
                  f"yes: {lg.publisher_version.split()[0]} -> {lg.subscriber_version.split()[0]}",
                  f"max {lg.lag_bytes_max / 1024:.0f} kB behind during the workload; caught up {lg.catchup_s * 1000:.0f} ms after",
                  f"{lg.tps_without:.0f} -> {lg.tps_with:.0f} tx/s with the subscription ({-lg.overhead_pct:+.0f}%; "
                  f"one client, noisy)"),
    )
    notes = (
        "DDL is not replicated by logical replication: a column added on the publisher stopped the apply "
        f"worker ({lg.apply_errors} error(s): {lg.ddl_error}); adding it on the subscriber resumed it"
        + (" and the hashes matched again" if lg.recovered_after_ddl else ""),
        f"version check on the archive standby's data directory: {ship.version_check}",
        "cross-version logical ran on local processes (15 -> 15): use --runtime docker with images 15 and 17"
        if not cross else "logical ran across majors on the Docker runtime",
    )
    return MethodsReport(rows, stmt, ship, lg, stps, notes)
