"""Pure values: names, topology, synchronous_standby_names, LSNs, connection strings, settings,
and the lab's saved state. Nothing here talks to a server or a runtime."""
