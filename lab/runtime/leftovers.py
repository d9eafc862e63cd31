"""What a lab left behind on this machine, found by its name (tests assert this is empty after `down`)."""
from __future__ import annotations

import re
import subprocess

from lab.model import state as lab_state
from lab.runtime import docker_answers, procs
from lab.runtime.netns import forwarding_rules
from lab.runtime.docker import labelled


def leftovers(name: str) -> list[str]:
    found: list[str] = []
    d = lab_state.lab_dir(name)
    if d.exists():
        found.append(f"directory {d}")
    for pid in procs.matching(str(d) + "/"):
        found.append(f"process {pid}")
    title = re.compile(rf"postgres: pglab-{re.escape(name)}-[a-z0-9-]+: ")
    for pid in procs.matching(f"pglab-{name}-"):
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if title.search(cmd):
            found.append(f"server process {pid}")
    try:
        ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        found += [f"namespace {line.split()[0]}" for line in ns.splitlines()
                  if line.startswith(f"pglab-{name}-")]
    except OSError:
        pass
    found += [f"iptables rule {r}" for r in forwarding_rules(name)]
    if docker_answers():
        found += labelled(name)
    return found
