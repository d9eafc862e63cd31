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
    """a - b in bytes (never negative: a standby can't be ahead of what we compare it to)."""
    pa = a if isinstance(a, int) else parse(a)
    pb = b if isinstance(b, int) else parse(b)
    if pa is None or pb is None:
        return None
    return max(0, pa - pb)
