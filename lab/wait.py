"""Waiting for a condition: a timeout, a poll interval, and which errors count as "not yet"."""
from __future__ import annotations

import time
from typing import Callable, TypeVar

import psycopg

from lab.errors import WaitTimeout

T = TypeVar("T")

TRANSIENT = (psycopg.OperationalError, ConnectionError, TimeoutError)


def wait_until(check: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.05,
               transient: tuple[type[BaseException], ...] = TRANSIENT,
               logs: Callable[[], str | None] | None = None) -> T:
    """Call check() until it returns a truthy value; return that value.

    Errors in `transient` mean "not yet". On timeout raise WaitTimeout naming what was awaited,
    the last transient error, and (if given) the node's last log lines.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = check()
            if result:
                return result
        except transient as e:  # noqa: PERF203
            last_error = e
        if time.monotonic() >= deadline:
            detail = f" (last error: {str(last_error).strip().splitlines()[0]})" if last_error else ""
            raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for {what}{detail}",
                              details=logs() if logs else None)
        time.sleep(interval)
