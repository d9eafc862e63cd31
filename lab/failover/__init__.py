"""Leader failure: election, promotion, reconfiguration, rejoin, the monitor, drills, split brain."""
