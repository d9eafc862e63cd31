"""`pglab prune`: remove what labs whose state is gone left behind.

A lab is alive while its state.json exists. A directory without one is either a lab whose `up`
is running right now (it writes state.json once its nodes exist) or debris; a grace period
tells them apart, so a prune never pulls the rug from under a concurrent `up`.
"""
from __future__ import annotations

import shutil
import time

from lab.model import state as lab_state
from lab.cluster.bootstrap import down
from lab.errors import InvalidInput
from lab.model.names import check_name
from lab.runtime import labs_with_docker_resources, remove_docker_resources, remove_docker_templates

GRACE_S = 600


def _young(name: str) -> bool:
    try:
        return time.time() - lab_state.lab_dir(name).stat().st_mtime < GRACE_S
    except OSError:
        return False


def orphans() -> list[str]:
    """Names of labs with leftovers (directories, labelled Docker resources) but no state."""
    alive = set(lab_state.list_labs())
    names = {p.name for p in lab_state.home().iterdir() if p.is_dir() and not p.name.startswith(".")}
    names |= labs_with_docker_resources()
    return sorted(n for n in names - alive if not (lab_state.lab_dir(n).exists() and _young(n)))


def prune() -> list[str]:
    removed: list[str] = []
    for trash in lab_state.home().glob(f"{lab_state.TRASH_PREFIX}*"):
        # what a `down` moved aside; its background removal normally takes a second
        if time.time() - trash.stat().st_mtime > 60:
            shutil.rmtree(trash, ignore_errors=True)
            removed.append(f"directory {trash}")
    for name in orphans():
        try:
            check_name(name, "lab name")
        except InvalidInput:
            # not a name pglab would make; only its labelled Docker resources can be ours
            removed += remove_docker_resources(name)
            continue
        removed += [f"{name}: {r}" for r in down(name)]
    # the templates volume only once no lab's containers mount it; the next Docker lab makes it again
    removed += remove_docker_templates()
    return removed
