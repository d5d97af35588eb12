"""Benchmarks of docs/design.md §5. Each module has `run(**params) -> dict` and
prints one JSON object through `hcp bench NAME --json`: name, value, unit,
reference (the same quantity for a reference measured in the same run),
ratio, target and the parameters used. Loopback only, each bounded in time."""
