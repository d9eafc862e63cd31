"""Workloads against a lab: the ledger writer (ledger.py), readers (reader.py), pgbench (pgbench.py)."""
