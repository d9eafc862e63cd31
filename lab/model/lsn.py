"""WAL positions (LSNs) as integers."""
from __future__ import annotations


def parse(lsn: str | None) -> int | None:
    """'16/B374D848' -> byte position; None stays None."""
    if not lsn:
        return None
    hi, _, lo = str(lsn).partition("/")
    return (int(hi, 16) << 32) + int(lo, 16)


def fmt(pos: int | None) -> str | None:
    if pos is None:
        return None
    return f"{pos >> 32:X}/{pos & 0xFFFFFFFF:X}"


def diff(a: str | int | None, b: str | int | None) -> int | None:
    """a - b in bytes, signed, like PostgreSQL's pg_wal_lsn_diff(a, b).

    Negative means b is ahead of a: a standby ahead of the primary it is compared with (another
    timeline, a primary that was reset, a stale reading of the primary). That is shown as such,
    never folded into "no lag"; None (unknown) when either side is unknown."""
    pa = a if isinstance(a, int) else parse(a)
    pb = b if isinstance(b, int) else parse(b)
    if pa is None or pb is None:
        return None
    return pa - pb
