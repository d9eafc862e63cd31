"""Waiting for a condition: a timeout, a poll interval, and which errors count as "not yet".

`wait_until` is for conditions that must come true (a timeout is an error); `poll` is for
measurements whose answer may be "not within the bound" (it returns None then).
"""
from __future__ import annotations

import logging
import time
from typing import Callable, TypeVar

import psycopg

from lab.errors import WaitTimeout

T = TypeVar("T")

TRANSIENT = (psycopg.OperationalError, ConnectionError, TimeoutError)
log = logging.getLogger(__name__)


def _loop(check: Callable[[], T | None], timeout: float, interval: float,
          transient: tuple[type[BaseException], ...]) -> tuple[T | None, BaseException | None]:
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = check()
            if result:
                return result, None
        except transient as e:  # noqa: PERF203
            last_error = e
        if time.monotonic() >= deadline:
            return None, last_error
        time.sleep(interval)


def poll(check: Callable[[], T | None], *, timeout: float, interval: float = 0.05,
         transient: tuple[type[BaseException], ...] = TRANSIENT) -> T | None:
    """Call check() until it returns a truthy value (returned) or `timeout` passes (None)."""
    return _loop(check, timeout, interval, transient)[0]


def wait_until(check: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.05,
               transient: tuple[type[BaseException], ...] = TRANSIENT,
               logs: Callable[[], str | None] | None = None) -> T:
    """Call check() until it returns a truthy value; return that value.

    Errors in `transient` mean "not yet". On timeout raise WaitTimeout naming what was awaited,
    the last transient error, and (if given) the node's last log lines.
    """
    t0 = time.monotonic()
    result, last_error = _loop(check, timeout, interval, transient)
    if result:
        log.debug("waited %.2fs for %s", time.monotonic() - t0, what)
        return result
    detail = f" (last error: {str(last_error).strip().splitlines()[0]})" if last_error else ""
    raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for {what}{detail}",
                      details=logs() if logs else None)
