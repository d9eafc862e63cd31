"""Three ways to ship changes: statement-based, WAL shipping (physical) and logical (row-based)."""
