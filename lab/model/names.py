"""Names of labs and nodes: they become directory, container and network names."""
from __future__ import annotations

import os
import re

from lab.errors import InvalidInput

DEFAULT_LAB = "pglab"

NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,29}$")


def check_name(name: str, what: str = "name") -> str:
    if not isinstance(name, str) or not NAME_RE.match(name) or name.endswith("-"):
        raise InvalidInput(
            f"invalid {what} {name!r}",
            "use 1-30 characters [a-z0-9-], starting with a letter and not ending with '-'",
        )
    return name


def cluster_name(lab: str, node: str) -> str:
    """The server's cluster_name: it is in every process title of the node, so a node's processes
    can be found by name even when their postmaster is gone."""
    return f"pglab-{lab}-{node}"


def default_name() -> str:
    """The lab a command means when it names none: $PGLAB_NAME, else 'pglab'."""
    return os.environ.get("PGLAB_NAME", DEFAULT_LAB)
