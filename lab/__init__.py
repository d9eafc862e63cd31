"""pglab: a PostgreSQL streaming-replication lab, as a library.

    from lab import Lab
    with Lab.up() as lab:
        ...
"""
from lab.api import Lab, list_labs
from lab.errors import LabError
from lab.cluster.status import LabStatus, NodeStatus, Role
from lab.model.topology import NodeSpec, Topology, default_topology, load_topology

__all__ = ["Lab", "LabError", "LabStatus", "NodeSpec", "NodeStatus", "Role", "Topology",
           "default_topology", "list_labs", "load_topology"]
__version__ = "0.1.0"
