"""A lab's cluster, on any runtime: bring-up and tear-down, server operations, status, faults."""
