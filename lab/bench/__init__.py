"""Benchmarks that bring labs of their own up and down (above lab.api, beside lab.scenario):
`lab.bench.ha` runs the failover managers side by side (`pglab bench ha`)."""
