"""`down`: remove everything of a lab, whether or not its state can be read.

Apart from bootstrap on purpose: tearing down needs neither psycopg nor the cloning code, and
`pglab down` should start as fast as Python and the runtime allow.
"""
from __future__ import annotations

from lab import runtime as runtimes
from lab.cluster import background
from lab.cluster.context import Ctx
from lab.errors import LabNotFound
from lab.model import state as lab_state
from lab.model.names import check_name


def down(name: str) -> list[str]:
    """Remove everything of the lab. Idempotent: returns [] when there was nothing."""
    check_name(name, "lab name")
    removed: list[str] = []
    removed += background.stop_all(name)   # a background failover monitor must not outlive its lab
    try:
        ctx = Ctx.open(name)
    except LabNotFound:
        ctx = None
    if ctx is not None:
        removed += ctx.rt.destroy()
    else:
        removed += runtimes.destroy_orphans(name, lab_state.lab_dir(name))
    if lab_state.remove_lab_dir(name):
        removed.append(f"directory {lab_state.lab_dir(name)}")
    return removed
