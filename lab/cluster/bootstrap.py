"""Bringing a lab up and tearing it down."""
from __future__ import annotations

import time
from typing import Callable

from lab.cluster import coldclone, nodes as cluster, server
from lab import runtime as runtimes
from lab.model import state as lab_state
from lab.cluster.context import Ctx
from lab.cluster.teardown import down  # noqa: F401 - where callers have always found it
from lab.model.names import check_name
from lab.model.passwords import generate
from lab.model.state import LabState
from lab.model.topology import Topology

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def up(topology: Topology, name: str = "pglab", runtime: str = "auto", say: Say = _quiet,
       init: Callable[[Ctx, Say], None] | None = None) -> Ctx:
    """Create a lab: primary initialised, standbys cloned in parallel through their own slots,
    all streaming. `init`, when given, brings the servers up instead (a failover manager that
    bootstraps them itself). On any failure, or Ctrl-C, everything made so far is removed again."""
    check_name(name, "lab name")
    kind = runtimes.choose(runtime)
    if runtime == "auto":
        say(f"runtime: {kind} ({'a Docker daemon answers' if kind == 'docker' else 'no Docker daemon answers'})")
    d = lab_state.create_lab_dir(name)
    rt = None
    try:
        rt = runtimes.make(kind, name, d, None, topology)
        st = LabState(name=name, runtime=kind, topology=topology.to_dict(), superuser_password=generate(),
                      replication_password=generate(), primary=topology.primary.name, created=time.time())
        ctx = Ctx(st, rt)
        ctx.topology  # noqa: B018  (parsed once, validated again from the saved form)
        st.nodes = rt.prepare(topology.nodes, template=None if init else coldclone.recipe(topology))
        ctx.save()
        if init is None:
            _bootstrap(ctx, topology, say)
        else:
            init(ctx, say)
        ctx.event("up")
        return ctx
    except BaseException:
        if rt is not None:
            try:
                rt.destroy()
            except Exception:  # noqa: BLE001 - the original error matters more
                pass
        lab_state.remove_lab_dir(name)
        raise


def _bootstrap(ctx: Ctx, topology: Topology, say: Say) -> None:
    primary = topology.primary.name
    standbys = [s.name for s in topology.standbys]
    cluster.check_settings(ctx, primary)
    if coldclone.bring_up(ctx, topology):
        return
    # a runtime without templates: initdb, then a base backup of the running primary per standby
    cluster.init_primary(ctx, primary)
    server.start(ctx.rt, primary)
    cluster.create_roles(ctx, primary)
    say(f"primary {primary} is up; cloning {', '.join(standbys) or 'no standbys'}")

    def make_standby(node: str) -> None:
        cluster.clone(ctx, node, primary)
        cluster.write_config(ctx, node, upstream=primary)
        server.start(ctx.rt, node)

    cluster.parallel(make_standby, standbys)
    if not topology.sync.is_async:
        cluster.set_sync(ctx, primary, topology.sync)
    cluster.wait_streaming(ctx, primary, standbys, topology.sync)


