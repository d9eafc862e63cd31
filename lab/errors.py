"""The lab's exception tree.

Every error a user can cause or meet derives from LabError. The CLI turns a
LabError into one line (what, why, how to fix) and exit status 2; anything else
is a bug and keeps its traceback (without local variables: connection strings
hold passwords).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lab.failover.election import Decision


class LabError(Exception):
    """Base class: a message fit for one line, and an optional hint."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None, details: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        #: extra lines (e.g. a server's last log lines) shown below the one line
        self.details = details

    def line(self) -> str:
        return f"{self.message}: {self.hint}" if self.hint else self.message

    def __str__(self) -> str:
        return self.line()


class InvalidInput(LabError):
    """A name, option, setting or file the user gave is wrong."""


def one_of(value: str, allowed: "tuple[str, ...] | list[str] | frozenset[str]", what: str) -> str:
    """`value` if it is one of `allowed`, else InvalidInput ("{what} {value!r}") with the allowed values."""
    if value not in allowed:
        raise InvalidInput(f"{what} {value!r}", f"use one of: {', '.join(allowed)}")
    return value


class LabExists(LabError):
    """A lab with this name already exists."""


class LabNotFound(LabError):
    """No lab with this name."""


class RuntimeUnavailable(LabError):
    """The chosen runtime cannot be used here (no binaries, no daemon, no image)."""


class Unsupported(LabError):
    """The runtime or this machine cannot do what was asked (and says why)."""


class NodeFailed(LabError):
    """A server or a command on a node failed; details hold its last log lines."""


class WaitTimeout(LabError):
    """A condition did not hold within its timeout."""


class FailoverRefused(LabError):
    """The election refused every candidate; `decision` holds the table it decided from."""

    def __init__(self, decision: "Decision"):
        super().__init__(f"failover refused: {decision.reason}",
                         "fix the standby, or pass --allow-data-loss to promote it anyway")
        self.decision = decision
