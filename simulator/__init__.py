"""The hall simulator: a fleet of real-firmware evaluators on ptys, a real
gateway and broker, scripted citizens and clerks, faults, and the invariants
of docs/design.md §6 checked at the end."""
