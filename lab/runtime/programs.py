"""Client programs (psql, pgbench) that run on this machine, against a node of any runtime."""
from __future__ import annotations

import glob
import os
import shutil


def client_program(name: str, bindir: str | None = None) -> str | None:
    """`name` from the servers' own bindir first (the same major version), then the system's
    PostgreSQL installations (newest first), then PATH; None when there is none."""
    cands = [os.path.join(bindir, name)] if bindir else []
    cands += sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    cands.append(shutil.which(name) or "")
    return next((c for c in cands if c and os.access(c, os.X_OK)), None)
